//! Egress sources and pools (issue #13 item 2): a queue's `egress_pool` picks the pool, each
//! message takes a source by weighted round robin, and its connection binds the source's address
//! and EHLOs with the source's name. Every 127.0.0.0/8 address is local, so sources are
//! 127.0.0.2, 127.0.0.3, … and the sink sees which one each message came from.

use std::collections::HashMap;

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

/// A policy with two sources weighted 3:1 in pool `warm` (or `pool_extra` entries instead), and a
/// queue config that sends to `sink` from that pool.
fn policy(sink_addr: &str, sources: &str, entries: &str) -> String {
    format!(
        r#"
local SOURCES = {{ {sources} }}
kumo.on('get_egress_source', function(name)
  local s = SOURCES[name]
  return kumo.make_egress_source {{ name = name, source_address = s[1], ehlo_domain = s[2] }}
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {{ name = name, entries = {{ {entries} }} }}
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ egress_pool = 'warm', retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '{sink_addr}' }} }} }} }}
end)
"#
    )
}

const TWO_SOURCES: &str =
    "['ip-1'] = { '127.0.0.2', 'mta1.ferry.test' }, ['ip-2'] = { '127.0.0.3', 'mta2.ferry.test' }";

fn send_many(node: &FerryNode, n: usize) -> Vec<String> {
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    (0..n)
        .map(|i| {
            let r = c.transaction(
                "s@example.com",
                &[&format!("r{i}@example.com")],
                "Subject: egress\r\n\r\nx\r\n",
            );
            assert_eq!(r.code, 250, "{r:?}");
            queued_id(&r)
        })
        .collect()
}

#[test]
fn a_weighted_pool_spreads_messages_over_its_sources_and_each_binds_and_ehlos_as_itself() {
    let sink = SmtpSink::start();
    let entries = "{ name = 'ip-1', weight = 3 }, { name = 'ip-2', weight = 1 }";
    let node =
        FerryNode::start("", Some(&policy(&format!("[127.0.0.1]:{}", sink.port()), TWO_SOURCES, entries)));
    let ids = send_many(&node, 400);
    let messages = sink.wait_messages(400);
    let mut by_ip: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        let ip = m.peer.rsplit_once(':').map(|(ip, _)| ip.to_string()).unwrap_or_default();
        let want_helo = match ip.as_str() {
            "127.0.0.2" => "mta1.ferry.test",
            "127.0.0.3" => "mta2.ferry.test",
            other => panic!("a message came from {other}, not from a source of the pool"),
        };
        assert_eq!(m.helo, want_helo, "the connection from {ip} EHLOs as its source");
        *by_ip.entry(ip).or_default() += 1;
    }
    let (a, b) = (by_ip["127.0.0.2"] as f64, by_ip["127.0.0.3"] as f64);
    assert!((270.0..=330.0).contains(&a) && (70.0..=130.0).contains(&b), "3:1 ±10 %: {by_ip:?}");
    // Records name the pool, the source and the local address the connection really had.
    let deliveries: Vec<Value> = node.wait_records("Delivery", 400);
    for d in &deliveries {
        assert_eq!(d["egress_pool"], "warm", "{d}");
        let source = d["egress_source"].as_str().unwrap();
        let want_ip = if source == "ip-1" { "127.0.0.2:" } else { "127.0.0.3:" };
        assert!(d["source_address"]["address"].as_str().unwrap().starts_with(want_ip), "{d}");
        assert!(
            d["site"].as_str().unwrap().starts_with(&format!("{source}->")),
            "ready queue per source: {d}"
        );
    }
    assert_eq!(deliveries.len(), ids.len());
}

#[test]
fn a_source_address_not_on_this_host_fails_with_a_clear_transient_failure() {
    let sink = SmtpSink::start();
    // 192.0.2.0/24 is TEST-NET-1: never assigned to this host, so the bind fails locally.
    let sources = "['far'] = { '192.0.2.1', 'far.ferry.test' }";
    let node = FerryNode::start(
        "",
        Some(&policy(&format!("[127.0.0.1]:{}", sink.port()), sources, "{ name = 'far' }")),
    );
    let id = send_many(&node, 1).remove(0);
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let content = records[1]["response"]["content"].as_str().unwrap();
    assert!(content.contains("cannot bind source address 192.0.2.1"), "{content}");
    assert_eq!(records[1]["egress_source"], "far");
    assert_eq!(sink.count(), 0);
}

#[test]
fn an_ipv6_source_binds_its_address() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let sink = SmtpSink::start_on("[::1]:0");
    let sources = "['v6'] = { '::1', 'v6.ferry.test' }";
    let node = FerryNode::start(
        "",
        Some(&policy(&format!("[IPv6:::1]:{}", sink.port()), sources, "{ name = 'v6' }")),
    );
    let id = send_many(&node, 1).remove(0);
    let records = node.wait_sequence(&id, &["Reception", "Delivery"]);
    assert!(
        records[1]["source_address"]["address"].as_str().unwrap().starts_with("[::1]:"),
        "{}",
        records[1]
    );
    assert_eq!(sink.wait_messages(1)[0].helo, "v6.ferry.test");
}

#[test]
fn a_bad_pool_definition_is_a_transient_failure_naming_the_key() {
    let sink = SmtpSink::start();
    let node = FerryNode::start(
        "",
        Some(&policy(&format!("[127.0.0.1]:{}", sink.port()), TWO_SOURCES, "{ name = 'ip-1', weight = -3 }")),
    );
    let id = send_many(&node, 1).remove(0);
    let records = node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    let content = records[1]["response"]["content"].as_str().unwrap();
    assert!(content.contains("egress pool \"warm\"") && content.contains("entries[1].weight"), "{content}");
    assert!(node.stderr().contains("egress pool could not be resolved"), "{}", node.stderr());
}
