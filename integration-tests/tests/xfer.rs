//! Moving queued mail between two real nodes (SPEC §4, §9 scenario 11).

use ferry_integration_tests::http::get;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

const LOGS: &str = "[logs]\nmeta = [\"*\"]\nheaders = [\"X-*\", \"Subject\"]\n";

fn source(sink: &SmtpSink) -> FerryNode {
    source_with(sink, "")
}

fn source_with(sink: &SmtpSink, extra_toml: &str) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('smtp_server_message_received', function(msg)
  msg:import_scheduling_header('X-Schedule')
  msg:import_x_headers {{ 'tenant' }}
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    );
    FerryNode::start(&format!("{LOGS}{extra_toml}"), Some(&policy))
}

fn receiver(maildir: &std::path::Path) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ protocol = {{ maildir_path = '{}' }} }}
end)
kumo.on('xfer_message_received', function(msg, auth_info)
  msg:set_meta('sunk', 'received via xfer')
end)
"#,
        maildir.display()
    );
    FerryNode::start(LOGS, Some(&policy))
}

fn inspect_body(node: &FerryNode, queue: &str) -> Value {
    serde_json::from_str(&node.cli(&["inspect-sched-q", queue, "--want-body", "--no-limit"])).unwrap()
}

#[test]
fn scenario_11_xfer_end_to_end_keeps_the_message_state() {
    let sink = SmtpSink::start();
    let maildir = tempfile::tempdir().unwrap();
    let a = source(&sink);
    let b = receiver(maildir.path());
    a.cli(&["suspend", "--domain", "example.com", "--tenant", "mytenant", "--reason", "hold"]);
    let mut c = RawSmtp::connect(a.smtp);
    let r = c.send_message(
        "sender@example.com",
        &["allow@example.com"],
        "Subject: Hello! This is a test\r\nX-Schedule: {\"expires\":\"3000-12-31T00:00:00Z\"}\r\nTenant: mytenant\r\n\r\nbody\r\n",
    );
    let id = queued_id(&r);
    a.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let snapshot = inspect_body(&a, "mytenant@example.com");
    let before = snapshot["messages"][0]["message"].clone();
    assert_eq!(before["num_attempts"], 1);

    let target = format!("http://{}", b.http);
    let out = a.cli_output(&["xfer", "--domain", "example.com", "--reason", "testing", "--target", &target]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOTE: Xfer always runs asynchronously"));

    let records = a.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "XferOut"]);
    let xferq = format!("http://{}/.xfer.kumomta.internal", b.http);
    assert_eq!(records[2]["queue"], xferq.as_str());
    assert_eq!(
        records[2]["response"]["content"],
        format!("Rebound from mytenant@example.com to {xferq}: testing")
    );
    assert_eq!(records[3]["delivery_protocol"], "xfer");
    assert_eq!(records[3]["site"], format!("unspecified->{xferq}@xfer"));
    let new_id =
        records[3]["response"]["content"].as_str().unwrap().strip_prefix("new id is ").unwrap().to_string();
    assert!(a.spool_ids().is_empty(), "removed from the source after XferOut");

    b.wait_sequence(&new_id, &["XferIn", "Delayed"]);
    let after_q = inspect_body(&b, "mytenant@example.com");
    let after = &after_q["messages"][0]["message"];
    for key in ["due", "data", "sender", "recipient", "num_attempts", "scheduling"] {
        assert_eq!(after[key], before[key], "{key} differs after xfer");
    }
    let (meta_a, meta_b) = (before["meta"].as_object().unwrap(), after["meta"].as_object().unwrap());
    for (k, v) in meta_a {
        assert_eq!(meta_b.get(k), Some(v), "meta {k}");
    }
    assert_eq!(meta_b["sunk"], "received via xfer");
    assert_eq!(meta_b["xfer_prior_id"], id.as_str());
    assert_eq!(meta_b["xfer_prior_node"], a.nodeid.as_str());
    assert_eq!(meta_b["xfer_from"], "127.0.0.1");
    assert_eq!(meta_b["xfer_via"], b.http.to_string());
    assert!(meta_b.get("xfer_queue_info").is_none());
}

#[test]
fn routing_domain_alone_selects_for_xfer_but_not_for_suspend() {
    let sink = SmtpSink::start();
    let a = source(&sink);
    a.cli(&["xfer", "--routing-domain", "relay.example", "--reason", "r", "--target", "http://127.0.0.1:1"]);
    let out = a.cli_output(&["suspend", "--routing-domain", "relay.example", "--reason", "r"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not take --routing-domain"));
}

#[test]
fn a_bad_target_is_refused_with_400() {
    let sink = SmtpSink::start();
    let a = source(&sink);
    let out = a.cli_output(&["xfer", "--everything", "--reason", "r", "--target", "ftp://10.0.0.1/x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400") && err.contains("invalid xfer target"), "{err}");
}

/// SPEC §9 scenarios 13 and 15 in one: a target that is down gives the xfer TF of SPEC §4.9 and
/// keeps the message in the xfer queue; cancelling brings it back, due at once, and it delivers.
#[test]
fn xfer_to_a_dead_target_then_cancel_delivers_from_the_original_queue() {
    let sink = SmtpSink::start();
    let a = source(&sink);
    let out = a.cli(&["--json", "suspend", "--domain", "example.com", "--reason", "hold"]);
    let sid = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
    let mut c = RawSmtp::connect(a.smtp);
    let id = queued_id(&c.send_message(
        "sender@example.com",
        &["allow@example.com"],
        "Subject: x\r\n\r\nbody\r\n",
    ));
    a.wait_sequence(&id, &["Reception", "TransientFailure"]);
    a.cli(&["suspend-cancel", "--id", &sid]);

    // Port 1 on loopback: nothing listens there.
    a.cli(&["xfer", "--domain", "example.com", "--reason", "drain", "--target", "http://127.0.0.1:1"]);
    let xferq = "http://127.0.0.1:1/.xfer.kumomta.internal";
    let records = a.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "TransientFailure"]);
    let tf = &records[3];
    assert_eq!(tf["queue"], xferq);
    assert_eq!(tf["delivery_protocol"], "Xfer");
    let content = tf["response"]["content"].as_str().unwrap();
    assert!(
        content.starts_with(
            // Ferry peers get the batch form first (docs/xfer-protocol.md).
            "KumoMTA internal: error in deliver_message: request status http://127.0.0.1:1/api/xfer/inject-batch/v1"
        ),
        "{content}"
    );
    let waiting = a.inspect(xferq).expect("the xfer queue holds the message");
    assert_eq!(waiting["queue_config"]["retry_interval"], "10s");
    assert_eq!(waiting["queue_config"]["max_retry_interval"], "5m");

    // Unknown and non-xfer queues are refused.
    let unknown =
        a.cli_output(&["xfer-cancel", "http://127.0.0.1:2/.xfer.kumomta.internal", "--reason", "x"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("404"));
    let not_xfer = a.cli_output(&["xfer-cancel", "example.com", "--reason", "x"]);
    assert!(String::from_utf8_lossy(&not_xfer.stderr).contains("is not an xfer queue"));

    a.cli(&["xfer-cancel", xferq, "--reason", "target retired"]);
    let records = a.wait_sequence(
        &id,
        &["Reception", "TransientFailure", "AdminRebind", "TransientFailure", "AdminRebind", "Delivery"],
    );
    assert_eq!(records[4]["queue"], "example.com");
    assert_eq!(
        records[4]["response"]["content"],
        format!("Rebound from {xferq} to example.com: target retired")
    );
    assert_eq!(sink.wait_messages(1)[0].rcpt_to, vec!["allow@example.com"]);
}

const SEED_000: &str = r#"local BACKUP_HOST = 'http://backup-kumomta:8000'

kumo.on(
  'requeue_message',
  function(msg, smtp_response, insert_context, increment_attempts, delay)
    if msg:num_attempts() >= 2 then
      -- Re-route to alternative infra to manage the rest of the send
      kumo.xfer.xfer_in_requeue(
        msg,
        BACKUP_HOST,
        insert_context,
        increment_attempts,
        delay,
        'reroute to backup infra'
      )
    end
  end
)"#;

/// Seed 000 verbatim (only BACKUP_HOST points at the second node): after the third transient
/// failure the message moves to the backup node with its attempts and next due time.
#[test]
fn seed_000_xfer_in_requeue_moves_the_message_to_the_backup_node() {
    let sink = SmtpSink::start();
    let maildir = tempfile::tempdir().unwrap();
    let b = receiver(maildir.path());
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '5s', max_retry_interval = '5s',
    protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }},
  }}
end)
{}
"#,
        sink.port(),
        SEED_000.replace("http://backup-kumomta:8000", &format!("http://{}", b.http))
    );
    let a = FerryNode::start(LOGS, Some(&policy));
    let mut c = RawSmtp::connect(a.smtp);
    let id = queued_id(&c.send_message(
        "sender@example.com",
        &["tempfail@example.com"],
        "Subject: x\r\n\r\nbody\r\n",
    ));
    let records = a.wait_sequence(
        &id,
        &["Reception", "TransientFailure", "TransientFailure", "TransientFailure", "AdminRebind", "XferOut"],
    );
    let xferq = format!("http://{}/.xfer.kumomta.internal", b.http);
    assert_eq!(records[4]["queue"], xferq.as_str());
    assert_eq!(
        records[4]["response"]["content"],
        format!("Rebound from example.com to {xferq}: reroute to backup infra")
    );
    let third_tf: chrono::DateTime<chrono::Utc> = records[3]["event_time"].as_str().unwrap().parse().unwrap();
    let new_id =
        records[5]["response"]["content"].as_str().unwrap().strip_prefix("new id is ").unwrap().to_string();
    let b_records = b.wait_sequence(&new_id, &["XferIn", "Delayed", "Delivery"]);
    assert_eq!(b_records[0]["num_attempts"], 3, "two attempts before, plus this failure");
    let delivered: chrono::DateTime<chrono::Utc> =
        b_records[2]["event_time"].as_str().unwrap().parse().unwrap();
    let wait = (delivered - third_tf).as_seconds_f64();
    assert!(
        (4.5..8.0).contains(&wait),
        "delivered at the retry time computed on the source: {wait:.2}s after the 3rd TF"
    );
    assert!(a.spool_ids().is_empty());
}

/// SPEC §9 scenario 12 (the "bogus" target is a dead loopback port: a real bogus name would send
/// a DNS query off the machine): re-targeting from one xfer queue to another keeps the queue info
/// saved by the first xfer.
#[test]
fn scenario_12_xfer_twice_keeps_the_first_saved_info() {
    let sink = SmtpSink::start();
    let maildir = tempfile::tempdir().unwrap();
    let a = source(&sink);
    let b = receiver(maildir.path());
    a.cli(&["suspend", "--domain", "example.com", "--reason", "hold"]);
    let mut c = RawSmtp::connect(a.smtp);
    let id = queued_id(&c.send_message(
        "sender@example.com",
        &["allow@example.com"],
        "Subject: twice\r\nTenant: mytenant\r\n\r\nbody\r\n",
    ));
    a.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let before = inspect_body(&a, "mytenant@example.com")["messages"][0]["message"].clone();

    let dead = "http://127.0.0.1:1/.xfer.kumomta.internal";
    a.cli(&["xfer", "--domain", "example.com", "--reason", "first", "--target", "http://127.0.0.1:1"]);
    a.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "TransientFailure"]);
    a.cli(&["xfer", "--queue", dead, "--reason", "second", "--target", &format!("http://{}", b.http)]);
    let records = a.wait_sequence(
        &id,
        &["Reception", "TransientFailure", "AdminRebind", "TransientFailure", "AdminRebind", "XferOut"],
    );
    assert_eq!(
        records[4]["response"]["content"],
        format!("Rebound from {dead} to http://{}/.xfer.kumomta.internal: second", b.http)
    );
    let new_id =
        records[5]["response"]["content"].as_str().unwrap().strip_prefix("new id is ").unwrap().to_string();
    b.wait_sequence(&new_id, &["XferIn", "Delayed"]);
    let after = inspect_body(&b, "mytenant@example.com")["messages"][0]["message"].clone();
    assert_eq!(after["num_attempts"], 1, "the attempt count saved by the first xfer, not the xfer queue's");
    assert_eq!(after["due"], before["due"]);
}

/// SPEC §9 scenario 17: a node told to xfer to itself is stopped by the loop guard each time, and
/// xfer-cancel puts the message back where it was.
#[test]
fn scenario_17_self_xfer_is_refused_and_cancel_restores() {
    let sink = SmtpSink::start();
    let a = source(&sink);
    a.cli(&["suspend", "--domain", "example.com", "--reason", "hold"]);
    let mut c = RawSmtp::connect(a.smtp);
    let id = queued_id(&c.send_message(
        "sender@example.com",
        &["allow@example.com"],
        "Subject: self\r\n\r\nbody\r\n",
    ));
    a.wait_sequence(&id, &["Reception", "TransientFailure"]);
    a.cli(&[
        "xfer",
        "--domain",
        "example.com",
        "--reason",
        "oops",
        "--target",
        &format!("http://{}", a.http),
    ]);
    let records = a.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "TransientFailure"]);
    let content = records[3]["response"]["content"].as_str().unwrap();
    assert!(
        content.contains(&format!("cannot xfer to myself. xfer_prior_node={} which is my node id", a.nodeid)),
        "{content}"
    );
    assert_eq!(a.spool_ids(), vec![id.clone()], "no duplicate");
    let xferq = format!("http://{}/.xfer.kumomta.internal", a.http);
    a.cli(&["xfer-cancel", &xferq, "--reason", "undo"]);
    let records = a.wait_sequence(
        &id,
        &[
            "Reception",
            "TransientFailure",
            "AdminRebind",
            "TransientFailure",
            "AdminRebind",
            "TransientFailure",
        ],
    );
    assert_eq!(records[4]["queue"], "example.com", "back in its original queue");
    assert_eq!(records[5]["site"], "example.com", "and suspended there again, as before the xfer");
}

/// The `xfer_targets` of `GET /api/admin/actors/v1`: one entry per live target actor.
fn xfer_targets(node: &FerryNode) -> Vec<Value> {
    let (status, body) = get(node.http, "/api/admin/actors/v1", &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["xfer_targets"].as_array().unwrap().clone()
}

#[test]
fn an_idle_target_is_retired_and_the_next_xfer_starts_a_new_one() {
    let sink = SmtpSink::start();
    let maildir = tempfile::tempdir().unwrap();
    let a = source_with(&sink, "[xfer]\nidle_timeout = \"2s\"\n");
    let b = receiver(maildir.path());
    let target = format!("http://{}", b.http);
    a.cli(&["suspend", "--domain", "example.com", "--reason", "hold"]);
    for round in 1..=2 {
        let mut c = RawSmtp::connect(a.smtp);
        let id =
            queued_id(&c.send_message("s@example.com", &["r@example.com"], "Subject: idle\r\n\r\nbody\r\n"));
        a.wait_sequence(&id, &["Reception", "TransientFailure"]);
        a.wait_scheduled("example.com", &id);
        a.cli(&["xfer", "--domain", "example.com", "--reason", "drain", "--target", &target]);
        let records = a.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "XferOut"]);
        let new_id = records[3]["response"]["content"].as_str().unwrap().strip_prefix("new id is ").unwrap();
        // A fresh actor each round: its `sent` counts this round's message only.
        let live = xfer_targets(&a);
        assert_eq!(live.len(), 1, "round {round}: {live:?}");
        let normalised = format!("{target}/");
        assert_eq!(
            (live[0]["target"].as_str(), live[0]["sent"].as_u64()),
            (Some(normalised.as_str()), Some(1))
        );
        // The message keeps its due time (after the suspension's retry): it waits on B.
        b.wait_sequence(new_id, &["XferIn", "Delayed"]);
        // Nothing more to send: after idle_timeout the target actor goes away, with its metrics.
        wait_until("the idle xfer target to be retired", std::time::Duration::from_secs(15), || {
            xfer_targets(&a).is_empty().then_some(())
        });
    }
    assert!(a.spool_ids().is_empty(), "both messages left the source");
}
