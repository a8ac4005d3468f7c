//! Outbound STARTTLS by egress path (issue #14 item 1): `enable_tls` decides, certificates are
//! verified against the system's roots plus `[tls] ca_file`, a failed handshake is a clear
//! TransientFailure (no plaintext fallback on that connection unless the policy asks for a
//! reconnect), and Delivery records say what was negotiated. The receiving MTA is a second Ferry
//! node with a test certificate for `ferry.test`.

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::tls::{TestCert, test_cert};
use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

struct Receiver {
    node: FerryNode,
    tls: TestCert,
}

/// A Ferry node that accepts anything over STARTTLS with a certificate for `ferry.test` and
/// discards it (the `null` queue), so its Reception records are the oracle.
fn receiver() -> Receiver {
    let tls = test_cert(&["ferry.test"]);
    let extra = format!(
        "[smtp]\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\n",
        tls.cert.display(),
        tls.key.display()
    );
    let policy = "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)";
    Receiver { node: FerryNode::start(&extra, Some(policy)), tls }
}

/// A sending node whose mail goes to `mx` (`{ name = ..., addr = ... }` or a string) with `path`.
fn sender(mx: &str, path: &str, ca_file: Option<&std::path::Path>) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ {mx} }} }} }} }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ {path} }}
end)
"#
    );
    let extra = ca_file.map(|f| format!("[tls]\nca_file = \"{}\"\n", f.display())).unwrap_or_default();
    FerryNode::start(&extra, Some(&policy))
}

fn to(r: &Receiver) -> String {
    format!("{{ name = 'ferry.test', addr = '127.0.0.1:{}' }}", r.node.smtp.port())
}

fn send(node: &FerryNode) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    queued_id(&c.send_message("s@example.com", &["r@example.com"], "Subject: tls\r\n\r\nx\r\n"))
}

fn outcome(node: &FerryNode, id: &str, kind: &str) -> Value {
    node.wait_sequence(id, &["Reception", kind]).remove(1)
}

#[test]
fn required_tls_to_a_trusted_peer_is_recorded_on_both_sides() {
    let r = receiver();
    let a = sender(&to(&r), "enable_tls = 'Required'", Some(&r.tls.cert));
    let delivery = outcome(&a, &send(&a), "Delivery");
    assert_eq!(delivery["tls_protocol_version"], "TLSv1_3", "{delivery}");
    assert!(delivery["tls_cipher"].as_str().unwrap().starts_with("TLS13_"), "{delivery}");
    assert_eq!(
        delivery["tls_peer_subject_name"],
        serde_json::json!(["CN=rcgen self signed cert"]),
        "{delivery}"
    );
    let reception = r.node.wait_records("Reception", 1).remove(0);
    assert_eq!(reception["tls_protocol_version"], "TLSv1_3", "{reception}");
}

#[test]
fn an_untrusted_certificate_fails_required_and_opportunistic_without_fallback() {
    let r = receiver();
    for mode in ["Required", "Opportunistic"] {
        let a = sender(&to(&r), &format!("enable_tls = '{mode}'"), None);
        let tf = outcome(&a, &send(&a), "TransientFailure");
        let content = tf["response"]["content"].as_str().unwrap();
        assert!(
            content.contains("TLS handshake failed") && content.contains("UnknownIssuer"),
            "{mode}: {content}"
        );
    }
    assert!(r.node.records().iter().all(|rec| rec["type"] != "Reception"), "nothing sent in plaintext");
}

#[test]
fn opportunistic_reconnects_in_plaintext_only_when_asked() {
    let r = receiver();
    let path = "enable_tls = 'Opportunistic', opportunistic_tls_reconnect_on_failed_handshake = true";
    let a = sender(&to(&r), path, None);
    let delivery = outcome(&a, &send(&a), "Delivery");
    assert!(delivery.get("tls_protocol_version").is_none_or(Value::is_null), "{delivery}");
    let reception = r.node.wait_records("Reception", 1).remove(0);
    assert!(reception.get("tls_protocol_version").is_none_or(Value::is_null), "plaintext: {reception}");
}

#[test]
fn insecure_modes_encrypt_without_verifying() {
    let r = receiver();
    let a = sender(&to(&r), "enable_tls = 'OpportunisticInsecure'", None);
    let delivery = outcome(&a, &send(&a), "Delivery");
    assert_eq!(delivery["tls_protocol_version"], "TLSv1_3", "{delivery}");
}

#[test]
fn required_tls_to_a_peer_without_starttls_is_refused() {
    let sink = SmtpSink::start();
    let a = sender(&format!("'[127.0.0.1]:{}'", sink.port()), "enable_tls = 'Required'", None);
    let tf = outcome(&a, &send(&a), "TransientFailure");
    let content = tf["response"]["content"].as_str().unwrap();
    assert!(content.contains("STARTTLS is not offered"), "{content}");
    assert_eq!(sink.count(), 0);
}
