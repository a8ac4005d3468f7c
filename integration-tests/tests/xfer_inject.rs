//! The xfer receiver, `POST /api/xfer/inject/v1` (SPEC §4.3), driven with bodies built the way
//! a sending node builds them.

use std::io::Write;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use ferry_integration_tests::http::post;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::{FerryNode, wait_until};
use serde_json::{Value, json};

const SOURCE_NODE: &str = "557f3ad4-2c8c-11ee-976e-782d7e12e173";
/// A version-1 id as a source node would have made it.
const SOURCE_ID: &str = "1d98076abbbc11ed940250ebf67f93bd";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn body(id: &str, meta: Value, data: &str) -> Vec<u8> {
    let line =
        json!({"id": id, "sender": "sender@example.com", "recipient": ["allow@example.com"], "meta": meta});
    gzip(format!("{line}\n{data}").as_bytes())
}

fn inject(node: &FerryNode, body: &[u8]) -> (u16, Value) {
    let (status, text) = post(
        node.http,
        "/api/xfer/inject/v1",
        &[("Content-Type", "application/octet-stream"), ("Content-Encoding", "gzip")],
        body,
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn receiver(sink: &SmtpSink) -> FerryNode {
    let policy = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }} end)",
        sink.port()
    );
    FerryNode::start("[logs]\nmeta = [\"*\"]\n", Some(&policy))
}

#[test]
fn restore_info_keeps_due_attempts_schedule_and_meta() {
    let sink = SmtpSink::start();
    let node = receiver(&sink);
    let due = (Utc::now() + Days::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let meta = json!({
        "received_via": "10.1.1.1:25", "xfer_prior_id": SOURCE_ID, "xfer_prior_node": SOURCE_NODE,
        "xfer_queue_info": {"tenant": "mytenant", "schedule": {"expires": "3000-12-31T00:00:00+00:00"}, "num_attempts": 1, "due": due}
    });
    let (status, reply) = inject(&node, &body(SOURCE_ID, meta, "Subject: moved\r\n\r\nbody\r\n"));
    assert_eq!(status, 200, "{reply}");
    let id = reply["id"].as_str().unwrap().to_string();
    assert_ne!(id, SOURCE_ID);
    assert_eq!(
        id[..20],
        SOURCE_ID[..20],
        "SPEC §4.4: the source's time and clock sequence, this node's node field"
    );
    let records = node.wait_sequence(&id, &["XferIn", "Delayed"]);
    assert_eq!(records[0]["queue"], "mytenant@example.com");
    assert_eq!(records[0]["delivery_protocol"], "xfer");
    assert_eq!(records[0]["peer_address"], json!({"name": "", "addr": "127.0.0.1"}));
    let inspect = node.inspect("mytenant@example.com").unwrap();
    let m = &inspect["messages"][0]["message"];
    assert_eq!(m["num_attempts"], 1);
    assert_eq!(m["due"], due.as_str());
    assert_eq!(m["scheduling"], json!({"expires": "3000-12-31T00:00:00+00:00"}));
    assert_eq!(m["meta"]["tenant"], "mytenant");
    assert_eq!(m["meta"]["received_via"], "10.1.1.1:25");
    assert_eq!(m["meta"]["xfer_from"], "127.0.0.1");
    assert_eq!(m["meta"]["xfer_via"], node.http.to_string());
    assert_eq!(m["meta"]["xfer_prior_id"], SOURCE_ID);
    assert!(m["meta"].get("xfer_queue_info").is_none());
}

/// SPEC §9 scenario 16: the same body posted twice is stored and delivered once.
#[test]
fn a_resent_message_is_acknowledged_with_the_same_id_and_delivered_once() {
    let sink = SmtpSink::start();
    let mut node = receiver(&sink);
    let meta = json!({"xfer_prior_id": SOURCE_ID, "xfer_prior_node": SOURCE_NODE, "xfer_queue_info": {"num_attempts": 0}});
    let b = body(SOURCE_ID, meta, "Subject: once\r\n\r\nbody\r\n");
    let (s1, r1) = inject(&node, &b);
    let (s2, r2) = inject(&node, &b);
    assert_eq!((s1, s2), (200, 200), "{r1} {r2}");
    assert_eq!(r1["id"], r2["id"]);
    let id = r1["id"].as_str().unwrap();
    node.wait_sequence(id, &["XferIn", "Delivery"]);
    assert_eq!(sink.wait_messages(1).len(), 1);
    wait_until("the spool to empty", Duration::from_secs(10), || node.spool_ids().is_empty().then_some(()));
    // Completed and gone from the spool: a tombstone still recognises the resend (D5), across a restart too.
    let (s3, r3) = inject(&node, &b);
    assert_eq!((s3, &r3["id"]), (200, &r1["id"]), "{r3}");
    assert!(node.stop().success());
    node.restart();
    let (s4, r4) = inject(&node, &b);
    assert_eq!((s4, &r4["id"]), (200, &r1["id"]), "{r4}");
    assert!(node.spool_ids().is_empty());
    assert_eq!(sink.messages().len(), 1, "delivered exactly once");
    assert_eq!(node.records().iter().filter(|r| r["type"] == "XferIn").count(), 1);
}

#[test]
fn malformed_bodies_get_4xx_and_nothing_is_stored() {
    let sink = SmtpSink::start();
    let node = receiver(&sink);
    let good = body(SOURCE_ID, json!({}), "x\r\n");
    let octets = "application/octet-stream";
    let cases: Vec<(&str, Vec<u8>, &str, &str, u16)> = vec![
        ("truncated gzip", good[..good.len() / 2].to_vec(), "gzip", octets, 400),
        ("no JSON line", gzip(b"just bytes, no newline"), "gzip", octets, 400),
        ("bad JSON", gzip(b"{not json}\nbody"), "gzip", octets, 400),
        ("unknown encoding", good.clone(), "br", octets, 400),
        ("bad id", body("not-an-id", json!({}), "x"), "gzip", octets, 400),
        ("wrong content type", good.clone(), "gzip", "application/json", 415),
        ("bomb over 64 MiB", gzip(&vec![b'a'; 65 << 20]), "gzip", octets, 413),
    ];
    for (what, b, encoding, content_type, want) in cases {
        let headers = [("Content-Encoding", encoding), ("Content-Type", content_type)];
        let (status, text) = post(node.http, "/api/xfer/inject/v1", &headers, &b);
        assert_eq!(status, want, "{what}: {text}");
        assert!(text.contains("error"), "{what}: a message names the problem: {text}");
    }
    assert!(node.spool_ids().is_empty());
    assert!(node.records().is_empty());
}

#[test]
fn the_loop_guard_refuses_a_message_from_this_very_node() {
    let sink = SmtpSink::start();
    let node = receiver(&sink);
    let meta = json!({"xfer_prior_id": SOURCE_ID, "xfer_prior_node": node.nodeid});
    let (status, reply) = inject(&node, &body(SOURCE_ID, meta, "x\r\n"));
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"],
        format!("cannot xfer to myself. xfer_prior_node={} which is my node id", node.nodeid)
    );
    assert!(node.spool_ids().is_empty());
}

#[test]
fn untrusted_peers_get_401_and_nothing_is_stored() {
    let node = FerryNode::start("[http]\ntrusted_hosts = [\"127.0.0.2\"]\n", None);
    let (status, _) = inject(&node, &body(SOURCE_ID, json!({}), "x\r\n"));
    assert_eq!(status, 401);
    let (status, _) = post(
        node.http,
        "/api/admin/suspend/v1",
        &[("Content-Type", "application/json")],
        b"{\"reason\":\"x\"}",
    );
    assert_eq!(status, 403, "admin calls from untrusted peers are forbidden");
    assert!(node.spool_ids().is_empty());
}
