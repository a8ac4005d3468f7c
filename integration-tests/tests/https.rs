//! HTTPS on the HTTP listener and https:// xfer targets (issue #14 item 6): with a test CA the
//! bearer token and the moved messages never cross in clear, and the CLI talks to an HTTPS node.

use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::tls::test_cert;
use ferry_integration_tests::{FerryNode, RawSmtp};

const TOKEN: &str = "0123456789abcdef-https-test";

#[test]
fn xfer_to_an_https_peer_and_the_cli_over_https() {
    let t = test_cert(&["127.0.0.1"]);
    // B: HTTPS only, and nobody trusted by address: the token is required.
    let b = FerryNode::start(
        &format!(
            "[http]\ntrusted_hosts = []\nbearer_token = \"{TOKEN}\"\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\n",
            t.cert.display(),
            t.key.display()
        ),
        None,
    );
    let a = FerryNode::start(
        &format!("[http]\nbearer_token = \"{TOKEN}\"\n[xfer]\nca_file = \"{}\"\n", t.cert.display()),
        None,
    );
    a.cli(&["suspend", "--domain", "example.com", "--reason", "hold"]);
    let mut c = RawSmtp::connect(a.smtp);
    let id = queued_id(&c.send_message("s@example.com", &["r@example.com"], "Subject: https\r\n\r\nx\r\n"));
    a.wait_sequence(&id, &["Reception", "TransientFailure"]);
    a.wait_scheduled("example.com", &id);
    let target = format!("https://127.0.0.1:{}", b.http.port());
    a.cli(&["xfer", "--domain", "example.com", "--reason", "drain", "--target", &target]);
    a.wait_sequence(&id, &["Reception", "TransientFailure", "AdminRebind", "XferOut"]);
    assert_eq!(b.wait_records("XferIn", 1).len(), 1);

    // The CLI over HTTPS: with the CA it works, without it the certificate is refused.
    let endpoint = format!("https://127.0.0.1:{}", b.http.port());
    let cli = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(ferry_integration_tests::node::ferry_bin());
        cmd.args(["--endpoint", &endpoint, "--token", TOKEN]).args(extra).arg("suspend-list");
        cmd.output().unwrap()
    };
    let ca = t.cert.display().to_string();
    let ok = cli(&["--ca-file", &ca]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let refused = cli(&[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls") || err.contains("connect"), "{err}");
    // Plain HTTP to the HTTPS port gets nothing useful.
    let plain = std::process::Command::new(ferry_integration_tests::node::ferry_bin())
        .args([
            "--endpoint",
            &format!("http://127.0.0.1:{}", b.http.port()),
            "--token",
            TOKEN,
            "suspend-list",
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}
