//! Strict xfer input: envelope addresses the SMTP listener would refuse, and gzip bodies with
//! bytes after their end, are refused with a 400 naming what is wrong, and nothing is stored.

use std::io::Write;

use ferry_integration_tests::FerryNode;
use ferry_integration_tests::http::post;
use serde_json::{Value, json};

/// Every queue delivers to a loopback port where nothing listens, so an accepted message stays
/// in the spool: an empty spool means nothing was taken.
const DEAD_MX: &str = "kumo.on('get_queue_config', function() return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[127.0.0.1]:1' } } } } end)";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A source id, distinct per `n`.
fn id(n: u32) -> String {
    format!("{n:08x}bbbc11ed940250ebf67f93bd")
}

/// JSON line and bytes, plain; `size` set for the batch form.
fn frame(n: u32, sender: &str, recipients: &[&str], size: bool) -> Vec<u8> {
    let data = "Subject: strict\r\n\r\nbody\r\n";
    // The ids carry a 2023 creation time: a far expiry keeps an accepted message from expiring.
    let meta = json!({"xfer_queue_info": {"schedule": {"expires": "3000-12-31T00:00:00+00:00"}}});
    let mut line = json!({"id": id(n), "sender": sender, "recipient": recipients, "meta": meta});
    if size {
        line["size"] = json!(data.len());
    }
    format!("{line}\n{data}").into_bytes()
}

fn inject(node: &FerryNode, body: &[u8]) -> (u16, Value) {
    let headers = [("Content-Type", "application/octet-stream"), ("Content-Encoding", "gzip")];
    let (status, text) = post(node.http, "/api/xfer/inject/v1", &headers, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn inject_batch(node: &FerryNode, body: &[u8]) -> (u16, Value) {
    let headers = [("Content-Type", "application/x-ferry-xfer-batch"), ("Content-Encoding", "gzip")];
    let (status, text) = post(node.http, "/api/xfer/inject-batch/v1", &headers, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn xfer_ins(node: &FerryNode) -> usize {
    node.records().iter().filter(|r| r["type"] == "XferIn").count()
}

#[test]
fn the_single_form_refuses_bad_addresses_and_trailing_bytes_naming_the_field() {
    let node = FerryNode::start("", Some(DEAD_MX));
    let ok = ["r@example.com"];
    let valid = gzip(&frame(1, "s@example.com", &ok, false));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "CRLF in the sender",
            gzip(&frame(2, "s\r\nRCPT TO:<x@evil.example>@example.com", &ok, false)),
            "sender",
        ),
        ("<> as the sender", gzip(&frame(3, "<>", &ok, false)), "sender"),
        ("NUL in a recipient", gzip(&frame(4, "s@example.com", &["r\0@example.com"], false)), "recipient[0]"),
        ("LF in a recipient", gzip(&frame(5, "s@example.com", &["r@exa\nmple.com"], false)), "recipient[0]"),
        (
            "<> around a recipient",
            gzip(&frame(6, "s@example.com", &["<r@example.com>"], false)),
            "recipient[0]",
        ),
        (
            "second recipient unparseable",
            gzip(&frame(7, "", &["r@example.com", "nodomain"], false)),
            "recipient[1]",
        ),
        ("garbage after the gzip stream", [valid.as_slice(), b"GARBAGE"].concat(), "trailing data"),
        ("zero padding after the gzip stream", [valid.as_slice(), &[0; 16]].concat(), "trailing data"),
    ];
    for (what, body, field) in cases {
        let (status, reply) = inject(&node, &body);
        assert_eq!(status, 400, "{what}: {reply}");
        let error = reply["error"].as_str().unwrap_or_else(|| panic!("{what}: {reply}"));
        assert!(error.contains(field), "{what}: the error names {field:?}: {error}");
    }
    assert!(node.spool_ids().is_empty(), "nothing is stored");
    assert_eq!(xfer_ins(&node), 0);

    // What is valid still goes in: the null sender, and a gzip of two members.
    let (status, reply) = inject(&node, &gzip(&frame(8, "", &ok, false)));
    assert_eq!(status, 200, "the null reverse-path is an empty sender: {reply}");
    let whole = frame(9, "s@example.com", &ok, false);
    let (head, tail) = whole.split_at(whole.len() / 2);
    let (status, reply) = inject(&node, &[gzip(head), gzip(tail)].concat());
    assert_eq!(status, 200, "a multi-member gzip is one stream: {reply}");
    assert_eq!(node.spool_ids().len(), 2);
}

#[test]
fn the_batch_form_refuses_a_bad_address_per_message_and_trailing_bytes_whole() {
    let node = FerryNode::start("", Some(DEAD_MX));
    let ok = ["r@example.com"];
    let valid = gzip(&frame(1, "s@example.com", &ok, true));
    let (status, reply) = inject_batch(&node, &[valid.as_slice(), b"\n\n"].concat());
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("gzip") && error.contains("trailing data"), "{error}");

    let bad = [
        frame(2, "s\r\n@example.com", &ok, true),
        frame(3, "s@example.com", &["r@example.com", "r\0@example.com"], true),
    ]
    .concat();
    let (status, reply) = inject_batch(&node, &gzip(&bad));
    assert_eq!(status, 200, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{reply}");
    for (result, field) in results.iter().zip(["sender", "recipient[1]"]) {
        assert_eq!(result["status"], 400, "{reply}");
        assert!(result["error"].as_str().unwrap().contains(field), "names {field}: {reply}");
    }
    assert!(node.spool_ids().is_empty(), "nothing is stored");
    assert_eq!(xfer_ins(&node), 0);

    // A bad address refuses only its own message; the rest of the batch is taken.
    let mixed = [frame(4, "s@example.com", &ok, true), frame(5, "s@example.com", &["<r@example.com>"], true)]
        .concat();
    let (status, reply) = inject_batch(&node, &gzip(&mixed));
    assert_eq!(status, 200, "{reply}");
    let stored = reply["results"][0]["id"].as_str().unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(reply["results"][1]["status"], 400, "{reply}");
    assert!(reply["results"][1]["error"].as_str().unwrap().contains("recipient[0]"), "{reply}");
    assert_eq!(node.spool_ids(), [stored]);
}
