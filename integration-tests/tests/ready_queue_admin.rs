//! Ready-queue admin (issue #13 item 5): `suspend-ready-q` holds one egress path and its
//! cancellation or expiry releases it, `inspect-ready-q` shows what waits in a ready queue, and
//! `resolve-egress-path` names the queue config, pool, source, ready queue and path config the
//! policy gives a destination. Answers are checked field by field against KumoMTA's API types
//! (`SuspendReadyQueueV1ListEntry`, `InspectReadyQV1Response`, `ResolveEgressPathV1Response`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_integration_tests::http::{get, post, request};
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// Everything to `sink`, retried every second or two; `extra` is more policy.
fn node(sink: &SmtpSink, path: &str, extra: &str) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ retry_interval = '1s', max_retry_interval = '2s', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ {path} }}
end)
{extra}
"#,
        sink.port()
    );
    FerryNode::start("", Some(&policy))
}

fn ready_queue(sink: &SmtpSink) -> String {
    format!("unspecified->mx_list:[127.0.0.1]:{}@smtp_client", sink.port())
}

fn send(node: &FerryNode, rcpt: &str) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: rq\r\n\r\nx\r\n"))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

/// KumoMTA's `SuspendReadyQueueV1ListEntry`: exactly these fields, plus Ferry's `origin`.
fn assert_list_entry(e: &Value, id: &str, name: &str, reason: &str) {
    let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["duration", "expires", "id", "name", "origin", "reason"], "{e}");
    assert_eq!(
        (e["id"].as_str(), e["name"].as_str(), e["reason"].as_str()),
        (Some(id), Some(name), Some(reason))
    );
    let left = e["duration"].as_str().unwrap();
    let until = (time(&e["expires"]) - Utc::now()).num_seconds();
    assert!(left.starts_with("9m") || left == "10m", "time left as a duration string: {e}");
    assert!((500..=600).contains(&until), "expires in ~10m: {e}");
}

#[test]
fn a_suspended_ready_queue_holds_its_messages_until_cancelled() {
    let sink = SmtpSink::start();
    let node = node(&sink, "", "");
    let rq = ready_queue(&sink);
    let said =
        node.cli(&["suspend-ready-q", "--name", &rq, "--reason", "postmaster block", "--duration", "10m"]);
    let sid =
        said.trim().rsplit_once("id ").map(|(_, id)| id.to_string()).unwrap_or_else(|| panic!("{said}"));
    assert!(said.starts_with(&format!("suspended {rq}")), "{said}");

    let id = send(&node, "held@example.com");
    // Held at each attempt, the retries included.
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure", "TransientFailure"]);
    let tf = &records[1]["response"];
    assert_eq!((tf["code"].as_u64(), tf["enhanced_code"]["detail"].as_u64()), (Some(451), Some(4)));
    let content = tf["content"].as_str().unwrap();
    assert_eq!(
        content,
        format!(
            "KumoMTA internal: no sources for example.com pool=`unspecified` are eligible for selection at this time (ready queue {rq} is suspended: postmaster block)"
        ),
        "KumoMTA's wording, naming the suspension"
    );
    assert_eq!((sink.count(), sink.connections()), (0, 0), "nothing reached the destination");

    let table = node.cli(&["suspend-ready-q-list"]);
    let row = table.lines().find(|l| l.starts_with(&sid)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(&rq) && row.contains("postmaster block") && row.contains("9m"), "{table}");
    let list = json(&node.cli(&["--json", "suspend-ready-q-list"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_list_entry(&list[0], &sid, &rq, "postmaster block");

    assert_eq!(node.cli(&["suspend-ready-q-cancel", "--id", &sid]).trim(), format!("removed {sid}"));
    let delivered =
        node.wait_sequence(&id, &["Reception", "TransientFailure", "TransientFailure", "Delivery"]);
    assert_eq!(delivered.last().unwrap()["queue"], "example.com");
    assert_eq!(sink.wait_messages(1)[0].rcpt_to, vec!["held@example.com"]);
    assert_eq!(node.cli(&["suspend-ready-q-list"]).trim(), "no active ready-queue suspensions");
    let again = node.cli_output(&["suspend-ready-q-cancel", "--id", &sid]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("404"), "gone: {again:?}");
}

#[test]
fn a_ready_queue_suspension_lapses_when_its_duration_is_over() {
    let sink = SmtpSink::start();
    let node = node(&sink, "", "");
    let rq = ready_queue(&sink);
    let (status, text) = post(
        node.http,
        "/api/admin/suspend-ready-q/v1",
        &[("Content-Type", "application/json")],
        format!(r#"{{"name":"{rq}","reason":"short","duration":"3s"}}"#).as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let expires = time(&json(&get(node.http, "/api/admin/suspend-ready-q/v1", &[]).1)[0]["expires"]);
    let id = send(&node, "later@example.com");
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    assert!(records[1]["response"]["content"].as_str().unwrap().ends_with("is suspended: short)"));
    let delivery = wait_until("delivery after expiry", Duration::from_secs(30), || {
        node.records_for(&id).into_iter().find(|r| r["type"] == "Delivery")
    });
    let at = time(&delivery["event_time"]);
    assert!(
        at >= expires - chrono::Duration::seconds(1),
        "delivered at {at}, the suspension ran to {expires}"
    );
    assert_eq!(sink.wait_messages(1).len(), 1);
    assert_eq!(json(&get(node.http, "/api/admin/suspend-ready-q/v1", &[]).1), serde_json::json!([]));
}

#[test]
fn with_one_source_suspended_the_pool_sends_through_the_other() {
    let sink = SmtpSink::start();
    let pool = r#"
kumo.on('get_egress_source', function(name)
  local addr = { ['ip-1'] = '127.0.0.2', ['ip-2'] = '127.0.0.3' }
  return kumo.make_egress_source { name = name, source_address = addr[name] }
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool { name = name, entries = { { name = 'ip-1' }, { name = 'ip-2' } } }
end)
"#;
    let policy = format!(
        r#"
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ egress_pool = 'both', retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
{pool}"#,
        sink.port()
    );
    let node = FerryNode::start("", Some(&policy));
    let ip1 = format!("ip-1->mx_list:[127.0.0.1]:{}@smtp_client", sink.port());
    node.cli(&["suspend-ready-q", "--name", &ip1, "--reason", "ip-1 blocked"]);
    let ids: Vec<String> = (0..4).map(|i| send(&node, &format!("r{i}@example.com"))).collect();
    let messages = sink.wait_messages(4);
    for m in &messages {
        assert!(m.peer.starts_with("127.0.0.3:"), "every message left from ip-2: {}", m.peer);
    }
    for id in &ids {
        let r = node.wait_sequence(id, &["Reception", "Delivery"]);
        assert_eq!(r[1]["egress_source"], "ip-2");
    }
}

#[test]
fn inspect_ready_q_shows_a_waiting_message_then_the_suspension_that_released_it() {
    let sink = SmtpSink::start();
    // One connection, one message an hour: the first goes out, the connection holds the second
    // until the rate allows it, and the third waits in the ready queue.
    let node = node(&sink, "connection_limit = 1, max_message_rate = '1/h'", "");
    let rq = ready_queue(&sink);
    let first = send(&node, "first@example.com");
    node.wait_sequence(&first, &["Reception", "Delivery"]);
    send(&node, "second@example.com");
    let third = send(&node, "third@example.com");
    let url = format!("/api/admin/inspect-ready-q/v1?queue_name={}&include_scheduled_queues=true", enc(&rq));
    let v = wait_until("the third message waiting", Duration::from_secs(20), || {
        let (status, text) = get(node.http, &url, &[]);
        let v = json(&text);
        (status == 200 && v["ready_messages"][0]["id"] == third.as_str() && v["state"]["ready_count"] == 1)
            .then_some(v)
    });
    // KumoMTA's InspectReadyQV1Response, field by field.
    assert_eq!(v["queue_name"], rq.as_str());
    assert_eq!(
        (v["egress_source"].as_str(), v["egress_pool"].as_str()),
        (Some("unspecified"), Some("unspecified"))
    );
    assert_eq!(v["protocol"], "smtp_client");
    assert!(v["mx"].is_null() && v["dispatchers"] == serde_json::json!([]), "{v}");
    assert!((Utc::now() - time(&v["now"])).num_seconds().abs() < 30);
    assert_eq!(v["scheduled_queue_names"], serde_json::json!(["example.com"]));
    let state = &v["state"];
    assert_eq!(state["connection_count"], 1);
    assert_eq!(state["connection_limited"]["context"], "connection_limit 1 reached");
    assert!(time(&state["connection_limited"]["since"]) <= Utc::now());
    assert!(state["connection_rate_throttled"].is_null() && state["suspended"].is_null(), "{state}");
    assert!(state["watchdog_threshold"].is_string());
    // kcli queue-summary reads the same state from ready-q-states (KumoMTA's ReadyQueueStateResponse).
    for query in ["", &format!("?queues={}", enc(&rq))] {
        let (status, text) = get(node.http, &format!("/api/admin/ready-q-states/v1{query}"), &[]);
        assert_eq!(status, 200, "{text}");
        let states = json(&text);
        let limited = &states["states_by_ready_queue"][rq.as_str()]["connection_limited"];
        assert_eq!(limited["context"], "connection_limit 1 reached", "{states}");
        assert_eq!(limited["since"], state["connection_limited"]["since"]);
    }
    let (_, text) = get(node.http, "/api/admin/ready-q-states/v1?queues=no-such-queue", &[]);
    assert_eq!(json(&text), serde_json::json!({"states_by_ready_queue": {}}));
    assert_eq!(
        (v["path_config"]["connection_limit"].as_u64(), v["path_config"]["max_message_rate"].as_str()),
        (Some(1), Some("1/h"))
    );
    let c = &v["constraints"];
    assert_eq!(
        c["max_concurrent_dispatchers"],
        serde_json::json!({"value": 1.0, "source": {"kind": "primary"}, "display": "1"})
    );
    assert_eq!(c["max_message_rate"]["source"]["kind"], "primary");
    assert_eq!(c["max_message_rate"]["display"], "1/h");
    assert!(c["max_connection_rate"].is_null() && c["max_message_rate_declared"].is_null(), "{c}");
    assert!(c["max_source_selection_rate"].is_null());
    // Ferry's extension: which messages.
    assert_eq!(v["ready_messages"], serde_json::json!([{"id": third, "queue": "example.com"}]));
    let human = node.cli(&["inspect-ready-q", &rq]);
    assert!(human.contains(&format!("ready: 1\n  {third}  example.com")), "{human}");
    assert!(human.contains("connection limited: connection_limit 1 reached"), "{human}");

    // Suspending it sends the waiting message back at once, and inspect shows the directive.
    node.cli(&["suspend-ready-q", "--name", &rq, "--reason", "look at it"]);
    let r = node.wait_sequence(&third, &["Reception", "TransientFailure"]);
    assert!(r[1]["response"]["content"].as_str().unwrap().ends_with("is suspended: look at it)"));
    let (status, text) = get(node.http, &url, &[]);
    let v = json(&text);
    assert_eq!((status, &v["state"]["ready_count"]), (200, &Value::from(0)), "{text}");
    assert_eq!(v["state"]["suspended"]["reason"], "look at it");
    assert_eq!(v["state"]["suspended"]["name"], rq.as_str());
    assert!(node.cli(&["inspect-ready-q", &rq]).contains("suspended: look at it"));
    assert_eq!(sink.count(), 1, "only the first message went out (the second waits for the rate)");

    let unknown = format!("/api/admin/inspect-ready-q/v1?queue_name={}", enc("nope->mx:x@smtp_client"));
    let (status, text) = get(node.http, &unknown, &[]);
    assert_eq!(status, 404, "{text}");
    assert!(json(&text)["error"].as_str().unwrap().contains("no ready queue named nope->mx:x@smtp_client"));
    let (status, text) = get(node.http, "/api/admin/inspect-ready-q/v1", &[]);
    assert_eq!(status, 400);
    assert!(text.contains("queue_name"), "the missing key is named: {text}");
}

#[test]
fn resolve_egress_path_names_what_the_policy_defines() {
    let sink = SmtpSink::start();
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ egress_pool = 'pool-' .. tenant, retry_interval = '7m', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {{ name = name, entries = {{ {{ name = 'ip-0', weight = 0 }}, {{ name = 'ip-1', weight = 2 }} }} }}
end)
kumo.on('get_egress_source', function(name)
  if name ~= 'ip-0' and name ~= 'ip-1' then error('no source ' .. name) end
  return kumo.make_egress_source {{ name = name }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ connection_limit = 7, max_message_rate = '20/m', ehlo_domain = egress_source .. '.' .. routing_domain }}
end)
"#,
        sink.port()
    );
    let node = FerryNode::start("", Some(&policy));
    let (status, text) =
        get(node.http, "/api/admin/resolve-egress-path/v1?domain=example.com&tenant=t1", &[]);
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    let rq = format!("ip-1->mx_list:[127.0.0.1]:{}@smtp_client", sink.port());
    // KumoMTA's ResolveEgressPathV1Response.
    assert_eq!((v["domain"].as_str(), v["source"].as_str()), (Some("example.com"), Some("ip-1")));
    assert_eq!(v["queue_name"], rq.as_str(), "the weight-0 source is never used");
    assert!(v["mx"].is_null());
    assert_eq!(
        (v["queue_config"]["egress_pool"].as_str(), v["queue_config"]["retry_interval"].as_str()),
        (Some("pool-t1"), Some("7m"))
    );
    assert_eq!(v["path_config"]["connection_limit"], 7);
    assert_eq!(v["path_config"]["max_message_rate"], "20/m");
    assert_eq!(
        v["path_config"]["ehlo_domain"], "ip-1.example.com",
        "called with the source and routing domain"
    );
    let rate = &v["constraints"]["max_message_rate"];
    assert_eq!((rate["display"].as_str(), rate["source"]["kind"].as_str()), (Some("20/m"), Some("primary")));
    assert!((rate["value"].as_f64().unwrap() - 20.0 / 60.0).abs() < 1e-9);
    assert_eq!(v["constraints"]["max_concurrent_dispatchers"]["value"], 7.0);
    // Ferry's extensions.
    assert_eq!(v["scheduled_queue"], "t1@example.com");
    assert_eq!(v["egress_pool"]["name"], "pool-t1");

    // An explicit source (kcli's second argument) and a routing domain.
    let (_, text) = get(
        node.http,
        "/api/admin/resolve-egress-path/v1?domain=example.com&source=ip-0&tenant=t2&routing_domain=relay.example",
        &[],
    );
    let v = json(&text);
    assert_eq!(
        (v["source"].as_str(), v["scheduled_queue"].as_str()),
        (Some("ip-0"), Some("t2@example.com!relay.example"))
    );
    assert_eq!(v["path_config"]["ehlo_domain"], "ip-0.relay.example");

    let human = node.cli(&["resolve-egress-path", "example.com", "--tenant", "t1"]);
    assert!(human.contains(&format!("ready queue:     {rq}")), "{human}");
    assert!(human.contains("egress pool:     pool-t1: ip-0 (weight 0), ip-1 (weight 2)"), "{human}");
    assert!(human.contains("message rate") && human.contains("20/m"), "{human}");

    let (status, text) =
        get(node.http, "/api/admin/resolve-egress-path/v1?domain=example.com&tenant=t1&source=nope", &[]);
    assert_eq!(status, 500);
    assert!(json(&text)["error"].as_str().unwrap().contains("get_egress_source(\"nope\")"), "{text}");
    let (status, text) = get(node.http, "/api/admin/resolve-egress-path/v1?source=ip-1", &[]);
    assert_eq!(status, 400);
    assert!(text.contains("domain"), "{text}");
    let (status, text) = get(node.http, "/api/admin/resolve-egress-path/v1?domain=x&bogus=1", &[]);
    assert_eq!(status, 400);
    assert!(text.contains("bogus"), "{text}");
}

#[test]
fn kcli_shaped_suspend_ready_q_requests_and_bad_input() {
    let sink = SmtpSink::start();
    let node = node(&sink, "", "");
    let ct = [("Content-Type", "application/json")];
    // kcli serialises `duration` as a string and leaves `expires` out.
    let (status, text) = post(
        node.http,
        "/api/admin/suspend-ready-q/v1",
        &ct,
        br#"{"name":"a->mx:b@smtp_client","reason":"kcli","duration":"10m"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert_eq!(v.as_object().unwrap().len(), 1, "only the id: {v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_list_entry(
        &json(&get(node.http, "/api/admin/suspend-ready-q/v1", &[]).1)[0],
        &id,
        "a->mx:b@smtp_client",
        "kcli",
    );
    let (status, text) = request(
        node.http,
        "DELETE",
        "/api/admin/suspend-ready-q/v1",
        &ct,
        format!(r#"{{"id":"{id}"}}"#).as_bytes(),
    );
    assert_eq!((status, text), (200, format!("removed {id}")));
    let (status, text) = request(
        node.http,
        "DELETE",
        "/api/admin/suspend-ready-q/v1",
        &ct,
        format!(r#"{{"id":"{id}"}}"#).as_bytes(),
    );
    assert_eq!(status, 404, "{text}");

    for (body, field) in [
        (r#"{"reason":"r"}"#, "name"),
        (r#"{"name":"a->b@smtp_client"}"#, "reason"),
        (r#"{"name":"a->b@smtp_client","reason":"r","duration":"soon"}"#, "duration"),
        (r#"{"name":"a->b@smtp_client","reason":"r","queue_names":[]}"#, "queue_names"),
        (r#"{"name":"","reason":"r"}"#, "name"),
    ] {
        let (status, text) = post(node.http, "/api/admin/suspend-ready-q/v1", &ct, body.as_bytes());
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(field), "{body}: the error names {field}: {text}");
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_openapi_document_describes_the_ready_queue_endpoints() {
    let node = FerryNode::start("", None);
    let doc = json(&get(node.http, "/api-docs/openapi.json", &[]).1);
    for (path, method) in [
        ("/api/admin/suspend-ready-q/v1", "post"),
        ("/api/admin/suspend-ready-q/v1", "get"),
        ("/api/admin/suspend-ready-q/v1", "delete"),
        ("/api/admin/inspect-ready-q/v1", "get"),
        ("/api/admin/resolve-egress-path/v1", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not described");
    }
    let body = &doc["components"]["schemas"]["SuspendReadyQRequest"];
    let mut fields: Vec<&str> = body["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["duration", "expires", "name", "reason"], "KumoMTA's SuspendReadyQueueV1Request");
    let params: Vec<&str> = doc["paths"]["/api/admin/resolve-egress-path/v1"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.starts_with(&["domain", "source"]), "KumoMTA's query first: {params:?}");
}

/// A refreshed egress path config applies to the running ready queue: the new limit shows, and
/// the open connection is neither dropped nor replaced.
#[test]
fn a_changed_path_limit_applies_without_dropping_the_connection() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let limit_file = dir.path().join("limit");
    std::fs::write(&limit_file, "1").unwrap();
    let path = format!(
        "connection_limit = tonumber(io.open('{}'):read('a')), refresh_interval = '1s', idle_timeout = '5m'",
        limit_file.display()
    );
    let node = node(&sink, &path, "");
    let rq = ready_queue(&sink);
    let first = send(&node, "first@example.com");
    node.wait_sequence(&first, &["Reception", "Delivery"]);
    let url = format!("/api/admin/inspect-ready-q/v1?queue_name={}", enc(&rq));
    let limit =
        |node: &FerryNode| json(&get(node.http, &url, &[]).1)["path_config"]["connection_limit"].clone();
    assert_eq!(limit(&node), 1);
    std::fs::write(&limit_file, "5").unwrap();
    // A refresh is due once refresh_interval has passed and the queue is used; each message here
    // is a use, and goes out over the idle connection.
    let mut sent = 1;
    wait_until("the new limit to apply", Duration::from_secs(20), || {
        let id = send(&node, &format!("r{sent}@example.com"));
        node.wait_sequence(&id, &["Reception", "Delivery"]);
        sent += 1;
        (limit(&node) == 5).then_some(())
    });
    assert_eq!(sink.connections(), 1, "one connection carried all {sent} messages across the change");
    assert_eq!(sink.open_connections(), 1, "and it is still open");
}
