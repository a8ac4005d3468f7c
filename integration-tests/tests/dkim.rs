//! DKIM signing in `smtp_server_message_received` (issue 15 item 1), checked by an independent
//! verifier: Python's dkimpy, its DNS lookups answered from the test keys. Keys are made at test
//! time with the `openssl` CLI; `.ci/run` installs dkimpy and pynacl (for ed25519).

use std::path::Path;
use std::time::Duration;

use ferry_integration_tests::dkim::{dkimpy_verdicts, make_key};

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::{FerryNode, RawSmtp};

fn signing_policy(sink: &SmtpSink, rsa_key: &Path, ed_key: &Path) -> String {
    format!(
        r#"
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }}
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:append_header('X-Received-Via', msg:get_meta('received_via'))
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{
    domain = msg:from_header().domain, selector = 'tenant',
    headers = {{ 'From', 'To', 'Subject' }}, key = '{rsa}',
  }})
  msg:dkim_sign(kumo.dkim.ed25519_signer {{
    domain = 'esp.example', selector = 'esp',
    headers = {{ 'From', 'To', 'Subject', 'X-Received-Via' }}, key = '{ed}',
  }})
end)
"#,
        port = sink.port(),
        rsa = rsa_key.display(),
        ed = ed_key.display()
    )
}

#[test]
fn rsa_and_ed25519_signatures_verify_with_dkimpy_and_a_changed_body_fails() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa, rsa_pub) =
        make_key(keys.path(), "rsa", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let (ed, ed_pub) = make_key(keys.path(), "ed25519", &["genpkey", "-algorithm", "ed25519"]);
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&signing_policy(&sink, &rsa, &ed)));

    let mut c = RawSmtp::connect(node.smtp);
    let body = "From: Alice <alice@tenant.example>\r\nTo: bob@example.net\r\nSubject: signed\r\n\r\nHello Bob,\r\nthe numbers are 1, 2, 3.\r\n";
    let r = c.send_message("alice@tenant.example", &["bob@example.net"], body);
    assert_eq!(r.code, 250, "{r:?}");
    let data = sink.wait_messages(1)[0].data.clone();
    assert!(data.starts_with("DKIM-Signature: v=1; a=ed25519-sha256"), "{data}");
    assert!(data.contains("d=tenant.example") && data.contains("d=esp.example"), "{data}");
    assert!(data.contains(&format!("X-Received-Via: {}", node.smtp)), "{data}");

    let records = [
        ("tenant._domainkey.tenant.example", rsa_pub.as_path()),
        ("esp._domainkey.esp.example", ed_pub.as_path()),
    ];
    assert_eq!(dkimpy_verdicts(&data, &records), ["PASS", "PASS"], "{data}");
    let tampered = data.replace("1, 2, 3", "1, 2, 4");
    assert_ne!(tampered, data);
    assert_eq!(dkimpy_verdicts(&tampered, &records), ["FAIL", "FAIL"]);
}

#[test]
fn a_missing_key_file_refuses_the_message_naming_the_file_and_nothing_is_sent() {
    let keys = tempfile::tempdir().unwrap();
    let missing = keys.path().join("missing-dkim-key.pem");
    let (ed, _) = make_key(keys.path(), "ed25519", &["genpkey", "-algorithm", "ed25519"]);
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&signing_policy(&sink, &missing, &ed)));

    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message(
        "a@tenant.example",
        &["b@example.net"],
        "From: a@tenant.example\r\nSubject: x\r\n\r\nhi\r\n",
    );
    assert!((400..600).contains(&r.code), "{r:?}");
    let log = node.stderr();
    assert!(log.contains(&missing.display().to_string()), "the log must name the key file:\n{log}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.count(), 0, "no unsigned copy may reach the sink");
    assert!(node.spool_ids().is_empty(), "nothing spooled");
}
