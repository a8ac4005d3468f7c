//! Bad input sweep (issue #7): each abuse gets a clear refusal, the node keeps serving, and the
//! message accepted before it is still spooled afterwards. (Relay refusal, untrusted xfer peers,
//! admin calls without a token and a handler that never returns have their own tests in
//! reception.rs, xfer_inject.rs, xfer_batch.rs and requeue.rs.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};

const HOLD: &str =
    "kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)";

/// A node with one accepted message held back a day.
fn node_with_a_message(policy: &str) -> (FerryNode, String) {
    let node = FerryNode::start("", Some(policy));
    let mut c = RawSmtp::connect(node.smtp);
    let body = "X-Schedule: {\"first_attempt\":\"2099-01-01T00:00:00Z\",\"expires\":\"2099-01-02T00:00:00Z\"}\r\nSubject: keep\r\n\r\nkeep me\r\n";
    let id = queued_id(&c.send_message("s@example.com", &["r@example.com"], body));
    (node, id)
}

/// The node still accepts mail, and `kept` is still spooled.
fn still_serving(node: &FerryNode, kept: &str) {
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("s@example.com", &["r2@example.com"], "Subject: after\r\n\r\nstill here\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    assert!(node.spool_ids().iter().any(|id| id == kept), "the accepted message is still spooled");
}

/// Write `bytes` and read whatever comes back until the server closes or goes quiet.
fn blast(node: &FerryNode, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(node.smtp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may close before taking it all: that is an answer too.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn nul_bytes_binary_garbage_and_megabyte_lines_are_refused() {
    let (node, kept) = node_with_a_message(HOLD);
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("NOOP\u{0}with a NUL").code, 500, "a NUL in a command is refused");
    let r = c.cmd("MAIL FROM:<a\u{0}b@example.com>");
    assert!((500..=501).contains(&r.code), "{r:?}");
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");

    // 64 KiB of pseudo-random binary: the session ends with errors, never a crash or a 2xx.
    let garbage: Vec<u8> = (0..65536u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let answer = blast(&node, &garbage);
    assert!(answer.starts_with("220 "), "{answer}");
    assert!(answer.lines().skip(1).all(|l| l.starts_with('5') || l.starts_with("421")), "{answer}");

    // A 1 MiB command line: refused as too long, not buffered without bound.
    let mut line = b"EHLO ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 1 << 20));
    line.extend_from_slice(b"\r\nQUIT\r\n");
    let answer = blast(&node, &line);
    assert!(answer.contains("500") && answer.contains("too long"), "{answer}");
    still_serving(&node, &kept);
}

#[test]
fn thousands_of_pipelined_commands_are_answered_in_order_or_cut_off_cleanly() {
    let (node, kept) = node_with_a_message(HOLD);
    // 20,000 commands in one write, without reading a reply: recipients past max_recipients
    // are refused, the rest answered, in order.
    let mut script = String::from("EHLO client.test\r\nMAIL FROM:<s@example.com>\r\n");
    for i in 0..2000 {
        script.push_str(&format!("RCPT TO:<r{i}@example.com>\r\n"));
    }
    for _ in 0..18000 {
        script.push_str("NOOP\r\n");
    }
    script.push_str("RSET\r\nQUIT\r\n");
    let answer = blast(&node, script.as_bytes());
    let codes: Vec<&str> =
        answer.lines().filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ').map(|l| &l[..3]).collect();
    assert_eq!(codes.first(), Some(&"220"));
    assert_eq!(codes.len(), 1 + 1 + 1 + 2000 + 18000 + 2, "one reply per command: {}", codes.len());
    let rcpt = &codes[3..2003];
    assert_eq!(rcpt.iter().filter(|c| **c == "250").count(), 1024, "max_recipients accepted");
    assert!(rcpt[1024..].iter().all(|c| *c == "452"), "the rest refused with 452");
    assert_eq!(codes.last(), Some(&"221"));
    still_serving(&node, &kept);
}

/// Every event the policy handles raises an error.
const FAILING: &str = r#"
kumo.on('smtp_server_message_received', function(msg)
  msg:import_scheduling_header('X-Schedule')
  if msg:recipient().user == 'boom' then error('reception handler failed') end
end)
kumo.on('get_queue_config', function(domain)
  if domain == 'broken.example' then error('queue config failed') end
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[127.0.0.1]:1' } } } }
end)
kumo.on('requeue_message', function(msg) error('requeue handler failed') end)
kumo.on('xfer_message_received', function(msg) error('xfer handler failed') end)
kumo.on('rebind_message', function(msg, data) error('rebind handler failed') end)
"#;

#[test]
fn a_policy_that_errors_in_every_event_refuses_cleanly_and_keeps_what_it_accepted() {
    let (node, kept) = node_with_a_message(FAILING);
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("s@example.com", &["boom@example.com"], "Subject: x\r\n\r\nx\r\n");
    assert_eq!((r.code, r.text.contains("4.3.0")), (451, true), "{r:?}");
    let r = c.transaction("s@example.com", &["r@broken.example"], "Subject: x\r\n\r\nx\r\n");
    assert_eq!(r.code, 451, "{r:?}");
    // Accepted, fails delivery (nothing listens), and the failing requeue_message keeps it queued.
    let r = c.transaction("s@example.com", &["ok@example.com"], "Subject: x\r\n\r\nx\r\n");
    let id = queued_id(&r);
    node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    // The failing rebind_message leaves its message unchanged.
    node.cli(&[
        "rebind",
        "--everything",
        "--reason",
        "r",
        "--set",
        "queue=x.example",
        "--trigger-rebind-event",
    ]);
    wait_until("the rebind diagnostic", Duration::from_secs(20), || {
        node.stderr().contains("rebind handler failed").then_some(())
    });
    assert!(node.stderr().contains("requeue handler failed"), "the requeue error is reported");
    let spooled = node.spool_ids();
    assert!(spooled.contains(&kept) && spooled.contains(&id), "{spooled:?}");
    assert_eq!(spooled.len(), 2, "the refused messages were not stored");
    still_serving(&node, &kept);
}

/// DATA with exact bytes: the body as given, then the terminator.
fn data_reply(c: &mut RawSmtp, body: &[u8]) -> ferry_integration_tests::smtp::SmtpReply {
    assert_eq!(c.cmd("MAIL FROM:<s@example.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<r@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(body);
    c.send(b".\r\n");
    c.reply()
}

#[test]
fn smuggling_bodies_over_long_lines_and_odd_bytes_in_data() {
    let (node, kept) = node_with_a_message(HOLD);
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    // Smuggling variants: bare LF or bare CR around a dot line; each refused, nothing stored.
    for body in [
        &b"Subject: a\r\n\r\nhello\n.\r\nMAIL FROM:<spoof@bank.test>\r\n"[..],
        b"Subject: b\r\n\r\nhello\r\n.\nMAIL FROM:<spoof@bank.test>\r\n",
        b"Subject: c\r\n\r\nhello\r.\r\nMAIL FROM:<spoof@bank.test>\r\n",
        b"Subject: d\r\n\r\nhello\n.\nMAIL FROM:<spoof@bank.test>\r\n",
    ] {
        let r = data_reply(&mut c, body);
        assert_eq!(r.code, 552, "{:?}: {r:?}", String::from_utf8_lossy(body));
        assert!(r.text.contains("bare"), "{r:?}");
    }
    // A 1,001-octet line in DATA (RFC 5321 §4.5.3.1.6), then a body of NULs and high bytes that
    // is otherwise well formed: the first refused, the second accepted byte for byte.
    let mut long = b"Subject: long\r\n\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1000));
    long.extend_from_slice(b"\r\n");
    let r = data_reply(&mut c, &long);
    assert!(r.code == 500 && r.text.contains("1000"), "{r:?}");
    let odd = b"Subject: odd\r\n\r\n\x00\x01\xff\xfe\x7f\r\n";
    let r = data_reply(&mut c, odd);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    assert_eq!(node.spool_ids().len(), 2, "only the odd-bytes message joined the kept one");
    still_serving(&node, &kept);
}
