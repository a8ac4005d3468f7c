//! Bounce classification (issue #16 item 3): every Bounce and TransientFailure record says why in
//! `bounce_classification`, with the shipped rules out of the box, or with the rules files the
//! policy gives `kumo.configure_bounce_classifier` in its `init` event (which replace them).

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

fn policy(sink: &SmtpSink, init: &str) -> String {
    format!(
        r#"
{init}
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    )
}

fn outcome(node: &FerryNode, rcpt: &str, kind: &str) -> Value {
    let mut c = RawSmtp::connect(node.smtp);
    let id = queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: x\r\n\r\nx\r\n"));
    node.wait_sequence(&id, &["Reception", kind]).remove(1)
}

#[test]
fn the_shipped_rules_classify_failures_out_of_the_box() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&policy(&sink, "")));
    let bounce = outcome(&node, "unknown@example.com", "Bounce");
    assert_eq!(bounce["bounce_classification"], "InvalidRecipient", "{bounce}");
    let deferred = outcome(&node, "full@example.com", "TransientFailure");
    assert_eq!(deferred["bounce_classification"], "QuotaIssues", "{deferred}");
    let delivered = outcome(&node, "ok@example.com", "Delivery");
    assert_eq!(delivered["bounce_classification"], "Uncategorized", "{delivered}");
}

#[test]
fn rules_configured_in_init_replace_the_shipped_ones() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[rules]\nSinkAskedForIt = ['^500 5\\.0\\.0 permfail requested']\n").unwrap();
    let init = format!(
        "kumo.on('init', function()\n  kumo.configure_bounce_classifier {{ files = {{ '{}' }} }}\nend)",
        rules.display()
    );
    let node = FerryNode::start("", Some(&policy(&sink, &init)));
    let custom = outcome(&node, "permfail@example.com", "Bounce");
    assert_eq!(custom["bounce_classification"], "SinkAskedForIt", "{custom}");
    let unknown = outcome(&node, "unknown@example.com", "Bounce");
    assert_eq!(unknown["bounce_classification"], "Uncategorized", "only the configured rules: {unknown}");
}

#[test]
fn a_missing_rules_file_stops_start_up_naming_it_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.lua"),
        "kumo.on('init', function()\n  kumo.configure_bounce_classifier { files = { '/nonexistent/rules.toml' } }\nend)\n",
    )
    .unwrap();
    let config = format!(
        "[policy]\nscript = \"policy.lua\"\n[node]\ndata_dir = \"{}\"\n[smtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("ferry.toml"), config).unwrap();
    let out = std::process::Command::new(ferry_integration_tests::node::ferry_bin())
        .args(["serve", "--config", dir.path().join("ferry.toml").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("/nonexistent/rules.toml") && stderr.contains("policy.lua:2"), "{stderr}");
}
