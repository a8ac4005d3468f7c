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
