//! Egress paths (issue #13 item 3): `get_egress_path_config` shapes each ready queue —
//! connection limit, deliveries per connection, message rate, max_ready, prohibited hosts, idle
//! connections — and a bad config is a clear error.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// All mail to `sink`, with `path` as the body of `kumo.make_egress_path{...}`.
fn policy(sink: &SmtpSink, path: &str) -> String {
    format!(
        r#"
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ {path} }}
end)
"#,
        sink.port()
    )
}

/// `n` messages, pipelined over one SMTP session, each to its own recipient.
fn send_many(node: &FerryNode, n: usize) -> Vec<String> {
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    (0..n)
        .map(|i| {
            let r =
                c.transaction("s@example.com", &[&format!("r{i}@example.com")], "Subject: path\r\n\r\nx\r\n");
            assert_eq!(r.code, 250, "{r:?}");
            queued_id(&r)
        })
        .collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    v["event_time"].as_str().unwrap().parse().unwrap()
}

#[test]
fn connection_limit_and_deliveries_per_connection_shape_the_connections() {
    let sink = SmtpSink::start();
    let node = FerryNode::start(
        "",
        Some(&policy(&sink, "connection_limit = 2, max_deliveries_per_connection = 10")),
    );
    send_many(&node, 100);
    sink.wait_messages(100);
    assert!(sink.max_open_connections() <= 2, "at most 2 at once: {}", sink.max_open_connections());
    assert!(sink.connections() >= 10, "10 deliveries per connection: {} connections", sink.connections());
}

#[test]
fn max_message_rate_spaces_deliveries() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&policy(&sink, "max_message_rate = '50/s'")));
    send_many(&node, 200);
    let deliveries = node.wait_records("Delivery", 200);
    let first = deliveries.iter().map(time).min().unwrap();
    let last = deliveries.iter().map(time).max().unwrap();
    let took = (last - first).as_seconds_f64();
    assert!(took >= 3.5, "200 messages at 50/s took {took:.2}s");
}

#[test]
fn max_ready_overflow_goes_back_to_the_scheduled_queue() {
    let sink = SmtpSink::start();
    let node = FerryNode::start(
        "",
        Some(&policy(&sink, "max_ready = 3, connection_limit = 1, max_message_rate = '2/s'")),
    );
    let ids = send_many(&node, 12);
    let delayed = wait_until("ReadyQueueWasFull delays", Duration::from_secs(30), || {
        let d: Vec<Value> = node
            .records()
            .into_iter()
            .filter(|r| {
                r["type"] == "Delayed"
                    && r["response"]["content"].as_str().unwrap_or("").contains("ReadyQueueWasFull")
            })
            .collect();
        (!d.is_empty()).then_some(d)
    });
    assert!(delayed.iter().all(|r| r["num_attempts"] == 0), "no attempt counted: {delayed:?}");
    // Nothing is lost: each overflowed message waits in its scheduled queue (due again within a
    // minute), every other one is delivered.
    let overflowed: std::collections::HashSet<&str> =
        delayed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    sink.wait_messages(ids.len() - overflowed.len());
    let spooled = node.spool_ids();
    for id in &ids {
        let delivered = node.records_for(id).iter().any(|r| r["type"] == "Delivery");
        assert!(delivered || spooled.contains(id), "{id} neither delivered nor spooled");
    }
}

/// The due time an overflowed message is given is an estimate (the ready queue's drain rate), and
/// a stalled delivery makes it a poor one; once the ready queue has room again, the messages it
/// sent back are promoted at once. A stalled delivery (1.5 s) fills `max_ready`; after it, at
/// least one overflowed message is delivered before the due time its Delayed record names
/// (without the room signal none can be: promotion would wait for the due time).
#[test]
fn overflowed_messages_come_back_when_the_ready_queue_has_room() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&policy(&sink, "max_ready = 4, connection_limit = 1")));
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let mut ids =
        vec![queued_id(&c.transaction("s@example.com", &["slow@example.com"], "Subject: s\r\n\r\nx\r\n"))];
    ids.extend(send_many(&node, 20));
    sink.wait_messages(ids.len());
    let records = node.records();
    let due_of = |r: &Value| -> Option<DateTime<Utc>> {
        let content = r["response"]["content"].as_str()?;
        content.contains("ReadyQueueWasFull").then_some(())?;
        content.rsplit_once(" at ")?.1.parse().ok()
    };
    let mut early = Vec::new();
    for id in &ids {
        let mine: Vec<&Value> = records.iter().filter(|r| r["id"] == id.as_str()).collect();
        let Some(due) = mine.iter().filter(|r| r["type"] == "Delayed").filter_map(|r| due_of(r)).max() else {
            continue;
        };
        let delivered = mine.iter().find(|r| r["type"] == "Delivery").map(|r| time(r)).expect("delivered");
        if delivered + chrono::TimeDelta::milliseconds(200) < due {
            early.push((id.clone(), due - delivered));
        }
    }
    assert!(!early.is_empty(), "no overflowed message came back before its estimated due time");
}

#[test]
fn prohibited_hosts_refuse_a_destination_with_a_clear_transient_failure() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&policy(&sink, "prohibited_hosts = { '127.0.0.0/8' }")));
    let id = send_many(&node, 1).remove(0);
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let content = records[1]["response"]["content"].as_str().unwrap();
    assert!(content.contains("prohibited_hosts") && content.contains("127.0.0.1"), "{content}");
    assert_eq!(sink.connections(), 0);
}

#[test]
fn an_unknown_egress_path_key_is_an_error_naming_it_and_its_line() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&policy(&sink, "conection_limit = 2")));
    let id = send_many(&node, 1).remove(0);
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let content = records[1]["response"]["content"].as_str().unwrap();
    assert!(content.contains("conection_limit") && content.contains("policy.lua:6"), "{content}");
    assert_eq!(sink.connections(), 0);
}

#[test]
fn an_idle_connection_is_reused_then_closed_after_idle_timeout() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&policy(&sink, "idle_timeout = '2s'")));
    let first = send_many(&node, 1).remove(0);
    node.wait_sequence(&first, &["Reception", "Delivery"]);
    // The connection idles, open, waiting for more.
    assert_eq!(sink.open_connections(), 1);
    let second = send_many(&node, 1).remove(0);
    node.wait_sequence(&second, &["Reception", "Delivery"]);
    assert_eq!(sink.connections(), 1, "the idle connection carried the second message");
    wait_until("the idle connection to close", Duration::from_secs(10), || {
        (sink.open_connections() == 0).then_some(())
    });
}
