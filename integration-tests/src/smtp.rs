//! A raw SMTP client for protocol tests: exact bytes out, replies in.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct RawSmtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A reply: code and the text of its last line (all lines joined by '\n').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    pub text: String,
}

impl RawSmtp {
    /// Connect and read the greeting.
    pub fn connect(addr: SocketAddr) -> RawSmtp {
        let stream = TcpStream::connect(addr).expect("connect to ferry");
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = RawSmtp { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let greeting = c.reply();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c
    }

    /// Connect from a chosen local address (any 127.0.0.0/8 address works on loopback).
    pub fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> RawSmtp {
        let socket =
            socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(local, 0).into()).expect("bind the local address");
        socket.connect(&addr.into()).expect("connect to ferry");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = RawSmtp { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let greeting = c.reply();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
        self.writer.flush().unwrap();
    }

    pub fn reply(&mut self) -> SmtpReply {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read reply");
            assert!(n > 0, "connection closed while waiting for a reply");
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("malformed reply {line:?}"));
            text.push(line.get(4..).unwrap_or("").trim_end().to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return SmtpReply { code, text: text.join("\n") };
            }
        }
    }

    /// Send a command line and return its reply.
    pub fn cmd(&mut self, line: &str) -> SmtpReply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = String::new();
        // A reset (we wrote after the server closed) counts as closed too.
        matches!(self.reader.read_line(&mut buf), Ok(0) | Err(_))
    }

    /// EHLO, MAIL, RCPT, DATA, body, and the final reply.
    pub fn send_message(&mut self, from: &str, to: &[&str], body: &str) -> SmtpReply {
        assert_eq!(self.cmd("EHLO client.test").code, 250);
        self.transaction(from, to, body)
    }

    /// MAIL, RCPT, DATA and body on an already greeted connection.
    pub fn transaction(&mut self, from: &str, to: &[&str], body: &str) -> SmtpReply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if r.code != 250 {
            return r;
        }
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            if r.code != 250 {
                return r;
            }
        }
        let r = self.cmd("DATA");
        if r.code != 354 {
            return r;
        }
        let mut data = String::new();
        for line in body.split("\r\n") {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        if body.ends_with("\r\n") {
            data.truncate(data.len() - 2);
        }
        data.push_str(".\r\n");
        self.send(data.as_bytes());
        self.reply()
    }
}

/// The (first) message id in a `250 2.0.0 OK ids=<id> <id>…` reply.
pub fn queued_id(reply: &SmtpReply) -> String {
    queued_ids(reply).swap_remove(0)
}

/// Every message id in a `250 2.0.0 OK ids=<id> <id>…` reply (one per recipient domain).
pub fn queued_ids(reply: &SmtpReply) -> Vec<String> {
    let ids: Vec<String> = reply
        .text
        .split_once("ids=")
        .map(|(_, ids)| ids.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    assert!(!ids.is_empty(), "no ids in {reply:?}");
    ids
}
