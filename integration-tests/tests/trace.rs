//! Live SMTP tracing (issue #16 item 5): `ferry trace-smtp-server` and `trace-smtp-client`
//! subscribe to the node's websockets and see the conversations that happen while they listen,
//! in KumoMTA's event shapes, filtered as asked.

use std::net::IpAddr;

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::trace::{TraceCli, payload_text};
use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

fn to_sink(sink: &SmtpSink) -> String {
    format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }}
end)
"#,
        port = sink.port()
    )
}

fn from(event: &Value) -> &str {
    event["conn_meta"]["received_from"].as_str().unwrap_or_default()
}

/// Index of the first event whose `kind` text contains `needle`.
fn position(events: &[Value], kind: &str, needle: &str) -> usize {
    events
        .iter()
        .position(|e| payload_text(e, kind).is_some_and(|t| t.contains(needle)))
        .unwrap_or_else(|| panic!("no {kind} containing {needle:?} in {events:#?}"))
}

#[test]
fn server_trace_shows_the_conversation_of_the_traced_source_only() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&to_sink(&sink)));
    let trace = TraceCli::start(&node, &["trace-smtp-server", "--source", "127.0.0.1"]);

    // A session from another address: filtered out.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let mut hidden = RawSmtp::connect_from(other, node.smtp);
    assert_eq!(hidden.cmd("EHLO hidden.test").code, 250);
    assert_eq!(hidden.cmd("QUIT").code, 221);

    let mut c = RawSmtp::connect(node.smtp);
    let reply =
        c.send_message("sender@example.com", &["rcpt@example.com"], "Subject: traced\r\n\r\nsecret body\r\n");
    assert_eq!(reply.code, 250, "{reply:?}");
    let id = queued_id(&reply);
    // Credentials never reach a trace (refused here without TLS, but read and traced all the same).
    assert_eq!(c.cmd("AUTH PLAIN AHVzZXIAc2VjcmV0").code, 538);
    assert_eq!(c.cmd("QUIT").code, 221);

    let events = trace.wait_for("the traced session to close", |events| {
        events.iter().any(|e| e["payload"] == "Closed" && from(e).starts_with("127.0.0.1:"))
    });
    assert!(
        events.iter().all(|e| !from(e).starts_with("127.0.0.2:")),
        "filtered-out session shown: {events:#?}"
    );
    assert!(!events.iter().any(|e| e.to_string().contains("hidden.test")));

    // One session, in order: greeting, EHLO, MAIL, RCPT, DATA, the content by size only, the 250
    // naming the queued message, AUTH redacted, QUIT, closed.
    assert_eq!(events[0]["payload"], "Connected", "{events:#?}");
    assert!(events[0]["when"].is_string());
    let via = events[0]["conn_meta"]["received_via"].as_str().unwrap();
    assert_eq!(via, node.smtp.to_string());
    let greeting = position(&events, "Write", "220 ferry.test");
    let ehlo = position(&events, "Read", "EHLO client.test");
    let ehlo_reply = position(&events, "Write", "250-ferry.test Hello client.test");
    let mail = position(&events, "Read", "MAIL FROM:<sender@example.com>");
    let rcpt = position(&events, "Read", "RCPT TO:<rcpt@example.com>");
    let data = position(&events, "Read", "DATA");
    let queued = position(&events, "Write", &format!("250 2.0.0 OK ids={id}"));
    let auth = position(&events, "Read", "AUTH PLAIN [redacted]");
    let quit = position(&events, "Read", "QUIT");
    assert!(greeting < ehlo && ehlo < ehlo_reply && ehlo_reply < mail && mail < rcpt && rcpt < data);
    assert!(data < queued && queued < auth && auth < quit, "{events:#?}");
    let content = events
        .iter()
        .find_map(|e| e["payload"].get("AbbreviatedRead"))
        .expect("the DATA content appears by size");
    assert!(content["len"].as_u64().unwrap() > "secret body".len() as u64);
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("secret body"), "message content was traced");
    assert!(!all.contains("AHVzZXIAc2VjcmV0"), "AUTH credentials were traced");
    assert_eq!(events.last().unwrap()["payload"], "Closed");
}

#[test]
fn client_trace_shows_the_delivery_conversation_with_the_sink() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&to_sink(&sink)));
    let trace = TraceCli::start(&node, &["trace-smtp-client", "--domain", "example.com"]);

    let mut c = RawSmtp::connect(node.smtp);
    let reply =
        c.send_message("sender@example.com", &["rcpt@example.com"], "Subject: out\r\n\r\nsecret body\r\n");
    assert_eq!(reply.code, 250, "{reply:?}");
    let reply =
        c.transaction("sender@example.com", &["someone@filtered.example"], "Subject: no\r\n\r\nx\r\n");
    assert_eq!(reply.code, 250, "{reply:?}");
    sink.wait_messages(2);

    let events = trace.wait_for("the delivery's final reply", |events| {
        events.iter().any(|e| {
            e["conn_meta"]["recipient"] == "rcpt@example.com"
                && payload_text(e, "Read").is_some_and(|t| t.starts_with("250 "))
                && e["payload"].get("Read").is_some()
        }) && events.iter().any(|e| e["payload"].get("AbbreviatedWrite").is_some())
    });
    let begin = events.iter().find(|e| e["payload"] == "BeginSession").expect("BeginSession");
    let meta = &begin["conn_meta"];
    let ready_queue = meta["ready_queue"].as_str().unwrap();
    assert_eq!(ready_queue, format!("unspecified->mx_list:[127.0.0.1]:{}@smtp_client", sink.port()));
    assert_eq!(meta["egress_source"], "unspecified");
    assert_eq!(meta["mx_address"], sink.addr().to_string());
    let id = meta["id"].as_str().unwrap();
    let session: Vec<&Value> = events.iter().filter(|e| e["conn_meta"]["id"] == id).collect();
    let kinds: Vec<String> = session
        .iter()
        .map(|e| match &e["payload"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.keys().next().unwrap().clone(),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(kinds[..3], ["BeginSession", "Connected", "Read"], "{session:#?}");
    assert!(session[1]["conn_meta"]["source_address"].is_string());
    assert!(payload_text(session[2], "Read").unwrap().starts_with("220 "), "the sink's greeting first");
    let session: Vec<Value> = session.into_iter().cloned().collect();
    let ehlo = position(&session, "Write", "EHLO ");
    let obtained = session.iter().position(|e| e["payload"] == "MessageObtained").expect("MessageObtained");
    let mail = position(&session, "Write", "MAIL FROM:<sender@example.com>");
    let rcpt = position(&session, "Write", "RCPT TO:<rcpt@example.com>");
    let content = session.iter().position(|e| e["payload"].get("AbbreviatedWrite").is_some()).unwrap();
    assert!(ehlo < obtained && obtained < mail && mail <= rcpt && rcpt < content, "{session:#?}");
    assert_eq!(session[obtained]["conn_meta"]["domain"], "example.com");
    assert_eq!(session[obtained]["conn_meta"]["sender"], "sender@example.com");

    // The other message's domain is filtered out, whichever connection carried it.
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("filtered.example"), "{events:#?}");
    assert!(!all.contains("secret body"), "message content was traced");
}
