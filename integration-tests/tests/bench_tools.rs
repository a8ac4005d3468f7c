//! The benchmark tools of the `ferry` binary run and report what they measured.

use std::process::Command;

use ferry_integration_tests::node::ferry_bin;

#[test]
fn bench_spool_runs_its_three_phases_and_leaves_the_spool_empty() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ferry_bin())
        .args(["bench-spool", "--dir", dir.path().join("spool").to_str().unwrap()])
        .args(["--rate", "2000", "--seconds", "1", "--spike", "300", "--size", "5000", "--fsync", "false"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| matches!(w.first(), Some(&"steady" | &"spike" | &"after")))
        .collect();
    let counts: Vec<(&str, &str)> = rows.iter().map(|w| (w[0], w[1])).collect();
    assert_eq!(counts, [("steady", "2000"), ("spike", "300"), ("after", "2000")], "{stdout}");
    // The spike held 300 bodies of two pages each at once: the file has grown past 2.4 MB.
    let file_mb: f64 = rows[1][5].parse().unwrap();
    assert!(file_mb > 2.4, "{stdout}");
    assert!(stdout.contains("left in the spool: 0"), "{stdout}");
}

/// `bench-smtp --starttls --per-connection 1` makes one connection, one handshake per message
/// (the one-shot client whose handshake rate BENCHMARKS.md reports), and says how many it made.
#[test]
fn bench_smtp_can_make_one_tls_connection_per_message() {
    let null = "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)";
    let node = ferry_integration_tests::FerryNode::start("[logs]\nmeta = [\"received_from\"]\n", Some(null));
    let out = Command::new(ferry_bin())
        .args(["bench-smtp", "--target", &node.smtp.to_string(), "--messages", "6", "--concurrency", "2"])
        .args(["--size", "1000", "--starttls", "--per-connection", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("sent 6 messages") && stdout.contains("; 0 failed"), "{stdout}");
    assert!(stdout.contains("6 connections with a TLS handshake each"), "{stdout}");
    let receptions = node.wait_records("Reception", 6);
    assert!(receptions.iter().all(|r| r["tls_protocol_version"] == "TLSv1_3"), "{receptions:?}");
    let peers: std::collections::HashSet<String> =
        receptions.iter().map(|r| r["meta"]["received_from"].to_string()).collect();
    assert_eq!(peers.len(), 6, "six client ports, one per connection: {peers:?}");
}

#[test]
fn bench_dkim_reports_the_cost_of_each_key_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ed) = (dir.path().join("rsa.pem"), dir.path().join("ed.pem"));
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            rsa.to_str().unwrap(),
        ],
        vec!["genpkey", "-algorithm", "ed25519", "-out", ed.to_str().unwrap()],
    ] {
        assert!(Command::new("openssl").args(&args).status().unwrap().success());
    }
    let out = Command::new(ferry_bin())
        .args(["bench-dkim", "--messages", "20", "--rsa-key", rsa.to_str().unwrap()])
        .args(["--ed25519-key", ed.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("rsa-sha256: 20 signatures of "), "{stdout}");
    assert!(lines[1].starts_with("ed25519-sha256: 20 signatures of "), "{stdout}");
}
