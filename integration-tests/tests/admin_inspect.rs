//! `inspect-message` and `set-log-filter` (KumoMTA's `GET /api/admin/inspect-message/v1` and
//! `POST /api/admin/set_diagnostic_log_filter/v1`), over HTTP, through `ferry`'s CLI, and in the
//! shapes KumoMTA's `kcli` sends and reads.

use std::time::Duration;

use ferry_integration_tests::http::{get, post};
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::{Value, json};

/// Messages wait for a `first_attempt` far ahead (X-Schedule), so the spool holds them for the
/// whole test; every reception writes a policy debug line naming the Subject.
const POLICY: &str = r#"
kumo.on('smtp_server_message_received', function(msg)
  msg:import_scheduling_header('X-Schedule')
  msg:set_meta('tenant', 'mytenant')
  kumo.log_debug('probe saw ' .. msg:get_first_named_header_value('Subject'))
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[127.0.0.1]:1' } } } }
end)
"#;

const SCHEDULE: &str = r#"{"first_attempt":"2100-01-01T00:00:00Z","expires":"2100-12-31T00:00:00Z"}"#;

fn body(subject: &str) -> String {
    format!("Subject: {subject}\r\nX-Schedule: {SCHEDULE}\r\n\r\nHello.\r\n")
}

fn send(node: &FerryNode, to: &[&str], subject: &str) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    let reply = c.send_message("sender@example.com", to, &body(subject));
    assert_eq!(reply.code, 250, "{reply:?}");
    queued_id(&reply)
}

fn get_json(node: &FerryNode, path: &str) -> (u16, Value) {
    let (status, text) = get(node.http, path, &[]);
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn set_filter(node: &FerryNode, body: &str) -> (u16, String) {
    post(
        node.http,
        "/api/admin/set_diagnostic_log_filter/v1",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// `message` as KumoMTA's `MessageInformation` reads it: no field it does not have, each of the
/// right type (`recipient` one string or an array, `due` an RFC 3339 time).
fn assert_message_information(m: &Value) {
    let allowed = ["sender", "recipient", "meta", "data", "due", "num_attempts", "scheduling"];
    let obj = m.as_object().unwrap_or_else(|| panic!("message is an object: {m}"));
    for key in obj.keys() {
        assert!(allowed.contains(&key.as_str()), "KumoMTA's MessageInformation has no {key:?}: {m}");
    }
    assert!(m["sender"].is_string(), "sender: {m}");
    match &m["recipient"] {
        Value::String(_) => {}
        Value::Array(list) => assert!(list.iter().all(Value::is_string), "recipient: {m}"),
        other => panic!("recipient must be a string or an array of strings, not {other}"),
    }
    assert!(m["meta"].is_object(), "meta: {m}");
    assert!(m.get("data").is_none_or(|d| d.is_string() || d.is_null()), "data: {m}");
    if let Some(due) = m.get("due") {
        chrono::DateTime::parse_from_rfc3339(due.as_str().unwrap()).expect("due is RFC 3339");
    }
    if let Some(n) = m.get("num_attempts") {
        assert!(n.as_u64().is_some_and(|n| n <= u64::from(u16::MAX)), "num_attempts is a u16: {m}");
    }
    assert!(m.get("scheduling").is_none_or(Value::is_object), "scheduling: {m}");
}

/// A waiting message looks the same through inspect-message as through inspect-sched-q, with
/// KumoMTA's recipient rule (several = array, one = string) and the body only on request.
#[test]
fn inspect_message_reads_the_spooled_message() {
    let node = FerryNode::start("", Some(POLICY));
    let multi = send(&node, &["a@example.com", "b@example.com"], "two");
    let single = send(&node, &["c@example.com"], "one");
    let queue = wait_until("both messages waiting", Duration::from_secs(10), || {
        let q = node.inspect("mytenant@example.com")?;
        (q["messages"].as_array()?.len() == 2).then_some(q)
    });

    let (status, r) = get_json(&node, &format!("/api/admin/inspect-message/v1?id={multi}"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["id"], multi.as_str());
    let m = &r["message"];
    assert_message_information(m);
    assert_eq!(m["sender"], "sender@example.com");
    assert_eq!(m["recipient"], json!(["a@example.com", "b@example.com"]));
    assert_eq!(m["meta"]["tenant"], "mytenant");
    assert_eq!(m["num_attempts"], 0);
    assert_eq!(m["scheduling"]["first_attempt"], "2100-01-01T00:00:00+00:00", "{m}");
    let due = chrono::DateTime::parse_from_rfc3339(m["due"].as_str().unwrap()).unwrap();
    assert_eq!(due.to_rfc3339(), "2100-01-01T00:00:00+00:00", "due is the first attempt");
    assert!(m.get("data").is_none(), "no body unless asked: {m}");

    // The same message as the queue shows it: every field the two share is equal.
    let waiting = queue["messages"].as_array().unwrap().iter().find(|w| w["id"] == multi.as_str()).unwrap();
    for key in ["sender", "recipient", "meta", "num_attempts", "scheduling"] {
        assert_eq!(m[key], waiting["message"][key], "{key} differs from inspect-sched-q");
    }
    let queue_due =
        chrono::DateTime::parse_from_rfc3339(waiting["message"]["due"].as_str().unwrap()).unwrap();
    assert_eq!(due, queue_due);

    let (status, r) = get_json(&node, &format!("/api/admin/inspect-message/v1?id={single}&want_body=true"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["message"]["recipient"], "c@example.com", "one recipient is a string");
    let data = r["message"]["data"].as_str().unwrap();
    assert!(data.starts_with("Received: ") && data.contains(&single), "with Ferry's trace header: {data}");
    assert!(data.ends_with(&body("one")), "then the bytes as sent: {data}");

    // The CLI prints the node's answer as JSON.
    let printed: Value =
        serde_json::from_str(&node.cli(&["inspect-message", &single, "--want-body"])).unwrap();
    assert_eq!(printed, r);
    let printed: Value = serde_json::from_str(&node.cli(&["inspect-message", &multi])).unwrap();
    assert!(printed["message"].get("data").is_none() && printed["message"]["num_attempts"] == 0);
}

#[test]
fn inspect_message_refuses_bad_ids_and_does_not_find_unknown_ones() {
    let node = FerryNode::start("", Some(POLICY));
    let id = send(&node, &["a@example.com"], "x");
    // Well formed, never spooled: the same id with its last digit changed.
    let last = id.chars().last().unwrap();
    let other = format!("{}{}", &id[..31], if last == '0' { '1' } else { '0' });
    let (status, r) = get_json(&node, &format!("/api/admin/inspect-message/v1?id={other}"));
    assert_eq!(status, 404, "{r}");
    assert!(r["error"].as_str().unwrap().contains(&other), "{r}");
    let out = node.cli_output(&["inspect-message", &other]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{}", String::from_utf8_lossy(&out.stderr));

    for (query, key) in [
        ("id=nope".to_string(), "id:"),
        (format!("id={id}&want_body=yes"), "want_body"),
        ("want_body=true".to_string(), "`id`"),
    ] {
        let (status, r) = get_json(&node, &format!("/api/admin/inspect-message/v1?{query}"));
        assert_eq!(status, 400, "{query}: {r}");
        assert!(r["error"].as_str().unwrap().contains(key), "{query}: the error names {key}: {r}");
    }
}

/// The filter changes live: a debug line appears only while a filter lets it through; a filter
/// that does not parse is refused with the parser's message and changes nothing.
#[test]
fn set_log_filter_changes_what_stderr_shows_while_the_node_runs() {
    let node = FerryNode::start("", Some(POLICY));
    // The policy's line is written before the 250, so after the reply it is there or never.
    send(&node, &["a@example.com"], "before");
    assert!(!node.stderr().contains("probe saw before"), "FERRY_LOG=info hides debug lines");

    let said = node.cli(&["set-log-filter", "info,policy=debug"]);
    assert_eq!(said.trim(), "diagnostic log filter is now info,policy=debug");
    send(&node, &["a@example.com"], "during");
    let stderr = node.stderr();
    let line = stderr.lines().find(|l| l.contains("probe saw during")).expect("the debug line is shown");
    assert!(line.contains("DEBUG"), "{line}");
    assert!(stderr.contains("diagnostic log filter changed"), "the change itself is logged");

    let (status, text) = set_filter(&node, r#"{"filter":"policy=notalevel"}"#);
    assert_eq!(status, 400, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    let error = error["error"].as_str().unwrap();
    assert!(error.starts_with("filter \"policy=notalevel\""), "names the field and value: {error}");
    assert!(
        error.len() > "filter \"policy=notalevel\" is not a valid filter: ".len(),
        "quotes the parser: {error}"
    );
    send(&node, &["a@example.com"], "still");
    assert!(node.stderr().contains("probe saw still"), "a refused filter leaves the current one");

    let (status, text) = set_filter(&node, r#"{"filter":"info"}"#);
    assert_eq!((status, text.as_str()), (200, ""));
    send(&node, &["a@example.com"], "after");
    assert!(!node.stderr().contains("probe saw after"), "back at info, debug lines stop");

    let (status, text) = set_filter(&node, r#"{"filtre":"debug"}"#);
    assert_eq!(status, 400);
    assert!(text.contains("filtre"), "an unknown field is named: {text}");
}

/// Requests exactly as KumoMTA's `kcli inspect-message` and `kcli set-log-filter` send them,
/// answered in the shapes its API types read; both endpoints are in the OpenAPI description.
#[test]
fn kcli_shaped_inspect_message_and_set_log_filter() {
    let node = FerryNode::start("", Some(POLICY));
    let id = send(&node, &["a@example.com"], "kcli");
    // kcli: `?id=<simple uuid>`, plus `&want_body=true` only when asked.
    for (query, with_body) in [(format!("id={id}"), false), (format!("id={id}&want_body=true"), true)] {
        let (status, r) = get_json(&node, &format!("/api/admin/inspect-message/v1?{query}"));
        assert_eq!(status, 200, "{r}");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "message"], "InspectMessageV1Response has id and message only");
        assert_message_information(&r["message"]);
        assert_eq!(r["message"]["data"].is_string(), with_body, "{r}");
    }
    // kcli: `{"filter": "..."}`; an empty 200 makes it print `OK`.
    assert_eq!(set_filter(&node, r#"{"filter":"ferry_actors=debug"}"#), (200, String::new()));

    let (status, doc) = get_json(&node, "/api-docs/openapi.json");
    assert_eq!(status, 200);
    let inspect = &doc["paths"]["/api/admin/inspect-message/v1"]["get"];
    let params: Vec<&str> =
        inspect["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(params, ["id", "want_body"]);
    let response = &doc["components"]["schemas"]["InspectMessageResponse"]["properties"];
    assert!(response["id"].is_object() && response["message"].is_object(), "{response}");
    let info = &doc["components"]["schemas"]["MessageInformation"]["properties"];
    for key in ["sender", "recipient", "meta", "data", "due", "num_attempts", "scheduling"] {
        assert!(info[key].is_object(), "MessageInformation.{key} is described: {info}");
    }
    assert!(doc["paths"]["/api/admin/set_diagnostic_log_filter/v1"]["post"].is_object());
    let request = &doc["components"]["schemas"]["SetDiagnosticFilterRequest"];
    assert_eq!(request["required"], json!(["filter"]), "{request}");
}
