//! The hardened SMTP edge (issue #12): SMTP smuggling on both sides, connection limits, and
//! deadlines a slow or non-reading client cannot stretch.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, http, wait_until};

/// The attack: a bare LF before ".\r\n", then a second transaction a lenient receiver would run.
const SMUGGLING_BODY: &str = "Subject: hi\r\n\r\nhello\n.\r\nMAIL FROM:<spoof@bank.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: forged\r\n\r\nsend money\r\n";

fn relay_policy(sink: &SmtpSink, extra: &str) -> String {
    format!(
        "{extra}\nkumo.on('get_queue_config', function() return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }} end)",
        sink.port()
    )
}

/// DATA with exact bytes (the body is sent as given, then the terminator).
fn send_raw_body(c: &mut RawSmtp, body: &str) -> ferry_integration_tests::smtp::SmtpReply {
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<sender@example.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<rcpt@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(body.as_bytes());
    c.send(b".\r\n");
    c.reply()
}

#[test]
fn smuggling_body_is_refused_by_default() {
    let node = FerryNode::start("", None);
    let mut c = RawSmtp::connect(node.smtp);
    let r = send_raw_body(&mut c, SMUGGLING_BODY);
    assert_eq!(r.code, 552, "{r:?}");
    assert!(r.text.contains("5.6.0") && r.text.contains("bare LF"), "{r:?}");
    // The session goes on; nothing was spooled and the smuggled MAIL FROM was never a command.
    assert_eq!(c.cmd("NOOP").code, 250);
    assert!(node.spool_ids().is_empty());
    let bare_cr = "Subject: cr\r\n\r\nlone\rcarriage return\r\n";
    let r = send_raw_body(&mut c, bare_cr);
    assert!(r.code == 552 && r.text.contains("bare CR"), "{r:?}");
    assert!(node.spool_ids().is_empty());
    assert!(!node.records().iter().any(|r| r["type"] == "Reception"));
}

#[test]
fn fix_mode_repairs_before_policy_and_the_sink_gets_crlf_lines() {
    let sink = SmtpSink::start();
    // The policy sees the repaired body: it records whether a bare LF is still there.
    let seen = "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('bare_lf', msg:get_data():find('[^\\r]\\n') ~= nil) end)";
    let node = FerryNode::start(
        "[smtp]\ninvalid_line_endings = \"Fix\"\n[logs]\nmeta = [\"bare_lf\"]\n",
        Some(&relay_policy(&sink, seen)),
    );
    let mut c = RawSmtp::connect(node.smtp);
    let r = send_raw_body(&mut c, SMUGGLING_BODY);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r);
    let messages = sink.wait_messages(1);
    let records = node.wait_sequence(&id, &["Reception", "Delivery"]);
    assert_eq!(records[0]["meta"]["bare_lf"], false, "policy saw the repaired body: {}", records[0]);
    assert_eq!(messages.len(), 1, "one message, not two: {messages:?}");
    let data = &messages[0].data;
    let body = data.split_once("\r\n\r\n").map(|(_, b)| b).expect("headers and body");
    let after_received = data.split_once("Subject: hi\r\n").map(|(_, rest)| rest).expect("subject kept");
    assert!(after_received.starts_with("\r\nhello\r\n"), "{data:?}");
    assert_eq!(
        body,
        "hello\r\n.\r\nMAIL FROM:<spoof@bank.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: forged\r\n\r\nsend money\r\n"
    );
    assert_eq!(messages[0].rcpt_to, ["rcpt@example.com"]);
}

#[test]
fn allow_mode_keeps_the_bytes_but_delivery_never_sends_a_bare_lf() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("[smtp]\ninvalid_line_endings = \"Allow\"\n", Some(&relay_policy(&sink, "")));
    let mut c = RawSmtp::connect(node.smtp);
    let r = send_raw_body(&mut c, SMUGGLING_BODY);
    assert_eq!(r.code, 250, "{r:?}");
    let id = queued_id(&r);
    node.wait_sequence(&id, &["Reception", "Delivery"]);
    // The sink treats a bare LF as a line end, as many receivers do: had Ferry relayed the bytes
    // as spooled, it would have ended the message at "hello" and stored the forged one too.
    let messages = sink.wait_messages(1);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].data.contains("\r\nhello\r\n.\r\nMAIL FROM:<spoof@bank.test>\r\n"),
        "{:?}",
        messages[0].data
    );
    assert!(!messages.iter().any(|m| m.mail_from.contains("spoof")));
}

/// Connect from `source` (any 127.0.0.0/8 address is local) and read the first reply line.
fn connect_from(source: &str, to: SocketAddr) -> (TcpStream, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let line = read_line(&mut stream);
    (stream, line)
}

fn read_line(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8];
    while !out.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => out.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn metric(node: &FerryNode, name: &str) -> u64 {
    let (status, text) = http::get(node.http, "/metrics", &[]);
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
fn connection_limits_answer_421_and_are_counted() {
    let node = FerryNode::start("[smtp]\nmax_connections = 4\nmax_connections_per_ip = 2\n", None);
    let mut held = Vec::new();
    for source in ["127.0.0.1", "127.0.0.1"] {
        let (s, greeting) = connect_from(source, node.smtp);
        assert!(greeting.starts_with("220 "), "{greeting}");
        held.push(s);
    }
    let (mut third, reply) = connect_from("127.0.0.1", node.smtp);
    assert!(reply.starts_with("421 4.3.2 "), "third from one address: {reply}");
    assert_eq!(third.read(&mut [0u8; 16]).unwrap_or(0), 0, "closed after the 421");
    for source in ["127.0.0.2", "127.0.0.3"] {
        let (s, greeting) = connect_from(source, node.smtp);
        assert!(greeting.starts_with("220 "), "{source}: {greeting}");
        held.push(s);
    }
    let (_, reply) = connect_from("127.0.0.4", node.smtp);
    assert!(reply.starts_with("421 4.3.2 "), "fifth in total: {reply}");
    assert_eq!(metric(&node, "total_connections_denied"), 2);
    // KumoMTA's label for inbound sessions (kcli top reads it).
    assert_eq!(metric(&node, "connection_count{service=\"esmtp_listener\"}"), 4);
    // Slots come back when sessions end.
    held.truncate(1);
    wait_until("freed slots", Duration::from_secs(10), || {
        (metric(&node, "smtp_server_connections") == 1).then_some(())
    });
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("s@example.com", &["r@example.com"], "Subject: ok\r\n\r\nserved\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(metric(&node, "total_messages_received{service=\"esmtp_listener\"}"), 1);
}

#[test]
fn two_thousand_idle_connections_do_not_hang_the_next_client() {
    let node = FerryNode::start("[smtp]\nmax_connections_per_ip = 5000\n", None);
    let sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let idle: Vec<TcpStream> = (0..2000)
        .map(|i| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let source: SocketAddr = format!("{}:0", sources[i % sources.len()]).parse().unwrap();
            socket.bind(&source.into()).unwrap();
            socket.connect(&node.smtp.into()).unwrap();
            socket.into()
        })
        .collect();
    // The next client is served (if a slot is free) or told 421; it never waits unanswered.
    let started = Instant::now();
    let mut s = TcpStream::connect(node.smtp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let first = read_line(&mut s);
    assert!(first.starts_with("220 ") || first.starts_with("421 4.3.2 "), "{first:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "answered after {:?}", started.elapsed());
    if first.starts_with("421") {
        assert!(metric(&node, "total_connections_denied") >= 1);
    }
    drop(idle);
    wait_until("idle sessions to end", Duration::from_secs(30), || {
        (metric(&node, "smtp_server_connections") <= 1).then_some(())
    });
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.send_message("s@example.com", &["r@example.com"], "Subject: ok\r\n\r\nx\r\n").code, 250);
}

/// Send `bytes` one at a time, `every` apart, until the server closes; returns everything read
/// and how long the server took to close.
fn drip(node: &FerryNode, prefix: &[u8], bytes: &[u8], every: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(node.smtp).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    s.write_all(prefix).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for b in bytes.iter().cycle() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never cut off: {}",
            String::from_utf8_lossy(&got)
        );
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(every);
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[test]
fn a_dripping_client_is_cut_at_the_command_and_data_deadlines() {
    let node = FerryNode::start(
        "[smtp]\nidle_timeout = \"30s\"\ncommand_timeout = \"2s\"\ndata_timeout = \"3s\"\n",
        None,
    );
    // One byte every 200 ms never trips idle_timeout, but the line never completes in time.
    let (got, took) = drip(&node, b"", b"EHLO dripping.example ", Duration::from_millis(200));
    assert!(got.contains("421 4.4.2 ferry.test Command timeout"), "{got:?}");
    assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(10), "{took:?}");
    // Complete lines keep the session alive, but the DATA phase has a deadline of its own.
    let prefix = b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n";
    let (got, took) = drip(&node, prefix, b"line\r\n", Duration::from_millis(100));
    assert!(got.contains("354 ") && got.contains("421 4.4.2 DATA timeout"), "{got:?}");
    assert!(took >= Duration::from_millis(2800) && took < Duration::from_secs(12), "{took:?}");
    assert!(node.spool_ids().is_empty());
}

/// A client that pipelines commands and never reads: the server's replies back up until its
/// writes block. Returns the stream once our own writes have stalled.
fn never_reading_client(node: &FerryNode) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&node.smtp.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = "EHLO never-reads.example\r\n".repeat(1000);
    let started = Instant::now();
    while s.write_all(chunk.as_bytes()).is_ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "the server kept reading");
    }
    s
}

#[test]
fn a_client_that_never_reads_is_cut_at_the_write_deadline() {
    let node = FerryNode::start("[smtp]\nwrite_timeout = \"2s\"\n", None);
    let mut s = never_reading_client(&node);
    let stalled = Instant::now();
    // Reading now would let the server go on; it must give up on us while we do not read.
    wait_until("the disconnect to be logged", Duration::from_secs(20), || {
        node.stderr().contains("smtp.write_timeout").then_some(())
    });
    let took = stalled.elapsed();
    assert!(took < Duration::from_secs(12), "cut off {took:?} after our writes stalled (write_timeout 2s)");
    // What the server wrote before giving up is still readable; then the stream ends.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let drained = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(drained.elapsed() < Duration::from_secs(10), "still open"),
        }
    }
    assert!(drained.elapsed() < Duration::from_secs(9), "the stream did not end");
    // Others are served meanwhile and after.
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("NOOP").code, 250);
}

#[test]
fn sigterm_with_a_never_reading_client_exits_within_the_grace() {
    let mut node = FerryNode::start("[smtp]\nwrite_timeout = \"5m\"\nshutdown_grace = \"2s\"\n", None);
    let _stuck = never_reading_client(&node);
    let started = Instant::now();
    let status = node.stop();
    assert!(status.success(), "{status:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "exit took {took:?} with a 2 s grace");
    assert!(node.stderr().contains("smtp.shutdown_grace"), "{}", node.stderr());
}

#[test]
fn out_of_descriptors_backs_off_logs_rarely_and_recovers() {
    let node = FerryNode::start("", None);
    // Leave the node a handful of spare descriptors, then use them up.
    let pid = node.pid().to_string();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let limit = (fds + 8).to_string();
    let set = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={limit}:{limit}")])
        .status();
    if !set.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: prlimit could not lower the node's descriptor limit here");
        return;
    }
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Ok(s) = TcpStream::connect(node.smtp) {
            held.push(s);
        }
    }
    // Accept keeps failing for a while: it must not spin or flood the log.
    let errors_at = |node: &FerryNode| node.stderr().matches("SMTP accept failed").count();
    wait_until("an accept failure to be logged", Duration::from_secs(10), || {
        (errors_at(&node) > 0).then_some(())
    });
    let first = errors_at(&node);
    std::thread::sleep(Duration::from_secs(3)); // a window to count log lines in, not a wait for a condition
    let logged = errors_at(&node) - first;
    assert!(logged <= 4, "{logged} accept-failure lines in 3 s");
    assert!(node.stderr().contains("out of file descriptors"), "{}", node.stderr());
    drop(held);
    wait_until("the listener to serve again", Duration::from_secs(20), || {
        let (_, greeting) = connect_from("127.0.0.1", node.smtp);
        greeting.starts_with("220 ").then_some(())
    });
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("NOOP").code, 250);
}
