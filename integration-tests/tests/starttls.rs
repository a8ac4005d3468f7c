//! Inbound STARTTLS (issue #14 item 3): offered always (a self-signed certificate when none is
//! configured), the configured certificate served when there is one, the session reset after the
//! handshake with pipelined plaintext thrown away, and the Reception record and Received header
//! saying what was negotiated.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::tls::{any_cert_client, client_trusting, test_cert};
use ferry_integration_tests::{FerryNode, wait_until};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Read one reply (all its lines) from `r`.
fn reply(r: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed after {all:?}");
        all.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            return all;
        }
    }
}

type Tls = BufReader<StreamOwned<ClientConnection, TcpStream>>;

fn cmd(s: &mut Tls, line: &str) -> String {
    s.get_mut().write_all(format!("{line}\r\n").as_bytes()).unwrap();
    reply(s)
}

/// Plain greeting and EHLO, then STARTTLS (with `pipelined` sent in the same write), then the
/// handshake with `config` for `name`.
fn upgrade(node: &FerryNode, config: Arc<ClientConfig>, name: &str, pipelined: &str) -> Tls {
    let tcp = TcpStream::connect(node.smtp).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut plain = BufReader::new(tcp.try_clone().unwrap());
    assert!(reply(&mut plain).starts_with("220 "));
    (&tcp).write_all(b"EHLO client.test\r\n").unwrap();
    let ehlo = reply(&mut plain);
    assert!(ehlo.contains("250-STARTTLS"), "offered before TLS: {ehlo}");
    (&tcp).write_all(format!("STARTTLS\r\n{pipelined}").as_bytes()).unwrap();
    assert!(reply(&mut plain).starts_with("220 2.0.0"));
    assert!(plain.buffer().is_empty(), "nothing after the 220 in plaintext");
    let conn = ClientConnection::new(config, ServerName::try_from(name.to_string()).unwrap()).unwrap();
    BufReader::new(StreamOwned::new(conn, tcp))
}

fn relay_policy(sink: &SmtpSink) -> String {
    format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }} end)",
        sink.port()
    )
}

#[test]
fn starttls_is_offered_with_a_self_signed_certificate_and_recorded() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&relay_policy(&sink)));
    // A MAIL FROM pipelined behind STARTTLS in plaintext must not survive the upgrade.
    let mut s = upgrade(&node, any_cert_client(), "ferry.test", "MAIL FROM:<injected@evil.test>\r\n");
    let ehlo = cmd(&mut s, "EHLO client.test");
    assert!(ehlo.starts_with("250-") && !ehlo.contains("STARTTLS"), "not offered twice: {ehlo}");
    assert!(
        cmd(&mut s, "RCPT TO:<r@example.com>").starts_with("503"),
        "the injected MAIL FROM was discarded"
    );
    assert!(cmd(&mut s, "MAIL FROM:<s@example.com>").starts_with("250"));
    assert!(cmd(&mut s, "RCPT TO:<r@example.com>").starts_with("250"));
    assert!(cmd(&mut s, "DATA").starts_with("354"));
    let done = cmd(&mut s, "Subject: tls\r\n\r\nover TLS\r\n.");
    assert!(done.starts_with("250"), "{done}");
    let reception = node.wait_records("Reception", 1).remove(0);
    assert_eq!(reception["tls_protocol_version"], "TLSv1_3", "{reception}");
    assert!(reception["tls_cipher"].as_str().unwrap().starts_with("TLS13_"), "{reception}");
    let delivered = sink.wait_messages(1).remove(0);
    assert!(delivered.data.contains("with ESMTPS id"), "{}", delivered.data);
    assert_eq!(cmd(&mut s, "STARTTLS").get(..3), Some("503"), "no second STARTTLS");
}

#[test]
fn a_configured_certificate_is_served_and_verifies() {
    let t = test_cert(&["ferry.test"]);
    let extra = format!(
        "[smtp]\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\n",
        t.cert.display(),
        t.key.display()
    );
    let node = FerryNode::start(&extra, None);
    let mut s = upgrade(&node, client_trusting(&t), "ferry.test", "");
    assert!(
        cmd(&mut s, "EHLO client.test").starts_with("250-"),
        "verified against the configured certificate"
    );
    assert!(cmd(&mut s, "QUIT").starts_with("221"));
}

#[test]
fn a_bad_certificate_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"{}\"\n[smtp]\nlisten = \"127.0.0.1:0\"\ntls_certificate = \"bogus.pem\"\ntls_private_key = \"bogus.pem\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(ferry_integration_tests::node::ferry_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status =
        wait_until("ferry to refuse the config", Duration::from_secs(20), || child.try_wait().ok().flatten());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("smtp.tls_certificate") && err.contains("bogus.pem"), "{err}");
}
