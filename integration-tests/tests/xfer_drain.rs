//! Draining one node over several peers (issue #17 item 4): `ferry xfer --everything --target A
//! --target B --wait` spreads the node's scheduled queues over A and B, each queue whole on one
//! of them, with one progress display and one exit status; every message arrives exactly once.
//! Every node's own destination is down (port 1), so mail stays where it lands.

use std::collections::{HashMap, HashSet};

use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp};

/// A node delivering everything to `port` (retrying once an hour).
fn relay_to(port: u16) -> FerryNode {
    let policy = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }} end)\n"
    );
    FerryNode::start("", Some(&policy))
}

#[test]
fn a_drain_spreads_whole_queues_over_two_peers_and_delivers_each_message_once() {
    let (a, b) = (relay_to(1), relay_to(1));
    // C's own destination is down (nothing listens on port 1): its mail waits an hour to retry.
    let c = relay_to(1);
    let mut sent = HashMap::new();
    let mut client = RawSmtp::connect(c.smtp);
    for d in 0..10 {
        for n in 0..5 {
            let rcpt = format!("u{n}@d{d}.example");
            let body = "Subject: drain\r\n\r\nx\r\n";
            let id = queued_id(&client.send_message("s@example.com", &[rcpt.as_str()], body));
            sent.insert(rcpt, id);
        }
    }
    for id in sent.values() {
        c.wait_sequence(id, &["Reception", "TransientFailure"]);
    }
    for (rcpt, id) in &sent {
        c.wait_scheduled(rcpt.split('@').nth(1).unwrap(), id);
    }
    let (ta, tb) = (format!("http://{}", a.http), format!("http://{}", b.http));
    let out = c.cli_output(&[
        "xfer",
        "--everything",
        "--reason",
        "maintenance",
        "--target",
        &ta,
        "--target",
        &tb,
        "--wait",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(c.spool_ids().is_empty(), "C is empty: {:?}", c.spool_ids());

    // What arrived where: each receiver's XferIn records (the mail then waits there for its
    // next retry, as its state says).
    let arrived = |node: &FerryNode| -> Vec<String> {
        node.records()
            .into_iter()
            .filter(|r| r["type"] == "XferIn")
            .map(|r| r["recipient"].as_str().unwrap().to_string())
            .collect()
    };
    ferry_integration_tests::wait_until(
        "all 50 messages at A or B",
        std::time::Duration::from_secs(30),
        || (arrived(&a).len() + arrived(&b).len() >= 50).then_some(()),
    );
    let (on_a, on_b) = (arrived(&a), arrived(&b));
    assert_eq!(on_a.len() + on_b.len(), 50, "each message exactly once");
    let domains = |rcpts: &[String]| -> HashSet<String> {
        rcpts.iter().map(|r| r.split('@').nth(1).unwrap().to_string()).collect()
    };
    let (da, db) = (domains(&on_a), domains(&on_b));
    assert!(da.is_disjoint(&db), "a queue was split: {:?}", da.intersection(&db).collect::<Vec<_>>());
    assert_eq!(da.len() + db.len(), 10);
    let rcpts: HashSet<String> = on_a.iter().chain(on_b.iter()).cloned().collect();
    assert_eq!(rcpts, sent.keys().cloned().collect::<HashSet<_>>());
    assert_eq!(a.spool_ids().len() + b.spool_ids().len(), 50);
    assert!(!da.is_empty() && !db.is_empty(), "both peers took queues: {da:?} {db:?}");
}

#[test]
fn the_admin_api_takes_a_list_of_targets_and_still_kumomtas_single_target() {
    let node = relay_to(1);
    let post = |body: &str| {
        ferry_integration_tests::http::post(
            node.http,
            "/api/admin/xfer/v1",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    let (status, text) = post(r#"{"reason":"r","targets":["http://127.0.0.1:1","not a url"]}"#);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not a url"), "{text}");
    let (status, text) = post(r#"{"reason":"r"}"#);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("target"), "{text}");
    let (status, text) =
        post(r#"{"reason":"r","target":"http://127.0.0.1:1","queue_names":["none.example"]}"#);
    assert_eq!(status, 200, "{text}");
}
