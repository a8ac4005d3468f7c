//! Scheduled queues end to end (SPEC §9 scenarios 1–7): Ferry delivers to a real SMTP sink
//! process, and the record sequence in Ferry's logs is the oracle.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

const LOGS: &str = "[logs]\nmeta = [\"tenant\", \"xfer*\"]\nheaders = [\"X-*\", \"Y-*\", \"Subject\"]\n";

/// The source policy of SPEC §9, delivering every queue to the sink.
fn source_policy(sink_port: u16, retry: &str, extra: &str) -> String {
    format!(
        r#"
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg)
  msg:import_scheduling_header('X-Schedule')
  msg:import_x_headers {{ 'tenant' }}
end)
{extra}
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '{retry}',
    protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{sink_port}' }} }} }},
  }}
end)
"#
    )
}

fn source(sink: &SmtpSink, retry: &str) -> FerryNode {
    FerryNode::start(LOGS, Some(&source_policy(sink.port(), retry, "")))
}

fn body(extra_headers: &str) -> String {
    format!(
        "From: sender@example.com\r\nSubject: Hello! This is a test\r\n{extra_headers}\r\nHello there.\r\n"
    )
}

fn send(node: &FerryNode, rcpt: &str, extra_headers: &str) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("sender@example.com", &[rcpt], &body(extra_headers));
    assert_eq!(r.code, 250, "{r:?}");
    queued_id(&r)
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn message<'a>(inspect: &'a Value, id: &str) -> &'a Value {
    inspect["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| &m["message"])
        .unwrap_or_else(|| panic!("{id} not in {inspect}"))
}

#[test]
fn end_to_end_delivery_reaches_the_sink_intact() {
    let sink = SmtpSink::start();
    let node = source(&sink, "20m");
    let id = send(&node, "recip@example.com", "Y-Custom: kept\r\n");
    let records = node.wait_sequence(&id, &["Reception", "Delivery"]);
    let delivery = &records[1];
    assert_eq!(delivery["queue"], "example.com");
    assert_eq!(delivery["site"], format!("unspecified->mx_list:[127.0.0.1]:{}@smtp_client", sink.port()));
    assert_eq!(delivery["delivery_protocol"], "ESMTP");
    assert_eq!(delivery["response"]["code"], 250);
    assert_eq!(delivery["peer_address"]["addr"], "127.0.0.1");
    assert_eq!(delivery["headers"]["Y-Custom"], "kept");
    let got = sink.wait_messages(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "sender@example.com");
    assert_eq!(got[0].rcpt_to, vec!["recip@example.com"]);
    assert!(got[0].data.starts_with("Received: from client.test"), "{}", got[0].data);
    assert!(got[0].data.ends_with(&body("Y-Custom: kept\r\n")), "content intact:\n{}", got[0].data);
    wait_until("the spool to empty", Duration::from_secs(10), || node.spool_ids().is_empty().then_some(()));
}

#[test]
fn temp_fail_stays_queued_with_one_attempt_and_survives_restart() {
    let sink = SmtpSink::start();
    let mut node = source(&sink, "20m");
    let id = send(&node, "tempfail@example.com", "");
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let tf = &records[1];
    assert_eq!(tf["response"]["code"], 400);
    assert_eq!(tf["num_attempts"], 0, "the TF is logged before the attempt is counted");
    node.wait_scheduled("example.com", &id);
    let inspect = node.inspect("example.com").expect("queue exists");
    let m = message(&inspect, &id);
    assert_eq!(m["num_attempts"], 1);
    let due = time(&m["due"]);
    let tf_at = time(&tf["event_time"]);
    let wait = (due - tf_at).num_seconds();
    assert!((20 * 60 - 31..=20 * 60 + 30).contains(&wait), "due {wait}s after the TF, expected 20m ± 30s");
    // Pipelined, the sink also refuses the DATA that followed the refused RCPT.
    let rcpt_refusals = sink.rejections().iter().filter(|r| r["command"] == "RCPT").count();
    assert_eq!(rcpt_refusals, 1, "one RCPT refusal at the sink: {:?}", sink.rejections());
    assert_eq!(inspect["queue_config"]["retry_interval"], "20m");

    // D1: due and attempts are persisted; a restart keeps them.
    assert!(node.stop().success());
    node.restart();
    let again =
        wait_until("the queue to be reloaded", Duration::from_secs(20), || node.inspect("example.com"));
    let m = message(&again, &id);
    assert_eq!(m["num_attempts"], 1);
    assert_eq!(time(&m["due"]), due);
    assert_eq!(node.spool_ids(), vec![id.clone()]);
    assert_eq!(node.records_for(&id).len(), 2, "reloading logs nothing (no Delayed for Enumerated)");
}

#[test]
fn perm_fail_bounces_and_empties_the_spool() {
    let sink = SmtpSink::start();
    let node = source(&sink, "20m");
    let id = send(&node, "permfail@example.com", "");
    let records = node.wait_sequence(&id, &["Reception", "Bounce"]);
    assert_eq!(records[1]["response"]["code"], 500);
    assert_eq!(
        records[1]["response"]["enhanced_code"],
        serde_json::json!({"class":5,"subject":0,"detail":0})
    );
    wait_until("the spool to empty", Duration::from_secs(10), || node.spool_ids().is_empty().then_some(()));
}

#[test]
fn retry_schedule_doubles_from_the_base_interval() {
    let sink = SmtpSink::start();
    let node = source(&sink, "1s");
    let id = send(&node, "tempfail@example.com", "");
    let records = node.wait_sequence(
        &id,
        &["Reception", "TransientFailure", "TransientFailure", "TransientFailure", "TransientFailure"],
    );
    let created = time(&records[0]["created_time"]);
    let tfs: Vec<f64> =
        records[1..].iter().map(|r| (time(&r["event_time"]) - created).as_seconds_f64()).collect();
    assert!(tfs[0] < 1.0, "first attempt at once: {tfs:?}");
    // Gaps follow retry_interval * 2^n: 1, 2, 4 s (no jitter below 20 s), plus delivery latency.
    for (i, want) in [1.0, 2.0, 4.0].iter().enumerate() {
        let gap = tfs[i + 1] - tfs[i];
        assert!(
            gap >= *want && gap < want * 1.5 + 0.5,
            "gap {i} = {gap:.2}s, expected about {want}s: {tfs:?}"
        );
    }
    assert_eq!(records[4]["num_attempts"], 3, "three attempts were counted before the fourth failure");
}

#[test]
fn expires_turns_the_first_transient_failure_into_an_expiration() {
    let sink = SmtpSink::start();
    let node = source(&sink, "20m");
    let expires = (Utc::now() + chrono::Duration::seconds(10)).to_rfc3339();
    let id = send(&node, "tempfail@example.com", &format!("X-Schedule: {{\"expires\":\"{expires}\"}}\r\n"));
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure", "Expiration"]);
    let exp = &records[2];
    assert_eq!(exp["response"]["code"], 551);
    assert_eq!(exp["response"]["enhanced_code"], serde_json::json!({"class":5,"subject":4,"detail":7}));
    assert!(exp["response"]["content"].as_str().unwrap().contains("configured via set_scheduling"));
    wait_until("the spool to empty", Duration::from_secs(10), || node.spool_ids().is_empty().then_some(()));
}

#[test]
fn suspend_gives_a_transient_failure_and_cancel_does_not_flush() {
    let sink = SmtpSink::start();
    let node = source(&sink, "20m");
    let out = node.cli(&["--json", "suspend", "--domain", "example.com", "--reason", "maintenance"]);
    let sid = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
    let listed: Value = serde_json::from_str(&node.cli(&["--json", "suspend-list"])).unwrap();
    assert_eq!(listed[0]["id"], sid.as_str());
    assert_eq!(listed[0]["domain"], "example.com");

    let first = send(&node, "allow@example.com", "");
    let records = node.wait_sequence(&first, &["Reception", "TransientFailure"]);
    let tf = &records[1];
    assert_eq!(tf["response"]["code"], 451);
    assert_eq!(tf["response"]["content"], "KumoMTA internal: scheduled queue is suspended: maintenance");
    assert_eq!(tf["site"], "example.com");
    node.wait_scheduled("example.com", &first);
    let inspect = node.inspect("example.com").unwrap();
    assert_eq!(message(&inspect, &first)["num_attempts"], 1);
    assert!(sink.messages().is_empty());

    assert!(node.cli(&["suspend-cancel", "--id", &sid]).contains(&format!("removed {sid}")));
    let gone = node.cli_output(&["suspend-cancel", "--id", &sid]);
    assert!(!gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains("404"));

    let second = send(&node, "allow2@example.com", "");
    node.wait_sequence(&second, &["Reception", "Delivery"]);
    assert_eq!(sink.wait_messages(1)[0].rcpt_to, vec!["allow2@example.com"]);
    // Cancelling does not flush: the first message waits for its retry.
    assert_eq!(node.records_for(&first).len(), 2);
    assert_eq!(message(&node.inspect("example.com").unwrap(), &first)["num_attempts"], 1);
}

#[test]
fn maildir_delivery_writes_one_file_per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ maildir_path = '{}/{{{{ domain }}}}/{{{{ local_part }}}}', dir_mode = tonumber('750', 8) }},
  }}
end)
"#,
        dir.path().display()
    );
    let node = FerryNode::start("", Some(&policy));
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("sender@example.com", &["a@example.com", "b@example.com"], &body(""));
    let id = queued_id(&r);
    let records = node.wait_sequence(&id, &["Reception", "Delivery"]);
    assert_eq!(records[1]["delivery_protocol"], "Maildir");
    assert_eq!(records[1]["response"]["code"], 200);
    assert_eq!(records[1]["recipient"], serde_json::json!(["a@example.com", "b@example.com"]));
    for user in ["a", "b"] {
        let new = dir.path().join("example.com").join(user).join("new");
        let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
        assert_eq!(files.len(), 1, "{}", new.display());
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(text.ends_with(&body("")));
    }
    wait_until("the spool to empty", Duration::from_secs(10), || node.spool_ids().is_empty().then_some(()));
}

#[test]
fn custom_lua_delivery_outcomes() {
    let policy = r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '20m',
    protocol = { custom_lua = { constructor = 'make.webhook' } },
  }
end)
kumo.on('make.webhook', function(domain, tenant, campaign)
  local connection = {}
  function connection:send(message)
    local user = message:recipient().user
    if user == 'later' then kumo.reject(400, 'failed for some reason') end
    if user == 'never' then kumo.reject(500, 'not wanted') end
    if user == 'oops' then error('bug in webhook') end
    return 'OK ' .. user .. '@' .. domain
  end
  return connection
end)
"#;
    let node = FerryNode::start("", Some(policy));
    let ok = send(&node, "fine@example.com", "");
    let r = node.wait_sequence(&ok, &["Reception", "Delivery"]);
    assert_eq!(r[1]["response"]["content"], "OK fine@example.com");
    assert_eq!(r[1]["delivery_protocol"], "Lua");
    assert_eq!(r[1]["site"], "unspecified->example.com@lua:make.webhook");
    let later = send(&node, "later@example.com", "");
    let r = node.wait_sequence(&later, &["Reception", "TransientFailure"]);
    assert_eq!(r[1]["response"]["code"], 400);
    let never = send(&node, "never@example.com", "");
    let r = node.wait_sequence(&never, &["Reception", "Bounce"]);
    assert_eq!(r[1]["response"]["content"], "not wanted");
    let oops = send(&node, "oops@example.com", "");
    let r = node.wait_sequence(&oops, &["Reception", "TransientFailure"]);
    let content = r[1]["response"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("KumoMTA internal: error in deliver_message:")
            && content.contains("bug in webhook"),
        "{content}"
    );
    wait_until("only the two transient messages to stay", Duration::from_secs(10), || {
        let mut ids = node.spool_ids();
        ids.sort();
        let mut want = vec![later.clone(), oops.clone()];
        want.sort();
        (ids == want).then_some(())
    });
}

/// KumoMTA's batching knobs for custom_lua: a batch waits for `min_batch_size` messages, but no
/// longer than `max_batch_latency`; `send_batch` gets them all at once.
#[test]
fn custom_lua_batches_wait_for_min_batch_size_up_to_max_batch_latency() {
    let policy = r#"
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {
    protocol = { custom_lua = { constructor = 'make.batch', batch_size = 10, min_batch_size = 5, max_batch_latency = '3s' } },
  }
end)
kumo.on('make.batch', function()
  local connection = {}
  function connection:send_batch(messages) return 'batch of ' .. #messages end
  return connection
end)
"#;
    let node = FerryNode::start("", Some(policy));
    // Fewer than min_batch_size: they go together once max_batch_latency has passed.
    let few: Vec<String> = (0..3).map(|n| send(&node, &format!("few{n}@example.com"), "")).collect();
    let received = time(&node.wait_sequence(&few[0], &["Reception", "Delivery"])[0]["event_time"]);
    for id in &few {
        let delivery = node.wait_sequence(id, &["Reception", "Delivery"]).remove(1);
        assert_eq!(delivery["response"]["content"], "batch of 3", "{delivery}");
        let waited = time(&delivery["event_time"]) - received;
        assert!(
            waited >= chrono::TimeDelta::milliseconds(3000),
            "sent after {waited} (max_batch_latency 3s)"
        );
    }
    // min_batch_size reached: one batch of five, without waiting for the latency.
    let five: Vec<String> = (0..5).map(|n| send(&node, &format!("five{n}@example.com"), "")).collect();
    for id in &five {
        let delivery = node.wait_sequence(id, &["Reception", "Delivery"]).remove(1);
        assert_eq!(delivery["response"]["content"], "batch of 5", "{delivery}");
    }
}

#[test]
fn a_queue_whose_config_fails_refuses_reception_and_keeps_nothing() {
    let policy = r#"
kumo.on('get_queue_config', function(domain)
  if domain == 'broken.example' then error('no config for you') end
  return kumo.make_queue_config {}
end)
"#;
    let node = FerryNode::start("", Some(policy));
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("sender@example.com", &["x@broken.example"], &body(""));
    assert_eq!(r.code, 451, "{r:?}");
    let bounce = node.wait_records("Bounce", 1).remove(0);
    assert!(
        bounce["response"]["content"]
            .as_str()
            .unwrap()
            .contains("QueueManager::insert failed during reception")
    );
    assert!(node.spool_ids().is_empty());
    assert!(node.stderr().contains("no config for you"));
}

#[test]
fn inspect_of_an_unknown_queue_is_404() {
    let node = FerryNode::start("", None);
    assert!(node.inspect("nowhere.example").is_none());
}

#[test]
fn messages_due_together_share_connections_and_delayed_is_logged() {
    let sink = SmtpSink::start();
    let node = source(&sink, "20m");
    let first_attempt = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let header = format!("X-Schedule: {{\"first_attempt\":\"{first_attempt}\"}}\r\n");
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let ids: Vec<String> = (0..10)
        .map(|i| {
            queued_id(&c.transaction("sender@example.com", &[&format!("r{i}@example.com")], &body(&header)))
        })
        .collect();
    let delayed = node.wait_sequence(&ids[0], &["Reception", "Delayed"]);
    let content = delayed[1]["response"]["content"].as_str().unwrap();
    assert!(content.starts_with("Context: Received, ScheduledForLater. Next due in "), "{content}");
    assert_eq!(delayed[1]["response"]["code"], 400);
    for id in &ids {
        node.wait_sequence(id, &["Reception", "Delayed", "Delivery"]);
    }
    assert_eq!(sink.wait_messages(10).len(), 10);
    assert!(sink.connections() < 10, "connections are reused: {} for 10 messages", sink.connections());
}

#[test]
fn max_message_rate_throttles_promotion_without_a_transient_failure() {
    let sink = SmtpSink::start();
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    max_message_rate = '2/s',
    protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }},
  }}
end)
"#,
        sink.port()
    );
    let node = FerryNode::start("", Some(&policy));
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let ids: Vec<String> = (0..5)
        .map(|i| queued_id(&c.transaction("sender@example.com", &[&format!("r{i}@example.com")], &body(""))))
        .collect();
    assert_eq!(sink.wait_messages(5).len(), 5);
    let mut delivered = Vec::new();
    for id in &ids {
        let records = wait_until("a delivery", Duration::from_secs(20), || {
            let r = node.records_for(id);
            r.iter().any(|r| r["type"] == "Delivery").then_some(r)
        });
        assert!(records.iter().all(|r| r["type"] != "TransientFailure"), "a throttle is not a failure");
        for r in records.iter().filter(|r| r["type"] == "Delayed") {
            assert!(r["response"]["content"].as_str().unwrap().contains("MessageRateThrottle"), "{r}");
        }
        delivered.push(time(&records.iter().find(|r| r["type"] == "Delivery").unwrap()["event_time"]));
    }
    delivered.sort();
    let span = (delivered[4] - delivered[0]).as_seconds_f64();
    assert!(span >= 1.5, "5 messages at 2/s take at least 2 intervals after the first: {span:.2}s");
    assert!(
        node.records().iter().any(|r| r["type"] == "Delayed"),
        "throttled messages are logged as Delayed"
    );
}

#[test]
fn an_idle_queue_is_reaped_and_recreated_when_needed() {
    let sink = SmtpSink::start();
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    reap_interval = '1s',
    protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }},
  }}
end)
"#,
        sink.port()
    );
    let node = FerryNode::start("", Some(&policy));
    let first = send(&node, "a@example.com", "");
    node.wait_sequence(&first, &["Reception", "Delivery"]);
    assert!(node.inspect("example.com").is_some(), "the queue exists while recently used");
    // Queues check every 10 s whether they have been empty for reap_interval.
    wait_until("the idle queue to be reaped", Duration::from_secs(25), || {
        node.inspect("example.com").is_none().then_some(())
    });
    let second = send(&node, "b@example.com", "");
    node.wait_sequence(&second, &["Reception", "Delivery"]);
    assert_eq!(sink.wait_messages(2).len(), 2);
}

#[test]
fn an_nxdomain_destination_follows_the_normal_retry_schedule() {
    let dns = ferry_integration_tests::dns::DnsStub::start();
    let policy =
        "kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '1s' } end)";
    let node = FerryNode::start(&format!("[dns]\nservers = [\"{}\"]\n", dns.addr()), Some(policy));
    let id = send(&node, "user@nowhere.example.net", "");
    let records =
        node.wait_sequence(&id, &["Reception", "TransientFailure", "TransientFailure", "TransientFailure"]);
    for tf in &records[1..] {
        assert_eq!(tf["response"]["code"], 451, "{tf}");
        assert!(tf["response"]["content"].as_str().unwrap().contains("resolve"), "{tf}");
    }
    let gaps: Vec<f64> = records[1..]
        .windows(2)
        .map(|w| (time(&w[1]["event_time"]) - time(&w[0]["event_time"])).as_seconds_f64())
        .collect();
    assert!(gaps[0] >= 1.0 && gaps[0] < 2.0 && gaps[1] >= 2.0 && gaps[1] < 3.5, "backoff 1 s, 2 s: {gaps:?}");
    assert!(dns.queries() > 0, "the MX lookup went to the configured server");
}

/// SPEC §2.1: with `refresh_strategy = "Ttl"` a live queue asks the policy again once
/// `refresh_interval` has passed (checked on its 10 s tick); a failed refresh keeps the old config.
#[test]
fn queue_config_is_refreshed_after_its_ttl() {
    let sink = SmtpSink::start();
    let policy = format!(
        r#"
local calls = 0
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  calls = calls + 1
  kumo.log_info('CONFIG-FETCH ' .. domain)
  if calls > 1 then error('refresh fails on purpose') end
  return kumo.make_queue_config {{
    retry_interval = '20m', refresh_interval = '1s',
    protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }},
  }}
end)
"#,
        sink.port()
    );
    // One Lua state, so the handler's call counter is shared by every call.
    let node = FerryNode::start("[policy]\npool_size = 1\n", Some(&policy));
    let id = send(&node, "tempfail@example.com", "");
    node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    // The message waits 20 minutes, so the queue stays alive across a refresh tick.
    wait_until("a second get_queue_config call", Duration::from_secs(25), || {
        (node.stderr().matches("CONFIG-FETCH example.com").count() >= 2).then_some(())
    });
    wait_until("the refresh failure to be logged", Duration::from_secs(5), || {
        node.stderr().contains("config refresh failed; keeping the old config").then_some(())
    });
    let inspect = node.inspect("example.com").expect("the queue is still there");
    assert_eq!(inspect["queue_config"]["retry_interval"], "20m", "the old config is kept");
    assert_eq!(inspect["num_scheduled"], 1);
}

/// A message that reaches a dispatcher while its last connection is failing (or finishing) must
/// still get a connection of its own: every one of many messages to an unreachable site gets
/// its transient failure. (Such a message once sat in the ready queue until another arrived.)
#[test]
fn every_message_for_an_unreachable_site_gets_its_attempt() {
    let policy = r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[127.0.0.1]:1' } } } }
end)
"#;
    let node = FerryNode::start(LOGS, Some(policy));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let addr = node.smtp;
            std::thread::spawn(move || {
                let mut c = RawSmtp::connect(addr);
                (0..25)
                    .map(|i| {
                        let r = c.send_message(
                            "s@example.com",
                            &["r@example.com"],
                            &body(&format!("X-N: {t}.{i}\r\n")),
                        );
                        queued_id(&r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = senders.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let failed = ferry_integration_tests::wait::try_wait_until(Duration::from_secs(20), || {
        let tf: std::collections::HashSet<String> = node
            .records()
            .into_iter()
            .filter(|r| r["type"] == "TransientFailure")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.iter().all(|id| tf.contains(id)).then_some(())
    });
    let tf = node.records().iter().filter(|r| r["type"] == "TransientFailure").count();
    assert!(failed.is_some(), "only {tf} of {} messages had their attempt", ids.len());
}

/// A delivery connection does not wait for the spool removal of what it delivered; a graceful
/// stop waits for those removals, so nothing delivered before the stop is sent again after it.
/// A log hook makes each removal wait for its record first (the slow case).
#[test]
fn a_graceful_stop_mid_delivery_sends_nothing_twice() {
    let sink = SmtpSink::start();
    let hook = "kumo.on('init', function() kumo.configure_log_hook { name = 'h' } end)\nkumo.on('should_enqueue_log_record', function() return false end)";
    let mut node = FerryNode::start(LOGS, Some(&source_policy(sink.port(), "20m", hook)));
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    for n in 0..300 {
        let r = c.transaction("sender@example.com", &[format!("r{n}@example.com").as_str()], &body(""));
        assert_eq!(r.code, 250, "{r:?}");
    }
    drop(c);
    wait_until("deliveries under way", Duration::from_secs(20), || (sink.count() >= 30).then_some(()));
    assert!(node.stop().success());
    node.restart();
    wait_until("every message delivered", Duration::from_secs(30), || (sink.count() >= 300).then_some(()));
    let mut seen = std::collections::HashMap::new();
    for m in sink.messages() {
        *seen.entry(m.rcpt_to[0].clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent again after a graceful stop: {twice:?}");
    assert_eq!(seen.len(), 300);
}
