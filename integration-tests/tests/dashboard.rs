//! The dashboard (`GET /`) in headless Chromium: a queue created by sending mail appears with its
//! count, and the count drops after delivery.

use std::time::Duration;

use ferry_integration_tests::browser::{dump_dom, screenshot};
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// The waiting count the page shows for `queue`, or None if it shows no such row.
fn shown_count(dom: &str, queue: &str) -> Option<u64> {
    let row = dom.split(&format!("data-queue=\"{queue}\"")).nth(1)?;
    let cell = row.split("class=\"n count\">").nth(1)?;
    cell.split('<').next()?.trim().parse().ok()
}

#[test]
fn the_dashboard_shows_a_queue_appear_and_drain() {
    let sink = SmtpSink::start();
    let policy = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ retry_interval = '2s', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }} end)",
        sink.port()
    );
    let node = FerryNode::start("", Some(&policy));
    let out = node.cli(&["--json", "suspend", "--domain", "held.example", "--reason", "hold"]);
    let suspension = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
    let mut c = RawSmtp::connect(node.smtp);
    for rcpt in ["a@held.example", "b@held.example"] {
        let id = queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: dash\r\n\r\nbody\r\n"));
        node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    }
    let url = format!("http://{}/", node.http);

    let dom = dump_dom(&url, Duration::from_secs(3));
    assert!(dom.contains("data-updates"), "the page loaded its data: {dom}");
    assert_eq!(shown_count(&dom, "held.example"), Some(2), "{dom}");
    assert!(dom.contains("TransientFailure"), "latest records are shown");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    screenshot(&url, &shot);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot at {}", shot.display());
    eprintln!("dashboard screenshot: {}", shot.display());

    node.cli(&["suspend-cancel", "--id", &suspension]);
    sink.wait_messages(2);
    let drained = wait_until("the page to show the drained queue", Duration::from_secs(60), || {
        let dom = dump_dom(&url, Duration::from_secs(2));
        matches!(shown_count(&dom, "held.example"), None | Some(0)).then_some(dom)
    });
    assert!(drained.contains("Delivery"), "the deliveries are among the latest records");
}
