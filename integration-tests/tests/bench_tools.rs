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
