//! The smtp-sink binary and its harness, driven with a plain TcpStream client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use ferry_integration_tests::sink::{SinkMessage, SmtpSink, sink_bin};
use serde_json::Value;

/// A line-oriented SMTP client: `cmd` sends one line and returns the (possibly multi-line) reply.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connect and read the greeting.
    fn connect(sink: &SmtpSink) -> (Client, String) {
        let stream = TcpStream::connect(sink.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut client = Client { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let greeting = client.reply();
        (client, greeting)
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// One reply; the lines of a multi-line reply are joined with '\n', CRLFs removed.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "EOF after {lines:?}");
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// True if the server has closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).unwrap();
        rest.is_empty()
    }
}

/// `(command, address, code)` of each recorded refusal.
fn refusals(sink: &SmtpSink) -> Vec<(String, String, u64)> {
    let field = |v: &Value, k: &str| v[k].as_str().unwrap().to_string();
    sink.rejections()
        .iter()
        .map(|v| (field(v, "command"), field(v, "address"), v["code"].as_u64().unwrap()))
        .collect()
}

fn refusal(command: &str, address: &str, code: u64) -> (String, String, u64) {
    (command.to_string(), address.to_string(), code)
}

#[test]
fn default_binary_path_is_the_one_cargo_built() {
    if std::env::var_os("SMTP_SINK_BIN").is_none() {
        let cargo = Path::new(env!("CARGO_BIN_EXE_smtp-sink"));
        assert_eq!(sink_bin().canonicalize().unwrap(), cargo.canonicalize().unwrap());
    }
}

#[test]
fn accepts_and_stores_messages_with_dot_unstuffing() {
    let sink = SmtpSink::start();
    assert_eq!(sink.addr().ip().to_string(), "127.0.0.1");
    assert_ne!(sink.port(), 0);
    assert!(sink.messages().is_empty());

    let (mut c, greeting) = Client::connect(&sink);
    assert_eq!(greeting, "220 sink.test test sink");
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.starts_with("250-sink.test\n"), "{ehlo}");
    for ext in ["PIPELINING", "8BITMIME", "SIZE", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.lines().any(|l| l[4..].starts_with(ext)), "{ext} missing from {ehlo}");
    }
    assert!(ehlo.lines().last().unwrap().starts_with("250 "), "{ehlo}");
    assert_eq!(c.cmd("MAIL FROM:<alice@a.test> SIZE=120 BODY=8BITMIME"), "250 2.1.0 OK");
    assert_eq!(c.cmd("RCPT TO:<bob@b.test>"), "250 2.1.5 OK");
    assert_eq!(c.cmd("rcpt to:<Carol@b.test>"), "250 2.1.5 OK");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send("Subject: hi\r\n\r\n..leading dot\r\n...\r\nlast\r\n.\r\n");
    assert_eq!(c.reply(), "250 2.0.0 OK id=1");

    // Stored before the reply was sent, so no waiting is needed.
    let stored = sink.messages();
    assert!(stored[0].peer.starts_with("127.0.0.1:"), "{:?}", stored[0].peer);
    let first = SinkMessage {
        seq: 1,
        mail_from: "alice@a.test".into(),
        rcpt_to: vec!["bob@b.test".into(), "Carol@b.test".into()],
        data: "Subject: hi\r\n\r\n.leading dot\r\n..\r\nlast\r\n".into(),
        helo: "client.test".into(),
        peer: stored[0].peer.clone(),
    };
    assert_eq!(sink.messages(), vec![first.clone()]);
    assert!(sink.dir().join("messages/00000001.json").exists());

    // A second transaction on the same connection, with the null sender and an empty body.
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    assert_eq!(c.cmd("MAIL FROM:<>"), "250 2.1.0 OK");
    assert_eq!(c.cmd("RCPT TO:<dave@d.test>"), "250 2.1.5 OK");
    assert!(c.cmd("DATA").starts_with("354 "));
    assert_eq!(c.cmd("."), "250 2.0.0 OK id=2");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 bye");
    assert!(c.closed());

    let all = sink.wait_messages(2);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], first);
    assert_eq!((all[1].seq, all[1].mail_from.as_str(), all[1].data.as_str()), (2, "", ""));
    assert_eq!(all[1].rcpt_to, ["dave@d.test"]);
    assert!(sink.rejections().is_empty());
}

#[test]
fn local_parts_choose_the_answer_and_refusals_are_recorded() {
    let sink = SmtpSink::start();
    let (mut c, _) = Client::connect(&sink);
    c.cmd("EHLO client.test");
    assert_eq!(c.cmd("MAIL FROM:<sender@a.test>"), "250 2.1.0 OK");
    assert_eq!(c.cmd("RCPT TO:<tempfail@b.test>"), "400 4.0.0 tempfail requested");
    assert_eq!(c.cmd("RCPT TO:<PermFail@b.test>"), "500 5.0.0 permfail requested");
    assert_eq!(c.cmd("RCPT TO:<full@b.test>"), "452 4.2.2 mailbox full");
    assert_eq!(c.cmd("RCPT TO:<450-greylist@b.test>"), "450 4.0.0 450 requested");
    assert_eq!(c.cmd("RCPT TO:<550-nouser@b.test>"), "550 5.0.0 550 requested");
    // Only the local part counts, and it ends at the last '@'.
    assert_eq!(c.cmd("RCPT TO:<ok@full.test>"), "250 2.1.5 OK");
    assert!(c.cmd("DATA").starts_with("354 "));
    assert_eq!(c.cmd("body\r\n."), "250 2.0.0 OK id=1");
    assert_eq!(sink.messages()[0].rcpt_to, ["ok@full.test"], "only accepted recipients are listed");

    assert_eq!(c.cmd("MAIL FROM:<tempfail@a.test>"), "400 4.0.0 tempfail requested");
    assert_eq!(c.cmd("MAIL FROM:<550-x@a.test>"), "550 5.0.0 550 requested");

    assert_eq!(
        refusals(&sink),
        [
            refusal("RCPT", "tempfail@b.test", 400),
            refusal("RCPT", "PermFail@b.test", 500),
            refusal("RCPT", "full@b.test", 452),
            refusal("RCPT", "450-greylist@b.test", 450),
            refusal("RCPT", "550-nouser@b.test", 550),
            refusal("MAIL", "tempfail@a.test", 400),
            refusal("MAIL", "550-x@a.test", 550),
        ]
    );
    assert_eq!(sink.rejections()[0]["text"], "4.0.0 tempfail requested");
}

#[test]
fn code_421_closes_the_connection() {
    let sink = SmtpSink::start();
    let (mut c, _) = Client::connect(&sink);
    c.cmd("HELO client.test");
    c.cmd("MAIL FROM:<a@a.test>");
    // Commands pipelined after the 421 are never answered.
    c.send("RCPT TO:<421-shutdown@b.test>\r\nNOOP\r\n");
    assert_eq!(c.reply(), "421 4.0.0 421 requested");
    assert!(c.closed());

    let (mut c, _) = Client::connect(&sink);
    c.cmd("HELO client.test");
    assert_eq!(c.cmd("MAIL FROM:<421-bye@a.test>"), "421 4.0.0 421 requested");
    assert!(c.closed());
    assert_eq!(
        refusals(&sink),
        [refusal("RCPT", "421-shutdown@b.test", 421), refusal("MAIL", "421-bye@a.test", 421)]
    );
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let sink = SmtpSink::start();
    let (mut c, _) = Client::connect(&sink);
    c.cmd("EHLO client.test");
    c.send("MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nRCPT TO:<tempfail@b.test>\r\nDATA\r\n");
    assert_eq!(c.reply(), "250 2.1.0 OK");
    assert_eq!(c.reply(), "250 2.1.5 OK");
    assert_eq!(c.reply(), "400 4.0.0 tempfail requested");
    assert!(c.reply().starts_with("354 "));
    // The end of one message and the next transaction in one write.
    c.send("one\r\n.\r\nMAIL FROM:<c@a.test>\r\nRCPT TO:<d@b.test>\r\nDATA\r\n");
    assert_eq!(c.reply(), "250 2.0.0 OK id=1");
    assert_eq!(c.reply(), "250 2.1.0 OK");
    assert_eq!(c.reply(), "250 2.1.5 OK");
    assert!(c.reply().starts_with("354 "));
    c.send("two\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply(), "250 2.0.0 OK id=2");
    assert_eq!(c.reply(), "221 2.0.0 bye");

    let messages = sink.wait_messages(2);
    let summary: Vec<_> =
        messages.iter().map(|m| (m.mail_from.as_str(), m.rcpt_to.clone(), m.data.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("a@a.test", vec!["b@b.test".to_string()], "one\r\n"),
            ("c@a.test", vec!["d@b.test".to_string()], "two\r\n")
        ]
    );
}

#[test]
fn data_without_an_accepted_recipient_gets_503() {
    let sink = SmtpSink::start();
    let (mut c, _) = Client::connect(&sink);
    c.cmd("EHLO client.test");
    // Refused sender: recipients and DATA are refused too.
    assert_eq!(c.cmd("MAIL FROM:<permfail@a.test>"), "500 5.0.0 permfail requested");
    assert_eq!(c.cmd("RCPT TO:<b@b.test>"), "503 5.5.1 need MAIL");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 no valid recipients");
    // Accepted sender, every recipient refused.
    assert_eq!(c.cmd("MAIL FROM:<a@a.test>"), "250 2.1.0 OK");
    assert_eq!(c.cmd("RCPT TO:<full@b.test>"), "452 4.2.2 mailbox full");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 no valid recipients");
    // The session is still usable.
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");

    assert!(sink.messages().is_empty());
    assert_eq!(
        refusals(&sink),
        [
            refusal("MAIL", "permfail@a.test", 500),
            refusal("RCPT", "b@b.test", 503),
            refusal("DATA", "", 503),
            refusal("RCPT", "full@b.test", 452),
            refusal("DATA", "a@a.test", 503),
        ]
    );
}

#[test]
fn bad_input_is_answered_not_fatal() {
    let sink = SmtpSink::start();
    let (mut c, _) = Client::connect(&sink);
    assert_eq!(c.cmd("XYZZY"), "500 5.5.1 unrecognized");
    assert_eq!(c.cmd(""), "500 5.5.1 unrecognized");
    c.writer.write_all(b"\xff\xfe\x00garbage\r\n").unwrap();
    assert_eq!(c.reply(), "500 5.5.1 unrecognized");
    assert!(c.cmd("MAIL alice").starts_with("501 "));
    assert!(c.cmd("EHLO").starts_with("501 "));
    assert_eq!(c.cmd("HELO client.test"), "250 sink.test");

    // A line that never ends is cut off; other connections carry on.
    c.send(&"x".repeat(2 << 20));
    assert!(c.reply().starts_with("500 "));
    assert!(c.closed());
    let (mut c, greeting) = Client::connect(&sink);
    assert!(greeting.starts_with("220 "));
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
}

#[test]
fn connections_are_counted() {
    let sink = SmtpSink::start();
    assert_eq!(sink.connections(), 0);
    // The counter is written before the greeting, so it is current once the greeting is read.
    let (mut first, _) = Client::connect(&sink);
    assert_eq!(sink.connections(), 1);
    assert_eq!(first.cmd("QUIT"), "221 2.0.0 bye");
    let (_second, _) = Client::connect(&sink);
    assert_eq!(sink.connections(), 2);
}
