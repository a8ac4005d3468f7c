//! Several SMTP listeners in one node (issue #14 item 5): each with its own relay rule, auth
//! requirement, banner and TLS mode; the `[smtp]` table's settings are every listener's defaults.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

fn listeners(node: &FerryNode) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(node.data_dir().join("listeners.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["smtp_listeners"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().parse().unwrap()).collect()
}

#[test]
fn three_listeners_with_their_own_rules() {
    let extra = r#"[smtp]
banner = "shared banner"

[[smtp.listeners]]
listen = "127.0.0.1:0"
relay_hosts = []

[[smtp.listeners]]
listen = "127.0.0.1:0"
auth_required = true
banner = "submission"

[[smtp.listeners]]
listen = "127.0.0.1:0"
tls = "implicit"
"#;
    let node = FerryNode::start(extra, None);
    let addrs = listeners(&node);
    assert_eq!(addrs.len(), 3, "{addrs:?}");

    // 1: inbound, no relaying for anyone; the shared banner.
    let mut inbound = TcpStream::connect(addrs[0]).unwrap();
    inbound.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(inbound.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 ferry.test shared banner"), "{line}");
    inbound.write_all(b"EHLO c\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<r@example.com>\r\n").unwrap();
    let mut replies = String::new();
    while !replies.contains("Relaying denied") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "{replies}");
        replies.push_str(&line);
    }
    assert!(replies.contains("550 5.7.1"), "{replies}");

    // 2: submission: MAIL before AUTH is refused; its own banner.
    let mut sub = RawSmtp::connect(addrs[1]);
    assert_eq!(sub.cmd("EHLO c").code, 250);
    assert_eq!(sub.cmd("MAIL FROM:<s@example.com>").code, 530);

    // The `[smtp]` table's own listen address is not a fourth listener.
    assert_eq!(node.smtp, addrs[0]);

    // 3: implicit TLS: the handshake comes first, then the greeting, encrypted.
    let name = rustls::pki_types::ServerName::try_from("ferry.test").unwrap();
    let conn = rustls::ClientConnection::new(ferry_integration_tests::tls::any_cert_client(), name).unwrap();
    let tcp = TcpStream::connect(addrs[2]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    line.clear();
    tls.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 ferry.test shared banner"), "greeting over TLS: {line}");
    tls.get_mut().write_all(b"EHLO c\r\n").unwrap();
    let mut ehlo = String::new();
    loop {
        line.clear();
        tls.read_line(&mut line).unwrap();
        ehlo.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    }
    assert!(ehlo.starts_with("250-") && !ehlo.contains("STARTTLS"), "already encrypted: {ehlo}");
}

/// A client that connects to an implicit-TLS listener and never starts the handshake holds its
/// slot only until `command_timeout`.
#[test]
fn a_silent_client_on_an_implicit_tls_listener_is_dropped_at_the_deadline() {
    let node = FerryNode::start(
        "[smtp]\ncommand_timeout = \"1s\"\nidle_timeout = \"60s\"\n\n[[smtp.listeners]]\nlisten = \"127.0.0.1:0\"\ntls = \"implicit\"\n",
        None,
    );
    let addr = listeners(&node)[0];
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut silent, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent before the handshake, then the connection closes");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "closed after {took:?}");
}
