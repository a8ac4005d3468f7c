//! `requeue_message` (SPEC §3): every transient failure is a decision by the policy actor. The
//! seed documents' examples run verbatim; only the smart host they name is pointed at the test sink.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

const SEED_001: &str = r#"local SMART_HOST = '[10.0.0.1]'

kumo.on('requeue_message', function(msg)
  local queue = msg:get_queue_name()
  if queue ~= SMART_HOST and msg:num_attempts() >= 2 then
    -- Re-route to alternative infra to manage the rest of the send
    msg:set_meta('queue', SMART_HOST)
    -- clear any scheduling constraints, as they do not apply
    -- when sending via a smart host
    msg:set_scheduling(nil)
  end
end)"#;

const SEED_003: &str = r#"local SMART_HOST = '[10.0.0.1]'

kumo.on(
  'requeue_message',
  function(msg, smtp_response, insert_context, increment_attempts, delay)
    local queue = msg:queue_name()
    if queue ~= SMART_HOST and msg:num_attempts() >= 2 then
      -- Re-route to alternative infra to manage the rest of the send
      msg:set_meta('queue', SMART_HOST)
      -- clear any scheduling constraints, as they do not apply
      -- when sending via a smart host
      msg:set_scheduling(nil)
    end
  end
)"#;

/// Scenario 19's source: `example.com` delivers through a custom_lua `send` that always says
/// "busy" (400), retrying every 2 s; any other queue (the smart host) is plain SMTP.
fn scenario_19_policy(seed: &str, sink: &SmtpSink) -> String {
    let smart_host = format!("'[127.0.0.1]:{}'", sink.port());
    format!(
        r#"
kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'example.com' then
    return kumo.make_queue_config {{ retry_interval = '2s', protocol = {{ custom_lua = {{ constructor = 'make.busy' }} }} }}
  end
  return kumo.make_queue_config {{}}
end)
kumo.on('make.busy', function(domain, tenant, campaign)
  local connection = {{}}
  function connection:send(message) kumo.reject(400, 'busy') end
  return connection
end)
{}
"#,
        seed.replace("'[10.0.0.1]'", &smart_host)
    )
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn send(node: &FerryNode, rcpt: &str, headers: &str) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    let r =
        c.send_message("sender@example.com", &[rcpt], &format!("Subject: requeue\r\n{headers}\r\nbody\r\n"));
    assert_eq!(r.code, 250, "{r:?}");
    queued_id(&r)
}

fn reroute_to_smart_host(seed: &str) {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&scenario_19_policy(seed, &sink)));
    // A schedule window that is always open keeps the message deliverable; `set_scheduling(nil)`
    // in the seed must clear it (checked through the smart host delivering at once).
    let id = send(&node, "user@example.com", "X-Schedule: {\"expires\":\"3000-12-31T00:00:00Z\"}\r\n");
    let records = node.wait_sequence(
        &id,
        &["Reception", "TransientFailure", "TransientFailure", "TransientFailure", "Delivery"],
    );
    let smart_host = format!("[127.0.0.1]:{}", sink.port());
    let delivery = &records[4];
    assert_eq!(delivery["queue"], smart_host.as_str());
    assert_eq!(delivery["num_attempts"], 3);
    for tf in &records[1..4] {
        assert_eq!(tf["queue"], "example.com");
        assert_eq!(tf["response"]["content"], "busy");
    }
    // No backoff after the third failure: the reroute makes it eligible at once.
    let gap = (time(&delivery["event_time"]) - time(&records[3]["event_time"])).as_seconds_f64();
    assert!(gap < 1.5, "delivery {gap:.2}s after the 3rd TF");
    assert!(
        node.records().iter().all(|r| r["type"] != "AdminRebind"),
        "a policy reroute is not an admin action"
    );
    let got = sink.wait_messages(1);
    assert_eq!(got[0].rcpt_to, vec!["user@example.com"]);
    wait_until("the spool to empty", Duration::from_secs(10), || node.spool_ids().is_empty().then_some(()));
}

#[test]
fn seed_001_reroutes_to_the_smart_host_after_the_second_attempt() {
    reroute_to_smart_host(SEED_001);
}

#[test]
fn seed_003_reroutes_to_the_smart_host_after_the_second_attempt() {
    reroute_to_smart_host(SEED_003);
}

fn sink_policy(sink: &SmtpSink, requeue: &str) -> String {
    format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
{requeue}
"#,
        sink.port()
    )
}

#[test]
fn scenario_18_reject_in_requeue_bounces_and_stops_the_chain() {
    let sink = SmtpSink::start();
    let policy = sink_policy(
        &sink,
        r#"
kumo.on('requeue_message', function(msg) kumo.reject(421, 'no') end)
kumo.on('requeue_message', function(msg) kumo.log_warn('SECOND-HANDLER-RAN') end)
"#,
    );
    let node = FerryNode::start("", Some(&policy));
    let id = send(&node, "tempfail@example.com", "");
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure", "Bounce"]);
    let bounce = &records[2];
    assert_eq!(
        bounce["response"],
        serde_json::json!({"code":421,"enhanced_code":null,"content":"no","command":null})
    );
    assert_eq!(bounce["site"], "");
    wait_until("the spool to empty", Duration::from_secs(10), || node.spool_ids().is_empty().then_some(()));
    assert!(!node.stderr().contains("SECOND-HANDLER-RAN"), "later handlers are not called");
    // One attempt: one RCPT refusal (pipelined, the sink may also log refusing the DATA after it).
    assert_eq!(sink.rejections().iter().filter(|r| r["command"] == "RCPT").count(), 1);
}

#[test]
fn handler_arguments_and_attempts_as_the_handler_sees_them() {
    let sink = SmtpSink::start();
    let policy = sink_policy(
        &sink,
        r#"
kumo.on('requeue_message', function(msg, smtp_response, insert_context, increment_attempts, delay)
  msg:set_meta('seen', table.concat({ smtp_response, table.concat(insert_context, ','),
    tostring(increment_attempts), tostring(delay), tostring(msg:num_attempts()) }, '|'))
end)
"#,
    );
    let node = FerryNode::start("", Some(&policy));
    let id = send(&node, "tempfail@example.com", "");
    node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let inspect = wait_until("the message to wait in its queue", Duration::from_secs(10), || {
        node.inspect("example.com").filter(|v| v["num_scheduled"] == 1)
    });
    let m = &inspect["messages"][0]["message"];
    assert_eq!(m["meta"]["seen"], "400 4.0.0 tempfail requested|LoggedTransientFailure|true|nil|0");
    assert_eq!(m["num_attempts"], 1, "incremented after the handler ran");
}

#[test]
fn a_failing_handler_leaves_the_message_in_its_queue_with_its_retry_schedule() {
    let sink = SmtpSink::start();
    let policy = sink_policy(
        &sink,
        "kumo.on('requeue_message', function(msg)\n  msg:set_meta('queue', 'elsewhere.example')\n  error('handler bug')\nend)\n",
    );
    let node = FerryNode::start("", Some(&policy));
    let id = send(&node, "tempfail@example.com", "");
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let inspect = wait_until("the message to wait in example.com", Duration::from_secs(10), || {
        node.inspect("example.com").filter(|v| v["num_scheduled"] == 1)
    });
    let m = &inspect["messages"][0]["message"];
    assert_eq!(m["num_attempts"], 1);
    assert!(m["meta"].get("queue").is_none(), "the half-made change is rolled back (D2)");
    let wait = (time(&m["due"]) - time(&records[1]["event_time"])).num_seconds();
    assert!((20 * 60 - 31..=20 * 60 + 30).contains(&wait), "normal backoff: {wait}s");
    assert!(node.inspect("elsewhere.example").is_none());
    let line = policy.lines().position(|l| l.contains("error('handler bug')")).unwrap() + 1;
    let stderr = node.stderr();
    assert!(
        stderr.contains(&format!("policy.lua:{line}: handler bug")),
        "diagnostic names the line {line}:\n{stderr}"
    );
}

#[test]
fn a_handler_that_never_returns_is_stopped_by_the_time_limit() {
    let sink = SmtpSink::start();
    let policy = sink_policy(&sink, "kumo.on('requeue_message', function(msg) while true do end end)\n");
    let node = FerryNode::start("[policy]\nhandler_timeout = \"500ms\"\n", Some(&policy));
    let id = send(&node, "tempfail@example.com", "");
    node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    wait_until("the message to be kept in its queue", Duration::from_secs(10), || {
        node.inspect("example.com").filter(|v| v["num_scheduled"] == 1)
    });
    assert!(node.stderr().contains("time limit"));
}
