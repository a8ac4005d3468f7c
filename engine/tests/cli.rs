//! The binary's start-up contract: bad configuration or policy stops it with exit code 2 and a
//! message naming the file, line and key.

use std::process::Command;

fn serve_with(config: &str, policy: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(&cfg, format!("[node]\ndata_dir = \"{}\"\n{config}", dir.path().join("data").display()))
        .unwrap();
    if let Some(p) = policy {
        std::fs::write(dir.path().join("policy.lua"), p).unwrap();
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_ferry")).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn unknown_key_exits_2_naming_key_file_and_line() {
    let (code, stderr) = serve_with("\n[smtp]\nlisten = \"127.0.0.1:0\"\nmax_recipents = 5\n", None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("smtp.max_recipents"), "{stderr}");
    assert!(stderr.contains("ferry.toml line 6"), "{stderr}");
}

#[test]
fn bad_duration_and_cidr_exit_2() {
    let (code, stderr) = serve_with("[smtp]\nidle_timeout = \"soon\"\n", None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("smtp.idle_timeout") && stderr.contains("line 4"), "{stderr}");
    let (code, stderr) = serve_with("[http]\ntrusted_hosts = [\"300.0.0.1\"]\n", None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("http.trusted_hosts") && stderr.contains("invalid CIDR"), "{stderr}");
}

#[test]
fn broken_policy_exits_2_naming_file_and_line() {
    let (code, stderr) = serve_with(
        "[smtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[policy]\nscript = \"policy.lua\"\n",
        Some("kumo.on('init', function() end)\n\nkumo.on('init', function() end)\n"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("policy.lua:3"), "{stderr}");
    let (code, stderr) = serve_with(
        "[smtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[policy]\nscript = \"policy.lua\"\n",
        Some("local x = \n"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("policy.lua:"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config", "/nonexistent/ferry.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ferry.toml"));
}
