//! Admin rebind and bounce end to end (SPEC §5, §2.8; §9 scenarios 8–10).

use std::time::Duration;

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

const LOGS: &str = "[logs]\nmeta = [\"xfer*\"]\nheaders = [\"X-*\", \"Subject\"]\n";

fn source(sink: &SmtpSink, extra: &str) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
{extra}
"#,
        sink.port()
    );
    FerryNode::start(LOGS, Some(&policy))
}

fn send(node: &FerryNode, rcpt: &str) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    queued_id(&c.send_message(
        "sender@example.com",
        &[rcpt],
        "Subject: Hello! This is a test\r\n\r\nbody\r\n",
    ))
}

/// Scenario 6's set-up: example.com suspended, one message waiting after its TF.
fn suspended_message(node: &FerryNode) -> String {
    let said = node.cli(&["suspend", "--domain", "example.com", "--reason", "hold"]);
    assert!(said.starts_with("suspended: id "), "people get a sentence: {said}");
    let table = node.cli(&["suspend-list"]);
    assert!(table.starts_with("ID") && table.contains("domain=example.com  hold"), "and a table: {table}");
    let id = send(node, "allow@example.com");
    node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    node.wait_scheduled("example.com", &id);
    id
}

#[test]
fn scenario_8_rebind_moves_the_message_and_it_is_due_at_once() {
    let sink = SmtpSink::start();
    let node = source(&sink, "");
    let id = suspended_message(&node);
    let out = node.cli_output(&[
        "rebind",
        "--domain",
        "example.com",
        "--reason",
        "move it",
        "--data",
        r#"{"queue":"rebound.com"}"#,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "Delivery"]);
    assert_eq!(records[2]["queue"], "rebound.com");
    assert_eq!(records[2]["response"]["content"], "Rebound from example.com to rebound.com: move it");
    assert_eq!(records[3]["queue"], "rebound.com");
    assert_eq!(sink.wait_messages(1)[0].rcpt_to, vec!["allow@example.com"]);
}

#[test]
fn scenario_9_rebind_event_rewrites_the_message() {
    let sink = SmtpSink::start();
    let handler = r#"
kumo.on('rebind_message', function(msg, data)
  msg:append_header('X-Rebound', 'woot')
  msg:set_meta('queue', data.queue)
end)
"#;
    let node = source(&sink, handler);
    let id = suspended_message(&node);
    node.cli(&[
        "rebind",
        "--domain",
        "example.com",
        "--reason",
        "event",
        "--set",
        "queue=rebound.com",
        "--trigger-rebind-event",
    ]);
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "Delivery"]);
    assert_eq!(records[2]["queue"], "rebound.com");
    let delivered = sink.wait_messages(1);
    let text = &delivered[0].data;
    assert!(text.contains("X-Rebound: woot"), "{text}");
    assert_eq!(records[3]["headers"]["X-Rebound"], "woot");
}

#[test]
fn scenario_10_rebind_event_without_a_handler_changes_nothing() {
    let sink = SmtpSink::start();
    let node = source(&sink, "");
    let id = suspended_message(&node);
    let before = node.inspect("example.com").unwrap()["messages"][0]["message"].clone();
    node.cli(&[
        "rebind",
        "--domain",
        "example.com",
        "--reason",
        "r",
        "--set",
        "queue=x.com",
        "--trigger-rebind-event",
    ]);
    wait_until("the diagnostic", Duration::from_secs(20), || {
        node.stderr().contains("no rebind_message handler is registered").then_some(())
    });
    let after = wait_until("the message back in its queue", Duration::from_secs(20), || {
        let q = node.inspect("example.com")?;
        (q["num_scheduled"] == 1).then(|| q["messages"][0]["message"].clone())
    });
    assert_eq!(after["due"], before["due"], "D10: the due time is kept");
    assert_eq!(after["meta"], before["meta"]);
    let kinds: Vec<Value> = node.records_for(&id).iter().map(|r| r["type"].clone()).collect();
    assert_eq!(kinds, vec!["Reception", "TransientFailure"], "no AdminRebind, no Delayed");
}

#[test]
fn rebind_without_anything_to_do_is_refused() {
    let sink = SmtpSink::start();
    let node = source(&sink, "");
    let out = node.cli_output(&["rebind", "--everything", "--reason", "r"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
    let out = node.cli_output(&["rebind", "--queue", "example.com", "--reason", "r", "--set", "a=b"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not take --queue"));
}

#[test]
fn bounce_drains_matching_queues_and_catches_arrivals_until_cancelled() {
    let sink = SmtpSink::start();
    let node = source(&sink, "");
    node.cli(&["suspend", "--domain", "example.com", "--reason", "hold"]);
    let waiting: Vec<String> = (0..3).map(|i| send(&node, &format!("r{i}@example.com"))).collect();
    node.wait_records("TransientFailure", 3);
    let other = send(&node, "keep@other.example");

    let out: Value = serde_json::from_str(&node.cli(&[
        "--json",
        "bounce",
        "--domain",
        "example.com",
        "--reason",
        "spam run",
    ]))
    .unwrap();
    assert_eq!(
        (out["bounced"].clone(), out["total_bounced"].clone()),
        (serde_json::json!({}), Value::from(0))
    );
    let bounce_id = out["id"].as_str().unwrap().to_string();
    for id in &waiting {
        let r = node.wait_sequence(id, &["Reception", "TransientFailure", "AdminBounce"]);
        assert_eq!(r[2]["response"]["code"], 551);
        assert_eq!(
            r[2]["response"]["enhanced_code"],
            serde_json::json!({"class": 5, "subject": 7, "detail": 1})
        );
        assert_eq!(r[2]["response"]["content"], "Administrator bounced with reason: spam run");
        assert_eq!(r[2]["site"], "localhost");
    }
    // An arrival while the bounce lasts is bounced too; other domains are untouched.
    let late = send(&node, "late@example.com");
    node.wait_sequence(&late, &["Reception", "AdminBounce"]);
    node.wait_sequence(&other, &["Reception", "Delivery"]);
    wait_until("bounced messages removed", Duration::from_secs(20), || {
        let left = node.spool_ids();
        (!waiting.iter().chain([&late]).any(|id| left.contains(id))).then_some(())
    });

    let table = node.cli(&["bounce-list"]);
    let row = table.lines().find(|l| l.starts_with(&bounce_id)).unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("domain=example.com") && row.contains("spam run") && row.trim_end().ends_with('4'),
        "{table}"
    );
    let list: Value = serde_json::from_str(&node.cli(&["--json", "bounce-list"])).unwrap();
    assert_eq!(list[0]["id"], bounce_id.as_str());
    assert_eq!(list[0]["total_bounced"], 4);
    assert_eq!(list[0]["bounced"]["example.com"], 4);
    assert_eq!(list[0]["reason"], "spam run");
    assert_eq!(node.cli(&["bounce-cancel", "--id", &bounce_id]).trim(), format!("removed {bounce_id}"));
    let again = node.cli_output(&["bounce-cancel", "--id", &bounce_id]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("404"));
    let after = send(&node, "after@example.com");
    node.wait_sequence(&after, &["Reception", "TransientFailure"]);
}

/// Bodies exactly as KumoMTA's `kcli` serialises them (its optional fields omitted, durations
/// as strings, rebind data as a string map) are accepted with KumoMTA's response shapes.
#[test]
fn kcli_shaped_requests_get_kcli_shaped_answers() {
    use ferry_integration_tests::http::{get, post, request};
    let sink = SmtpSink::start();
    let node = source(&sink, "");
    let json = [("Content-Type", "application/json")];
    let call = |method: &str, path: &str, body: &str| -> (u16, Value) {
        let (status, text) = match method {
            "POST" => post(node.http, path, &json, body.as_bytes()),
            "GET" => get(node.http, path, &[]),
            m => request(node.http, m, path, &json, body.as_bytes()),
        };
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    };
    let (s, r) = call(
        "POST",
        "/api/admin/suspend/v1",
        r#"{"campaign":null,"tenant":null,"domain":"example.com","reason":"kcli","duration":"10m"}"#,
    );
    assert_eq!(s, 200, "{r}");
    let sid = r["id"].as_str().unwrap().to_string();
    let (s, r) = call("GET", "/api/admin/suspend/v1", "");
    assert_eq!((s, r[0]["id"].as_str(), r[0]["reason"].as_str()), (200, Some(sid.as_str()), Some("kcli")));
    assert!(r[0]["duration"].as_str().unwrap().starts_with('9'), "remaining time as a duration string: {r}");
    let (s, r) = call("DELETE", "/api/admin/suspend/v1", &format!(r#"{{"id":"{sid}"}}"#));
    assert_eq!((s, r), (200, Value::String(format!("removed {sid}"))));

    let (s, r) = call(
        "POST",
        "/api/admin/bounce/v1",
        r#"{"campaign":null,"tenant":null,"domain":"nowhere.example","routing_domain":null,"reason":"kcli","suppress_logging":false}"#,
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!((r["bounced"].clone(), r["total_bounced"].clone()), (serde_json::json!({}), Value::from(0)));
    let bid = r["id"].as_str().unwrap().to_string();
    let (_, r) = call("GET", "/api/admin/bounce/v1", "");
    assert_eq!((r[0]["id"].as_str(), r[0]["total_bounced"].as_u64()), (Some(bid.as_str()), Some(0)));
    let (s, _) = call("DELETE", "/api/admin/bounce/v1", &format!(r#"{{"id":"{bid}"}}"#));
    assert_eq!(s, 200);

    let (s, r) = call(
        "POST",
        "/api/admin/rebind/v1",
        r#"{"campaign":null,"tenant":null,"domain":"nowhere.example","routing_domain":null,"reason":"kcli","suppress_logging":false,"data":{"queue":"x.example"},"trigger_rebind_event":false,"always_flush":false}"#,
    );
    assert_eq!((s, r), (200, serde_json::json!({})));
    let (s, r) = call(
        "POST",
        "/api/admin/xfer/v1",
        r#"{"campaign":null,"tenant":null,"domain":"nowhere.example","routing_domain":null,"reason":"kcli","target":"http://127.0.0.1:1/"}"#,
    );
    assert_eq!((s, r), (200, serde_json::json!({})));
    let (s, r) = call("GET", "/api/admin/inspect-sched-q/v1?queue_name=nowhere.example&limit=5", "");
    assert_eq!(s, 404, "{r}");
    let (s, r) = call("POST", "/api/admin/bounce/v1", r#"{"domain":"x","reason":"r","unexpected":1}"#);
    assert_eq!(s, 400);
    assert!(r["error"].as_str().unwrap().contains("unexpected"), "the field is named: {r}");
}
