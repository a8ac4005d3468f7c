//! Log hooks (issue #16 items 1 and 2): `kumo.configure_log_hook` in `init` turns records into
//! messages that `should_enqueue_log_record` routes to a queue: a custom_lua queue that appends
//! each body to a file, or one that POSTs batches to a webhook with `kumo.http`. The records
//! about those hook messages are not hooked again; a kill -9 loses no event; a failing webhook
//! gets its events again later.

use std::time::Duration;

use ferry_integration_tests::http::get;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::webhook::Webhook;
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
  local opened = io.open('{out}.connections', 'a')
  opened:write('opened\n')
  opened:close()
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

/// A custom_lua connection (and the Lua state it built) stays open between messages that come
/// a while apart, up to the path's idle_timeout: one constructor call for both events.
#[test]
fn a_custom_lua_connection_serves_events_that_come_apart() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let node = FerryNode::start("", Some(&policy(&sink, &out)));
    for n in 1..=2 {
        let mut c = RawSmtp::connect(node.smtp);
        queued_id(&c.send_message("s@example.com", &["ok@example.com"], "Subject: apart\r\n\r\nx\r\n"));
        wait_until("the event", Duration::from_secs(20), || (events(&out).len() == n).then_some(()));
        // Long enough for a connection that closes when its queue is empty to have closed.
        std::thread::sleep(Duration::from_millis(500));
    }
    let opened = std::fs::read_to_string(out.with_extension("jsonl.connections")).unwrap();
    assert_eq!(opened.lines().count(), 1, "one connection for both events");
}

/// A batching custom_lua queue opens another connection only when the backlog is more than its
/// open connections can take in a batch each: 40 events behind a slow webhook go through one
/// connection (with the SMTP rule, four queued per connection, the backlog that builds while a
/// POST waits would open several connections, each sending slivers).
#[test]
fn a_batching_queue_fills_its_connection_before_opening_another() {
    let sink = SmtpSink::start();
    let webhook = Webhook::slow(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let policy = format!(
        r#"
kumo.on('init', function() kumo.configure_log_hook {{ name = 'h', per_record = {{ Delivery = {{ enable = true }}, Any = {{ enable = false }} }} }} end)
kumo.on('should_enqueue_log_record', function(msg)
  msg:set_meta('queue', 'webhook')
  return true
end)
kumo.on('make.webhook', function()
  local f = io.open('{opened}', 'a')
  f:write('opened\n')
  f:close()
  local connection = {{}}
  local client = kumo.http.build_client {{ timeout = '10s' }}
  function connection:send_batch(messages)
    local records = {{}}
    for i, msg in ipairs(messages) do records[i] = msg:get_data() end
    local r = client:post('{url}'):body('[' .. table.concat(records, ',') .. ']'):send()
    if r:status_is_success() then return 'ok' end
    kumo.reject(400, r:text())
  end
  return connection
end)
kumo.on('get_queue_config', function(domain)
  if domain == 'webhook' then
    return kumo.make_queue_config {{ protocol = {{ custom_lua = {{ constructor = 'make.webhook', batch_size = 100 }} }} }}
  end
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }}
end)
"#,
        opened = opened.display(),
        url = webhook.url(),
        port = sink.port()
    );
    let node = FerryNode::start("", Some(&policy));
    let mut c = RawSmtp::connect(node.smtp);
    for n in 0..40 {
        queued_id(&c.send_message(
            "s@example.com",
            &[&format!("r{n}@example.com")],
            "Subject: b\r\n\r\nx\r\n",
        ));
    }
    wait_until("40 events at the webhook", Duration::from_secs(30), || {
        (webhook.events().len() >= 40).then_some(())
    });
    assert_eq!(webhook.events().len(), 40, "each event once");
    let connections = std::fs::read_to_string(&opened).unwrap().lines().count();
    assert_eq!(connections, 1, "one connection took every batch ({} requests)", webhook.requests());
}

/// A hook message stores its record once, as its body; the policy and inspect-message still see
/// it as the `log_record` meta, as in KumoMTA.
#[test]
fn a_waiting_hook_message_shows_its_record_as_meta() {
    let sink = SmtpSink::start();
    let policy = format!(
        r#"
kumo.on('init', function() kumo.configure_log_hook {{ name = 'h', per_record = {{ Delivery = {{ enable = true }}, Any = {{ enable = false }} }} }} end)
kumo.on('should_enqueue_log_record', function(msg)
  assert(msg:get_meta('log_record').type == 'Delivery')
  msg:set_meta('queue', 'webhook')
  return true
end)
kumo.on('make.webhook', function()
  local connection = {{}}
  function connection:send(message) kumo.reject(451, 'webhook down') end
  return connection
end)
kumo.on('get_queue_config', function(domain)
  if domain == 'webhook' then
    return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ custom_lua = {{ constructor = 'make.webhook' }} }} }}
  end
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }}
end)
"#,
        port = sink.port()
    );
    let node = FerryNode::start("", Some(&policy));
    let mut c = RawSmtp::connect(node.smtp);
    let original =
        queued_id(&c.send_message("s@example.com", &["ok@example.com"], "Subject: m\r\n\r\nx\r\n"));
    let deferred = wait_until("the hook message deferred", Duration::from_secs(20), || {
        node.records().into_iter().find(|r| r["type"] == "TransientFailure" && r["queue"] == "webhook")
    });
    let id = deferred["id"].as_str().unwrap();
    let (status, text) = get(node.http, &format!("/api/admin/inspect-message/v1?id={id}"), &[]);
    assert_eq!(status, 200, "{text}");
    let inspected: Value = serde_json::from_str(&text).unwrap();
    let meta = &inspected["message"]["meta"];
    assert_eq!(meta["reception_protocol"], "LogRecord", "{meta}");
    assert_eq!(meta["log_record"]["type"], "Delivery", "{meta}");
    assert_eq!(meta["log_record"]["id"], original.as_str(), "the record of the original message: {meta}");
}

/// Outcomes to a webhook in batches of up to 100, as KumoMTA's batched hook example does: the
/// webhook queue retries every second, mail to the sink once an hour.
fn webhook_policy(sink: &SmtpSink, webhook: &Webhook) -> String {
    format!(
        r#"
kumo.on('init', function()
  kumo.configure_log_hook {{
    name = 'webhook',
    per_record = {{ Delivery = {{ enable = true }}, Bounce = {{ enable = true }}, TransientFailure = {{ enable = true }}, Any = {{ enable = false }} }},
  }}
end)
kumo.on('should_enqueue_log_record', function(msg, hook_name)
  if msg:get_meta('log_record').queue == 'webhook' then return false end
  msg:set_meta('queue', 'webhook')
  return true
end)
kumo.on('make.webhook', function(domain, tenant, campaign)
  local connection = {{}}
  local client = kumo.http.build_client {{ timeout = '10s' }}
  function connection:send_batch(messages)
    local payload = {{}}
    for _, msg in ipairs(messages) do table.insert(payload, msg:get_meta('log_record')) end
    local response = client:post('{url}'):header('Content-Type', 'application/json')
      :body(kumo.serde.json_encode(payload)):send()
    local disposition = string.format('%d %s: %s', response:status_code(), response:status_reason(), response:text())
    if response:status_is_success() then return disposition end
    kumo.reject(400, disposition)
  end
  return connection
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'webhook' then
    return kumo.make_queue_config {{ retry_interval = '1s', max_retry_interval = '2s',
      protocol = {{ custom_lua = {{ constructor = 'make.webhook', batch_size = 100 }} }} }}
  end
  return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }}
end)
"#,
        url = webhook.url(),
        port = sink.port()
    )
}

/// Message `n`'s recipient: seven in ten delivered, two bounced (550), one deferred (450).
fn recipient(n: usize) -> (String, &'static str) {
    match n % 10 {
        7 | 8 => (format!("550-{n}@example.com"), "Bounce"),
        9 => (format!("450-{n}@example.com"), "TransientFailure"),
        _ => (format!("ok{n}@example.com"), "Delivery"),
    }
}

fn send_range(node: &FerryNode, range: std::ops::Range<usize>) -> Vec<(String, String, &'static str)> {
    let mut c = RawSmtp::connect(node.smtp);
    range
        .map(|n| {
            let (rcpt, outcome) = recipient(n);
            let id = queued_id(&c.send_message("s@example.com", &[rcpt.as_str()], "Subject: e\r\n\r\nx\r\n"));
            (id, rcpt, outcome)
        })
        .collect()
}

fn key(e: &Value) -> (String, String, String) {
    (
        e["id"].as_str().unwrap_or("").into(),
        e["type"].as_str().unwrap_or("").into(),
        e["event_time"].as_str().unwrap_or("").into(),
    )
}

#[test]
fn a_thousand_outcomes_reach_the_webhook_across_a_kill_9() {
    let sink = SmtpSink::start();
    let webhook = Webhook::start();
    let mut node = FerryNode::start("", Some(&webhook_policy(&sink, &webhook)));
    let mut sent = send_range(&node, 0..500);
    // Kill while outcomes and their events are in flight.
    wait_until("the first events at the webhook", Duration::from_secs(30), || {
        (webhook.events().len() >= 50).then_some(())
    });
    node.kill9();
    node.restart();
    sent.extend(send_range(&node, 500..1000));

    let expected: std::collections::HashMap<String, &str> =
        sent.iter().map(|(id, _, o)| (id.clone(), *o)).collect();
    let by_id = wait_until("every message's outcome at the webhook", Duration::from_secs(90), || {
        let mut by_id: std::collections::HashMap<String, Vec<Value>> = std::collections::HashMap::new();
        for e in webhook.events() {
            by_id.entry(e["id"].as_str().unwrap_or("").to_string()).or_default().push(e);
        }
        expected
            .iter()
            .all(|(id, outcome)| by_id.get(id).is_some_and(|evs| evs.iter().any(|e| e["type"] == *outcome)))
            .then_some(by_id)
    });

    // No event the node did not log: each one is a record of its log, field for field.
    let logged: std::collections::HashMap<(String, String, String), Value> =
        node.records().into_iter().map(|r| (key(&r), r)).collect();
    let events = webhook.events();
    for e in &events {
        let record = logged.get(&key(e)).unwrap_or_else(|| panic!("an event the node never logged: {e}"));
        assert_eq!(record["response"], e["response"], "{e}");
        assert_eq!(record["bounce_classification"], e["bounce_classification"], "{e}");
    }
    // Each delivery reported happened at the sink, and each delivered message is reported.
    let delivered_at_sink: std::collections::HashMap<String, usize> =
        sink.messages().iter().fold(std::collections::HashMap::new(), |mut m, msg| {
            *m.entry(msg.rcpt_to[0].clone()).or_default() += 1;
            m
        });
    for (id, rcpt, outcome) in &sent {
        let deliveries: std::collections::HashSet<_> =
            by_id[id].iter().filter(|e| e["type"] == "Delivery").map(key).collect();
        if *outcome == "Delivery" {
            let at_sink = delivered_at_sink.get(rcpt).copied().unwrap_or(0);
            assert!(
                !deliveries.is_empty() && deliveries.len() <= at_sink,
                "{id} {rcpt}: {} reported, {at_sink} at the sink",
                deliveries.len()
            );
        } else {
            assert!(deliveries.is_empty(), "{id} {rcpt} was never delivered");
        }
    }
    // A repeat (a batch POSTed again after the kill) is the same event, not a new one.
    let distinct: std::collections::HashSet<_> = events.iter().map(key).collect();
    assert!(events.len() - distinct.len() <= 200, "{} repeats", events.len() - distinct.len());
    assert!(
        node.records().iter().all(|r| r["type"] != "Bounce" || r["queue"] != "webhook"),
        "no webhook batch bounced"
    );
}

#[test]
fn a_webhook_answering_500_gets_its_events_later() {
    let sink = SmtpSink::start();
    let webhook = Webhook::failing_first(3);
    let node = FerryNode::start("", Some(&webhook_policy(&sink, &webhook)));
    let sent = send_range(&node, 0..20);
    wait_until("all 20 outcomes at the webhook", Duration::from_secs(60), || {
        let got: std::collections::HashSet<String> =
            webhook.events().iter().map(|e| e["id"].as_str().unwrap_or("").to_string()).collect();
        sent.iter().all(|(id, _, _)| got.contains(id)).then_some(())
    });
    assert!(webhook.requests() > 3, "the failed requests were retried");
    let deferred = node
        .records()
        .into_iter()
        .filter(|r| r["type"] == "TransientFailure" && r["queue"] == "webhook")
        .count();
    assert!(deferred >= 1, "a 500 from the webhook defers the hook messages");
}
