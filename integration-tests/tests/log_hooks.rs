//! Log hooks (issue #16 item 1): `kumo.configure_log_hook` in `init` turns records into messages
//! that `should_enqueue_log_record` routes to a queue, here a custom_lua queue that appends each
//! message's body to a file. The records about those hook messages are not hooked again.

use std::time::Duration;

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

fn policy(sink: &SmtpSink, out: &std::path::Path) -> String {
    format!(
        r#"
kumo.on('init', function()
  kumo.configure_log_hook {{
    name = 'events',
    headers = {{ 'Subject' }},
    meta = {{ 'tenant' }},
    per_record = {{ Delivery = {{ enable = true }}, Bounce = {{ enable = true }}, TransientFailure = {{ enable = true }}, Any = {{ enable = false }} }},
  }}
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('tenant', 'acme') end)
kumo.on('should_enqueue_log_record', function(msg, hook_name)
  local record = msg:get_meta('log_record')
  if hook_name ~= 'events' or record.queue == 'webhook' then return false end
  msg:set_meta('queue', 'webhook')
  return true
end)
kumo.on('make.webhook', function(domain, tenant, campaign)
  local connection = {{}}
  function connection:send(message)
    local f = io.open('{out}', 'a')
    f:write(message:get_data(), '\n')
    f:close()
    return 'written'
  end
  return connection
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'webhook' then
    return kumo.make_queue_config {{ protocol = {{ custom_lua = {{ constructor = 'make.webhook' }} }} }}
  end
  return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }}
end)
"#,
        out = out.display(),
        port = sink.port()
    )
}

fn events(out: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each event is a JSON record"))
        .collect()
}

#[test]
fn outcomes_become_hook_messages_delivered_by_custom_lua() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let node = FerryNode::start("", Some(&policy(&sink, &out)));
    let mut ids = Vec::new();
    for rcpt in ["ok@example.com", "permfail@example.com", "tempfail@example.com"] {
        let mut c = RawSmtp::connect(node.smtp);
        ids.push(queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: hooked\r\n\r\nx\r\n")));
    }
    let got = wait_until("three events", Duration::from_secs(20), || {
        let e = events(&out);
        (e.len() >= 3).then_some(e)
    });
    let mut kinds: Vec<(String, String)> = got
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e["type"].as_str().unwrap().to_string()))
        .collect();
    kinds.sort();
    let mut want = vec![
        (ids[0].clone(), "Delivery".to_string()),
        (ids[1].clone(), "Bounce".to_string()),
        (ids[2].clone(), "TransientFailure".to_string()),
    ];
    want.sort();
    assert_eq!(kinds, want);
    for e in &got {
        assert_eq!(e["meta"], serde_json::json!({"tenant": "acme"}), "the hook's meta selection: {e}");
        assert_eq!(e["headers"]["Subject"], "hooked", "the hook's headers selection: {e}");
    }
    let bounce = got.iter().find(|e| e["type"] == "Bounce").unwrap();
    assert!(bounce["bounce_classification"].is_string(), "{bounce}");
    // The hook messages' own Delivery records are logged but not hooked: still three events.
    wait_until("the hook messages' deliveries to be logged", Duration::from_secs(20), || {
        let n =
            node.records().into_iter().filter(|r| r["type"] == "Delivery" && r["queue"] == "webhook").count();
        (n == 3).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(events(&out).len(), 3, "no event about an event");
}
