//! DKIM signing in `smtp_server_message_received` (issue 15 item 1), checked by an independent
//! verifier: Python's dkimpy, its DNS lookups answered from the test keys. Keys are made at test
//! time with the `openssl` CLI; `.ci/run` installs dkimpy and pynacl (for ed25519).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::{FerryNode, RawSmtp};

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("the openssl CLI runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A private key PEM and its public key (SPKI DER) in `dir`.
fn make_key(dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.der"));
    let p = private.to_str().unwrap();
    openssl(&[genpkey, &["-out", p]].concat());
    openssl(&["pkey", "-in", p, "-pubout", "-outform", "DER", "-out", public.to_str().unwrap()]);
    (private, public)
}

/// Verifies every DKIM-Signature of the message on stdin; prints one PASS/FAIL line per
/// signature. argv: pairs of `selector._domainkey.domain` and a public key file (SPKI DER).
const VERIFY: &str = r#"
import base64, sys, dkim
records = {}
for name, der_path in zip(sys.argv[1::2], sys.argv[2::2]):
    der = open(der_path, 'rb').read()
    if len(der) == 44:  # ed25519 SPKI: the record carries the bare 32-byte key (RFC 8463)
        records[name] = b'v=DKIM1; k=ed25519; p=' + base64.b64encode(der[-32:])
    else:
        records[name] = b'v=DKIM1; k=rsa; p=' + base64.b64encode(der)
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name.rstrip('.'))
message = sys.stdin.buffer.read()
d = dkim.DKIM(message)
count = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
for i in range(count):
    try:
        print('PASS' if d.verify(idx=i, dnsfunc=dnsfunc) else 'FAIL')
    except dkim.ValidationError as e:  # a body hash mismatch is raised, not returned
        print('FAIL')
"#;

fn dkimpy_verdicts(message: &str, records: &[(&str, &Path)]) -> Vec<String> {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", VERIFY]);
    for (name, der) in records {
        cmd.arg(name).arg(der);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), message.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dkimpy failed (pip install dkimpy pynacl): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

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
