//! Reception over real SMTP: the Reception record, the spool, and every way a message is refused
//! without anything being stored.

use std::time::Duration;

use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use lettre::address::Envelope;
use lettre::{SmtpTransport, Transport};

const POLICY: &str = r#"
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg)
  msg:import_scheduling_header('X-Schedule')
  msg:import_x_headers { 'tenant' }
  local user = msg:recipient().user
  if user == 'discard' then msg:set_meta('queue', 'null') end
  if user == 'refuse' then kumo.reject(550, '5.7.1 refused by policy') end
  if user == 'broken' then error('policy bug') end
end)
"#;

const LOGS: &str = "[logs]\nmeta = [\"tenant\", \"received_*\"]\nheaders = [\"Subject\", \"X-*\"]\n";

fn node() -> FerryNode {
    FerryNode::start(LOGS, Some(POLICY))
}

const BODY: &str = "From: sender@example.com\r\nTo: recip@example.com\r\nSubject: Hello! This is a test\r\nTenant: mytenant\r\nX-Schedule: {\"expires\":\"3000-12-31T00:00:00Z\"}\r\n\r\nHello.\r\n.A line with a leading dot\r\n";

#[test]
fn message_sent_with_an_smtp_library_is_spooled_and_logged() {
    let node = node();
    let mailer = SmtpTransport::builder_dangerous(node.smtp.ip().to_string()).port(node.smtp.port()).build();
    let envelope = Envelope::new(
        Some("sender@example.com".parse().unwrap()),
        vec!["recip@example.com".parse().unwrap()],
    )
    .unwrap();
    let response = mailer.send_raw(&envelope, BODY.as_bytes()).expect("ferry accepts the message");
    assert_eq!(response.code().to_string(), "250");
    let text = response.message().collect::<Vec<_>>().join(" ");
    let id = text.split("ids=").nth(1).expect("ids in reply").trim().to_string();

    let reception = node.wait_records("Reception", 1).remove(0);
    assert_eq!(reception["id"], id.as_str());
    assert_eq!(reception["sender"], "sender@example.com");
    assert_eq!(reception["recipient"], "recip@example.com");
    assert_eq!(reception["queue"], "mytenant@example.com", "tenant imported from the Tenant header");
    assert_eq!(reception["response"]["code"], 250);
    assert_eq!(reception["reception_protocol"], "ESMTP");
    assert_eq!(reception["peer_address"]["addr"], "127.0.0.1");
    assert_eq!(reception["nodeid"], node.nodeid.as_str());
    assert_eq!(reception["meta"]["tenant"], "mytenant");
    assert_eq!(reception["meta"]["received_via"], node.smtp.to_string());
    assert!(reception["meta"]["received_from"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(reception["headers"]["Subject"], "Hello! This is a test");
    assert!(reception["size"].as_u64().unwrap() > BODY.len() as u64, "size includes our Received header");
    assert_eq!(node.spool_ids(), vec![id]);
}

#[test]
fn oversize_messages_get_552_and_nothing_is_spooled() {
    let node = FerryNode::start("[smtp]\nmax_message_size = 2000\n", None);
    let mut c = RawSmtp::connect(node.smtp);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.text.contains("SIZE 2000"), "{ehlo:?}");
    let declared = c.cmd("MAIL FROM:<a@example.com> SIZE=5000");
    assert_eq!((declared.code, declared.text.starts_with("5.3.4")), (552, true), "{declared:?}");
    let big = format!("Subject: big\r\n\r\n{}", "0123456789012345678901234567890123456789\r\n".repeat(100));
    let reply = c.transaction("a@example.com", &["b@example.com"], &big);
    assert_eq!(reply.code, 552, "{reply:?}");
    assert!(reply.text.starts_with("5.3.4"), "{reply:?}");
    // The session is still in sync and usable.
    let ok = c.transaction("a@example.com", &["b@example.com"], "Subject: small\r\n\r\nhi\r\n");
    assert_eq!(ok.code, 250, "{ok:?}");
    assert_eq!(node.spool_ids(), vec![queued_id(&ok)]);
}

#[test]
fn peers_outside_relay_hosts_are_refused_at_rcpt() {
    let node = FerryNode::start("[smtp]\nrelay_hosts = [\"127.0.0.2/32\"]\n", None);
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>").code, 250);
    let r = c.cmd("RCPT TO:<victim@elsewhere.example>");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.starts_with("5.7.1"), "{r:?}");
    assert_eq!(c.cmd("DATA").code, 503);
    let rejection = node.wait_records("Rejection", 1).remove(0);
    assert_eq!(rejection["recipient"], "victim@elsewhere.example");
    assert_eq!(rejection["response"]["code"], 550);
    assert!(node.spool_ids().is_empty());
}

#[test]
fn disconnect_mid_data_leaves_nothing_spooled() {
    let node = node();
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: cut short\r\n\r\nhalf a message\r\n");
    drop(c);
    // A complete message afterwards proves the server is alive and gives the logs a marker.
    let mut c = RawSmtp::connect(node.smtp);
    let ok = c.send_message("a@example.com", &["c@example.com"], "Subject: whole\r\n\r\nok\r\n");
    assert_eq!(ok.code, 250);
    node.wait_records("Reception", 1);
    assert_eq!(node.spool_ids(), vec![queued_id(&ok)]);
    assert_eq!(node.records().iter().filter(|r| r["type"] == "Reception").count(), 1);
}

#[test]
fn pipelined_transactions_in_one_write_are_all_answered_in_order() {
    let node = node();
    let mut c = RawSmtp::connect(node.smtp);
    c.send(
        b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<one@example.com>\r\nRCPT TO:<two@example.com>\r\nDATA\r\n",
    );
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 354);
    // Body, terminator and the next transaction arrive together, split mid-line across writes.
    let rest = b"Subject: piped\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<three@example.com>\r\nNOOP\r\nQUIT\r\n";
    for chunk in rest.chunks(7) {
        c.send(chunk);
    }
    let first = c.reply();
    assert_eq!(first.code, 250, "{first:?}");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 221);
    let reception = node.wait_records("Reception", 1).remove(0);
    assert_eq!(reception["id"], queued_id(&first).as_str());
    assert_eq!(reception["recipient"], serde_json::json!(["one@example.com", "two@example.com"]));
}

#[test]
fn protocol_abuse_gets_clear_errors_and_the_session_survives() {
    let node = node();
    let mut c = RawSmtp::connect(node.smtp);
    let long = format!("NOOP {}", "x".repeat(600));
    let r = c.cmd(&long);
    assert_eq!(r.code, 500, "{r:?}");
    assert!(r.text.contains("too long"), "{r:?}");
    assert_eq!(c.cmd("\u{1}\u{2}garbage").code, 500);
    assert_eq!(c.cmd("MAIL FROM:<a@example.com>").code, 503, "EHLO first");
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("VRFY someone").code, 252);
    let long_line = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(1200));
    let r = c.transaction("a@example.com", &["b@example.com"], &long_line);
    assert_eq!(r.code, 500, "{r:?}");
    assert!(r.text.contains("1000"), "{r:?}");
    let ok = c.transaction("a@example.com", &["b@example.com"], "Subject: fine\r\n\r\nok\r\n");
    assert_eq!(ok.code, 250, "{ok:?}");
    assert_eq!(node.spool_ids(), vec![queued_id(&ok)]);
    // Too many protocol errors end the session with 421 and a close.
    c.send("BOGUS\r\n".repeat(12).as_bytes());
    let mut replies = Vec::new();
    loop {
        let r = c.reply();
        replies.push(r.code);
        if r.code == 421 {
            break;
        }
        assert_eq!(r.code, 500, "{r:?}");
    }
    assert!(replies.len() < 12, "the session must end before all 12 are answered: {replies:?}");
    assert!(c.is_closed());
}

#[test]
fn policy_rejects_refuses_and_discards() {
    let node = node();
    let mut c = RawSmtp::connect(node.smtp);
    let refused = c.send_message("a@example.com", &["refuse@example.com"], "Subject: no\r\n\r\nno\r\n");
    assert_eq!((refused.code, refused.text.as_str()), (550, "5.7.1 refused by policy"));
    let broken = c.transaction("a@example.com", &["broken@example.com"], "Subject: bug\r\n\r\nx\r\n");
    assert_eq!(broken.code, 451, "a policy error is a temporary failure: {broken:?}");
    let bad_schedule = c.transaction(
        "a@example.com",
        &["b@example.com"],
        "Subject: bad\r\nX-Schedule: {\"dow\":\"Mon\"}\r\n\r\nx\r\n",
    );
    assert_eq!(bad_schedule.code, 451, "{bad_schedule:?}");
    let discarded = c.transaction("a@example.com", &["discard@example.com"], "Subject: bye\r\n\r\nx\r\n");
    assert_eq!(discarded.code, 250);
    let reception = node.wait_records("Reception", 1).remove(0);
    assert_eq!(reception["queue"], "null");
    assert!(node.spool_ids().is_empty(), "nothing refused or discarded is spooled");
    assert!(node.stderr().contains("policy bug"), "the policy error is in the diagnostic log");
    let rejections = node.wait_records("Rejection", 3);
    assert_eq!(rejections[0]["response"]["code"], 550);
}

/// Every 250 is durable: kill -9 right after a burst of acknowledgements, restart, and every
/// acknowledged id is still in the spool.
#[test]
fn kill_9_after_acknowledgement_loses_nothing() {
    let mut node = node();
    let addr = node.smtp;
    let senders: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = RawSmtp::connect(addr);
                assert_eq!(c.cmd("EHLO client.test").code, 250);
                (0..25)
                    .map(|i| {
                        let r = c.transaction(
                            "a@example.com",
                            &[&format!("r{t}-{i}@example.com")],
                            "Subject: burst\r\n\r\nx\r\n",
                        );
                        assert_eq!(r.code, 250, "{r:?}");
                        queued_id(&r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acknowledged: Vec<String> = senders.into_iter().flat_map(|s| s.join().unwrap()).collect();
    node.kill9();
    let mut spooled = node.spool_ids();
    acknowledged.sort();
    spooled.sort();
    assert_eq!(spooled, acknowledged, "every acknowledged message survives kill -9");
    node.restart();
    assert!(node.stderr().contains("messages=200"), "start-up counts the spool:\n{}", node.stderr());
    assert_eq!(node.spool_ids().len(), 200, "restart rewrites nothing");
}

#[test]
fn sigterm_finishes_cleanly_and_closes_log_segments() {
    let mut node = node();
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.send_message("a@example.com", &["b@example.com"], "Subject: x\r\n\r\ny\r\n").code, 250);
    let status = node.stop();
    assert!(status.success(), "exit status {status}");
    let logs = node.data_dir().join("logs");
    let segments: Vec<_> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!segments.is_empty());
    for s in &segments {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(s).unwrap().permissions());
        assert_eq!(mode & 0o222, 0, "{} must be closed (read-only) after shutdown", s.display());
    }
    assert_eq!(node.records().iter().filter(|r| r["type"] == "Reception").count(), 1);
    node.restart();
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.send_message("a@example.com", &["b@example.com"], "Subject: again\r\n\r\ny\r\n").code, 250);
    wait_until("two spooled messages", Duration::from_secs(10), || {
        (node.spool_ids().len() == 2).then_some(())
    });
}

#[test]
fn ferry_logs_follow_prints_new_records() {
    use std::io::BufRead;
    let node = node();
    let mut follow = std::process::Command::new(ferry_integration_tests::node::ferry_bin())
        .args(["logs", "--follow", "--dir"])
        .arg(node.data_dir().join("logs"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = RawSmtp::connect(node.smtp);
    let ok = c.send_message("a@example.com", &["b@example.com"], "Subject: followed\r\n\r\ny\r\n");
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let line = lines.next().expect("a record").unwrap();
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["id"], queued_id(&ok).as_str());
    let _ = follow.kill();
    let _ = follow.wait();
}
