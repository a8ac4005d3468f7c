//! Feedback loops and out-of-band bounces (issue #16 item 4): `get_listener_domain` widens
//! relaying per domain (`relay_to`) and turns domains into report mailboxes (`log_arf`,
//! `log_oob`). A report sent there becomes a `Feedback` or `OOB` record naming the original
//! message, which Ferry recognises by the `Received` header it stamped on it.
//!
//! Every client here is outside `relay_hosts`: only the listener domains let mail in.

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

fn policy(sink: &SmtpSink) -> String {
    format!(
        r#"
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'sink.test' then
    return kumo.make_listener_domain {{ relay_to = true }}
  elseif domain == 'fbl.test' then
    return kumo.make_listener_domain {{ log_arf = 'LogThenDrop' }}
  elseif domain == 'bounce.test' then
    return kumo.make_listener_domain {{ log_oob = 'LogThenDrop' }}
  elseif domain == 'keep.test' then
    return kumo.make_listener_domain {{ log_arf = 'LogThenRelay', log_oob = true }}
  end
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    )
}

fn start() -> (SmtpSink, FerryNode) {
    let sink = SmtpSink::start();
    let node = FerryNode::start("[smtp]\nrelay_hosts = []\n", Some(&policy(&sink)));
    (sink, node)
}

/// Send an original through the node to `user@sink.test`; its id and the copy the sink got.
fn send_original(node: &FerryNode, sink: &SmtpSink) -> (String, String) {
    let mut c = RawSmtp::connect(node.smtp);
    let body = "From: news@bounce.test\r\nTo: user@sink.test\r\nSubject: December offers\r\nMessage-ID: <offer.1@bounce.test>\r\n\r\nBuy now.\r\n";
    let r = c.send_message("news@bounce.test", &["user@sink.test"], body);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r);
    node.wait_sequence(&id, &["Reception", "Delivery"]);
    let delivered = sink.wait_messages(1).pop().unwrap();
    (id, delivered.data)
}

fn headers_of(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or(message, |(h, _)| h)
}

fn arf_report(original: &str) -> String {
    format!(
        "From: abuse@isp.example\r\nTo: fbl@fbl.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\r\n--arf\r\nContent-Type: text/plain\r\n\r\nA user marked this as spam.\r\n--arf\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ISP-FBL/2.0\r\nVersion: 1\r\nOriginal-Rcpt-To: <user@sink.test>\r\nSource-IP: 127.0.0.1\r\n\r\n--arf\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--arf--\r\n"
    )
}

fn dsn_report(original_headers: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.sink.test\r\nTo: news@bounce.test\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"dsn\"\r\n\r\n--dsn\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--dsn\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.sink.test\r\n\r\nFinal-Recipient: rfc822; user@sink.test\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <user@sink.test>: Recipient address rejected:\r\n    User unknown in local recipient table\r\n\r\n--dsn\r\nContent-Type: text/rfc822-headers\r\n\r\n{original_headers}\r\n\r\n--dsn--\r\n"
    )
}

fn types(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["type"].as_str().unwrap_or("")).collect()
}

#[test]
fn a_client_outside_relay_hosts_may_send_to_relay_to_domains_only() {
    let (sink, node) = start();
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@elsewhere.test>").code, 250);
    let refused = c.cmd("RCPT TO:<b@other.test>");
    assert_eq!((refused.code, refused.text.starts_with("5.7.1")), (550, true), "{refused:?}");
    assert_eq!(c.cmd("RCPT TO:<user@SINK.test>").code, 250);
    assert_eq!(c.cmd("RSET").code, 250);

    let r = c.transaction("a@elsewhere.test", &["user@sink.test"], "Subject: hi\r\n\r\nhello\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    node.wait_sequence(&queued_id(&r), &["Reception", "Delivery"]);
    assert_eq!(sink.wait_messages(1)[0].rcpt_to, ["user@sink.test"]);

    // A report mailbox accepts RCPT, but ordinary mail to it is not relayed.
    let r = c.transaction("a@elsewhere.test", &["fbl@fbl.test"], "Subject: not a report\r\n\r\nhi\r\n");
    assert_eq!((r.code, r.text.as_str()), (550, "5.7.1 relaying not permitted"), "{r:?}");
    let rejections = node.wait_records("Rejection", 2);
    assert!(rejections.iter().any(|r| r["recipient"] == "b@other.test"), "{rejections:?}");
}

#[test]
fn an_arf_report_becomes_a_feedback_record_naming_the_original() {
    let (sink, node) = start();
    let (original_id, delivered) = send_original(&node, &sink);

    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("abuse@isp.example", &["fbl@fbl.test"], &arf_report(&delivered));
    assert_eq!(r.code, 250, "{r:?}");
    let report_id = queued_id(&r);

    let feedback = node.wait_records("Feedback", 1).remove(0);
    assert_eq!(feedback["id"], report_id.as_str());
    assert_eq!(feedback["original_id"], original_id.as_str(), "{feedback}");
    assert_eq!(feedback["original_message_id"], "offer.1@bounce.test");
    let report = &feedback["feedback_report"];
    assert_eq!(report["feedback_type"], "abuse");
    assert_eq!(report["user_agent"], "ISP-FBL/2.0");
    assert_eq!(report["original_rcpto_to"], serde_json::json!(["<user@sink.test>"]));
    assert_eq!(report["supplemental_trace"]["id"], original_id.as_str());
    assert!(report["original_message"].as_str().unwrap().contains("Subject: December offers"));

    // LogThenDrop: the report is consumed; no Reception, nothing spooled or delivered.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(types(&node.records_for(&report_id)), ["Feedback"]);
    assert_eq!(sink.count(), 1, "only the original reached the sink");
    assert!(!node.spool_ids().contains(&report_id));
}

#[test]
fn a_dsn_becomes_an_oob_record_with_the_bounced_recipient_and_diagnostic() {
    let (sink, node) = start();
    let (original_id, delivered) = send_original(&node, &sink);

    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("", &["news@bounce.test"], &dsn_report(headers_of(&delivered)));
    assert_eq!(r.code, 250, "{r:?}");
    let report_id = queued_id(&r);

    let oob = node.wait_records("OOB", 1).remove(0);
    assert_eq!(oob["id"], report_id.as_str());
    assert_eq!(oob["recipient"], "user@sink.test");
    assert_eq!(oob["sender"], "news@bounce.test", "a bounce goes to the original's sender");
    assert_eq!(oob["response"]["code"], 550);
    assert_eq!(oob["response"]["enhanced_code"], serde_json::json!({"class": 5, "subject": 1, "detail": 1}));
    assert_eq!(
        oob["response"]["content"],
        "<user@sink.test>: Recipient address rejected: User unknown in local recipient table"
    );
    assert_eq!(oob["peer_address"]["name"], "mx.sink.test");
    assert_eq!(oob["original_id"], original_id.as_str(), "{oob}");
    assert_eq!(oob["original_message_id"], "offer.1@bounce.test");

    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(types(&node.records_for(&report_id)), ["OOB"]);
    assert_eq!(sink.count(), 1);
}

#[test]
fn log_then_relay_logs_the_report_and_delivers_it_too() {
    let (sink, node) = start();
    let (original_id, delivered) = send_original(&node, &sink);

    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("abuse@isp.example", &["fbl@keep.test"], &arf_report(&delivered));
    assert_eq!(r.code, 250, "{r:?}");
    let records = node.wait_sequence(&queued_id(&r), &["Feedback", "Reception", "Delivery"]);
    assert_eq!(records[0]["original_id"], original_id.as_str());

    let r = c.transaction("", &["news@keep.test"], &dsn_report(headers_of(&delivered)));
    assert_eq!(r.code, 250, "{r:?}");
    let records = node.wait_sequence(&queued_id(&r), &["Reception", "OOB", "Delivery"]);
    assert_eq!(records[1]["recipient"], "user@sink.test");
    assert_eq!(sink.wait_messages(3).len(), 3, "the original and both reports");
}
