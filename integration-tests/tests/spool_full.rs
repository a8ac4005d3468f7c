//! A full spool (issue #12): with a small `spool.map_size`, new mail gets 452 4.3.1 and the xfer
//! inject endpoints 507; deliveries running meanwhile still remove what they delivered, so the
//! node takes mail again by itself, and after a restart nothing is delivered a second time.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_integration_tests::http::post;
use ferry_integration_tests::node::ferry_bin;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::{RawSmtp, SmtpReply, queued_id};
use ferry_integration_tests::wait::try_wait_until;
use ferry_integration_tests::{FerryNode, wait_until};
use serde_json::{Value, json};

/// Room for a few dozen of the messages below.
const SPOOL: &str = "[spool]\nmap_size = \"2MiB\"\n";

/// Messages with an `X-Schedule` header wait for a rebind; the rest are delivered at once.
fn policy(sink: &SmtpSink) -> String {
    format!(
        r#"
kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    )
}

fn held_header() -> String {
    let first_attempt = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    format!("X-Schedule: {{\"first_attempt\":\"{first_attempt}\"}}\r\n")
}

/// About 16 KiB: several overflow pages in the spool.
fn body(headers: &str, n: usize) -> String {
    format!("{headers}Subject: full {n}\r\n\r\n{}", format!("{}\r\n", "x".repeat(78)).repeat(200))
}

fn is_storage_full(r: &SmtpReply) -> bool {
    r.code == 452 && r.text.starts_with("4.3.1 Insufficient system storage")
}

/// Send messages on one connection until `stop`; each reply is kept, in order.
fn client(
    node: &FerryNode,
    stop: &Arc<AtomicBool>,
    replies: &Arc<Mutex<Vec<SmtpReply>>>,
) -> std::thread::JoinHandle<()> {
    let (addr, stop, replies) = (node.smtp, stop.clone(), replies.clone());
    std::thread::spawn(move || {
        let mut c = RawSmtp::connect(addr);
        assert_eq!(c.cmd("EHLO client.test").code, 250);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let r = c.transaction("s@example.com", &["r@example.com"], &body("", n));
            replies.lock().unwrap().push(r);
        }
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The xfer endpoints refuse with 507 while full: the single form as its status, the batch form
/// for each message; and nothing is stored.
fn assert_xfer_inject_answers_507(node: &FerryNode) {
    let data = body("", 0).repeat(2);
    let envelope = |id: &str| {
        json!({"id": id, "sender": "s@example.com", "recipient": ["r@example.com"],
            "meta": {"xfer_prior_id": id, "xfer_prior_node": "557f3ad4-2c8c-11ee-976e-782d7e12e173"}, "size": data.len()})
    };
    let single = gzip(format!("{}\n{data}", envelope("1d98076abbbc11ed940250ebf67f93bd")).as_bytes());
    let headers = [("Content-Type", "application/octet-stream"), ("Content-Encoding", "gzip")];
    let (status, text) = post(node.http, "/api/xfer/inject/v1", &headers, &single);
    assert_eq!(status, 507, "{text}");
    assert!(text.contains("spool full"), "{text}");
    let batch = gzip(format!("{}\n{data}", envelope("2d98076abbbc11ed940250ebf67f93bd")).as_bytes());
    let headers = [("Content-Type", "application/x-ferry-xfer-batch"), ("Content-Encoding", "gzip")];
    let (status, text) = post(node.http, "/api/xfer/inject-batch/v1", &headers, &batch);
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["results"][0]["status"], 507, "{reply}");
}

/// The Ferry id in the Received header the node added.
fn ferry_id(data: &str) -> String {
    let at = data.find("with ESMTP id ").expect("Received header") + "with ESMTP id ".len();
    data[at..at + 32].to_string()
}

#[test]
fn spool_full_with_concurrent_deliveries_then_restart_delivers_every_accepted_message_once() {
    let sink = SmtpSink::start();
    let mut node = FerryNode::start(SPOOL, Some(&policy(&sink)));
    node.pin_ports();

    // 1. Fill the spool with held messages until it refuses one.
    let mut acked: Vec<String> = Vec::new();
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let refusal = loop {
        let r = c.transaction("s@example.com", &["r@example.com"], &body(&held_header(), acked.len()));
        match r.code {
            250 => acked.push(queued_id(&r)),
            _ => break r,
        }
        assert!(acked.len() < 500, "a 2 MiB spool never filled");
    };
    assert!(is_storage_full(&refusal), "new mail while full: {refusal:?}");
    assert!(acked.len() >= 10, "only {} messages fit", acked.len());
    let held = acked.len();
    assert_xfer_inject_answers_507(&node);
    assert_eq!(node.spool_ids().len(), held, "nothing refused was stored");

    // 2. Three clients meet the full spool; then the held messages are delivered while they keep
    //    sending, so removals race refused inserts until the spool has room again.
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..3).map(|_| client(&node, &stop, &replies)).collect();
    wait_until("a client to meet the full spool", Duration::from_secs(30), || {
        replies.lock().unwrap().iter().any(is_storage_full).then_some(())
    });
    node.cli(&["rebind", "--everything", "--reason", "flush", "--always-flush"]);
    wait_until("the held messages and 100 more delivered", Duration::from_secs(180), || {
        (sink.count() >= held + 100).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    clients.into_iter().for_each(|c| c.join().unwrap());
    let replies = std::mem::take(&mut *replies.lock().unwrap());
    let unexpected: Vec<&SmtpReply> =
        replies.iter().filter(|r| r.code != 250 && !is_storage_full(r)).collect();
    assert!(unexpected.is_empty(), "only 250 or 452 4.3.1: {unexpected:?}");
    let first_full = replies.iter().position(is_storage_full).expect("the spool was full during deliveries");
    assert!(
        replies[first_full..].iter().any(|r| r.code == 250),
        "taken again after a 452, without a restart"
    );
    acked.extend(replies.iter().filter(|r| r.code == 250).map(queued_id));

    // 3. Every accepted message gets delivered and removed; the node takes mail again by itself.
    wait_until("every accepted message delivered", Duration::from_secs(120), || {
        let delivered: HashSet<String> = sink.messages().iter().map(|m| ferry_id(&m.data)).collect();
        acked.iter().all(|id| delivered.contains(id)).then_some(())
    });
    let left = try_wait_until(Duration::from_secs(30), || node.spool_ids().is_empty().then_some(()));
    let still_spooled = if left.is_some() { Vec::new() } else { node.spool_ids() };
    let probe = RawSmtp::connect(node.smtp).send_message("s@example.com", &["r@example.com"], &body("", 0));
    assert_eq!(probe.code, 250, "space freed: mail is taken again: {probe:?}");
    acked.push(queued_id(&probe));

    // 4. A restart redelivers nothing.
    node.stop();
    node.restart();
    wait_until("the spool to be loaded again", Duration::from_secs(60), || {
        node.stderr().contains("spooled messages scheduled").then_some(())
    });
    let emptied = try_wait_until(Duration::from_secs(60), || node.spool_ids().is_empty().then_some(()));
    let after_restart = if emptied.is_some() { Vec::new() } else { node.spool_ids() };
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        *delivered.entry(ferry_id(&m.data)).or_default() += 1;
    }
    let twice: Vec<(&String, &usize)> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !delivered.contains_key(*id)).collect();
    let acked_set: HashSet<&String> = acked.iter().collect();
    let unknown: Vec<&String> = delivered.keys().filter(|id| !acked_set.contains(id)).collect();
    println!(
        "spool_full: {held} held, {} accepted, {} refused with 452, {} delivered",
        acked.len(),
        replies.iter().filter(|r| is_storage_full(r)).count(),
        delivered.values().sum::<usize>()
    );
    assert!(still_spooled.is_empty(), "delivered but never removed from the spool: {still_spooled:?}");
    assert!(twice.is_empty(), "delivered more than once: {twice:?} (probe {:?})", acked.last());
    assert!(after_restart.is_empty(), "still spooled a minute after the restart: {after_restart:?}");
    assert!(lost.is_empty(), "accepted but never delivered: {lost:?}");
    assert!(unknown.is_empty(), "delivered without a 250: {unknown:?}");
}

#[test]
fn an_overflowing_map_size_is_a_config_error_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("[node]\ndata_dir = \"{}\"\n\n[spool]\nmap_size = \"20000000TB\"\n", data.display()),
    )
    .unwrap();
    let out =
        std::process::Command::new(ferry_bin()).arg("serve").arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{} line 5", config.display())), "{stderr}");
    assert!(stderr.contains("key `spool.map_size`"), "{stderr}");
    assert!(stderr.contains("too large"), "{stderr}");
    assert!(!data.join("spool").exists(), "refused before the spool is opened");
}
