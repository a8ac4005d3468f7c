//! Ready queues in the metrics and the views (issue #13, items 4 and 6): per ready queue
//! `ready_count`, `connection_count`, `total_messages_delivered`, `total_messages_transfail` and
//! `total_messages_fail` under KumoMTA's `service="smtp_client:<ready queue>"` label, read the way
//! `kcli queue-summary` reads them; and `ferry top` and the dashboard listing ready queues under
//! their egress source with their path's limits and rates.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_integration_tests::browser::dump_dom;
use ferry_integration_tests::http::get;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// Sources `ip-1` (127.0.0.2) and `ip-2` (127.0.0.3); pool `warm` holds `pool` entries; all mail
/// goes to `sink` through that pool, with `path` as the body of `kumo.make_egress_path{...}`.
fn policy(sink: &SmtpSink, pool: &str, path: &str) -> String {
    format!(
        r#"
local ADDRESSES = {{ ['ip-1'] = '127.0.0.2', ['ip-2'] = '127.0.0.3' }}
kumo.on('get_egress_source', function(name)
  return kumo.make_egress_source {{ name = name, source_address = ADDRESSES[name] }}
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {{ name = name, entries = {{ {pool} }} }}
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ egress_pool = 'warm', retry_interval = '1h', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ {path} }}
end)
"#,
        sink.port()
    )
}

/// One message per recipient, pipelined over one SMTP session.
fn send(node: &FerryNode, recipients: &[String]) {
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    for rcpt in recipients {
        let r = c.transaction("s@example.com", &[rcpt], "Subject: rq\r\n\r\nx\r\n");
        assert_eq!(r.code, 250, "{r:?}");
    }
}

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The Prometheus text format as Ferry writes it (no escapes needed by these tests).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                None => (head, BTreeMap::new()),
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
            };
            (name.to_string(), labels, value.parse().unwrap())
        })
        .collect()
}

/// What `kcli queue-summary` takes from `/metrics`: for `connection_count`,
/// `total_messages_delivered`, `total_messages_transfail` and `ready_count`, every `service`
/// label split at its first `:` into protocol and ready queue name, summed by queue name into
/// (D, T, C, Q). Labels without a `:` (the per-protocol sums) are not ready queues.
fn kcli_queue_summary(samples: &[Sample]) -> BTreeMap<String, [u64; 4]> {
    let mut ready: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for (name, labels, value) in samples {
        let column = match name.as_str() {
            "total_messages_delivered" => 0,
            "total_messages_transfail" => 1,
            "connection_count" => 2,
            "ready_count" => 3,
            _ => continue,
        };
        let Some((_protocol, queue)) = labels.get("service").and_then(|s| s.split_once(':')) else {
            continue;
        };
        ready.entry(queue.to_string()).or_default()[column] += *value as u64;
    }
    ready
}

fn value(samples: &[Sample], name: &str, service: Option<&str>) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| n == name && labels.get("service").map(String::as_str) == service)
        .map(|(.., v)| *v)
}

#[test]
fn per_ready_queue_counters_carry_kumomta_names_and_read_like_kcli_queue_summary() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&policy(&sink, "{ name = 'ip-1' }", "connection_limit = 3")));
    let mut rcpts: Vec<String> = (0..4).map(|i| format!("ok{i}@example.com")).collect();
    rcpts.extend([
        "tempfail@example.com".into(),
        "tempfail@example.com".into(),
        "permfail@example.com".into(),
    ]);
    send(&node, &rcpts);
    node.wait_records("Delivery", 4);
    node.wait_records("TransientFailure", 2);
    node.wait_records("Bounce", 1);

    let (status, text) = get(node.http, "/metrics", &[]);
    assert_eq!(status, 200);
    let all = samples(&text);
    let queue = format!("ip-1->mx_list:[127.0.0.1]:{}@smtp_client", sink.port());
    let service = format!("smtp_client:{queue}");

    // kcli's reading: the ready queue of source ip-1 with its D and T (and C, Q once idle).
    let summary = kcli_queue_summary(&all);
    assert_eq!(summary.keys().collect::<Vec<_>>(), [&queue], "{text}");
    let [d, t, c, q] = summary[&queue];
    assert_eq!((d, t, q), (4, 2, 0), "{text}");
    assert!(c <= 3, "connection_count within connection_limit: {c}");
    assert_eq!(value(&all, "total_messages_fail", Some(&service)), Some(1.0), "{text}");

    // KumoMTA's per-protocol sums, and Ferry's node-wide record counts in the same families.
    for (name, n) in
        [("total_messages_delivered", 4.0), ("total_messages_transfail", 2.0), ("total_messages_fail", 1.0)]
    {
        assert_eq!(value(&all, name, Some("smtp_client")), Some(n), "{name}: {text}");
    }
    assert_eq!(value(&all, "total_messages_delivered", None), Some(4.0));
    assert_eq!(value(&all, "total_messages_transfail", None), Some(2.0));
    assert_eq!(value(&all, "ready_count", Some("smtp_client")), Some(0.0));
    assert_eq!(value(&all, "connection_count", Some("smtp_client")), Some(c as f64));

    // Each family is one block under one TYPE line, as the text format requires.
    let lines: Vec<&str> = text.lines().collect();
    for family in [
        "total_messages_delivered",
        "total_messages_transfail",
        "total_messages_fail",
        "ready_count",
        "connection_count",
    ] {
        let type_line = format!("# TYPE {family} ");
        assert_eq!(lines.iter().filter(|l| l.starts_with(&type_line)).count(), 1, "{family}: {text}");
        let at = lines.iter().position(|l| l.starts_with(&type_line)).unwrap();
        let is_sample =
            |l: &str| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} "));
        let block = lines[at + 1..].iter().take_while(|l| is_sample(l)).count();
        assert_eq!(block, lines.iter().filter(|l| is_sample(l)).count(), "{family} is contiguous: {text}");
    }

    // `ferry queue-summary` shows the same numbers in kcli's columns.
    let human = node.cli(&["queue-summary"]);
    let site = format!("mx_list:[127.0.0.1]:{}", sink.port());
    let row: Vec<&str> = human
        .lines()
        .find(|l| l.starts_with(&site))
        .unwrap_or_else(|| panic!("{human}"))
        .split_whitespace()
        .collect();
    let expected = [site.as_str(), "ip-1", "smtp_client", "4", "2", "1", &c.to_string(), "0"];
    assert_eq!(row, expected, "SITE SOURCE PROTO D T F C Q: {human}");
    let json: Value = serde_json::from_str(&node.cli(&["--json", "queue-summary"])).unwrap();
    let ready = &json["ready"][0];
    assert_eq!(
        (&ready["name"], &ready["delivered"], &ready["transfail"], &ready["fail"]),
        (&Value::from(queue), &4.into(), &2.into(), &1.into())
    );
}

/// The cells of the `ferry top` row for `site` in the table under `source <source>`.
fn top_row(frame: &str, source: &str, site: &str) -> Vec<String> {
    let section = frame.split(&format!("source {source}\n")).nth(1).unwrap_or_else(|| panic!("{frame}"));
    let section = section.split("\nsource ").next().unwrap();
    let row = section
        .lines()
        .find(|l| l.starts_with(site))
        .unwrap_or_else(|| panic!("{site} under {source}: {frame}"));
    row.split_whitespace().map(str::to_string).collect()
}

/// The text of the cell with `class` in the dashboard row of ready queue `name`, which must come
/// under the group row of its source.
fn dashboard_cell(dom: &str, source: &str, name: &str, class: &str) -> String {
    let group = dom.split(&format!("data-source=\"{source}\"")).nth(1).unwrap_or_else(|| panic!("{dom}"));
    let group = group.split("data-source=").next().unwrap();
    // Chromium's serializer may or may not escape `>` in attribute values.
    let row = [name.to_string(), name.replace('>', "&gt;")]
        .iter()
        .find_map(|n| group.split(&format!("data-ready-queue=\"{n}\"")).nth(1))
        .unwrap_or_else(|| panic!("{name}: {dom}"));
    let row = row.split("</tr>").next().unwrap();
    let cell = row.split(&format!("class=\"n {class}\">")).nth(1).unwrap_or_else(|| panic!("{class}: {row}"));
    cell.split('<').next().unwrap().to_string()
}

#[test]
fn top_and_the_dashboard_show_ready_queues_under_their_source_with_limits_and_rates() {
    let sink = SmtpSink::start();
    let pool = "{ name = 'ip-1', weight = 1 }, { name = 'ip-2', weight = 1 }";
    // Each source's path has its own connection limit, so the views must show the queue's own.
    let path = "connection_limit = (egress_source == 'ip-1') and 2 or 3, max_message_rate = '20/s', max_ready = 1000";
    let node = FerryNode::start("", Some(&policy(&sink, pool, path)));
    // 150 messages per source at 20/s: deliveries go on for about 7 s.
    send(&node, &(0..300).map(|i| format!("r{i}@example.com")).collect::<Vec<_>>());
    let site = format!("mx_list:[127.0.0.1]:{}", sink.port());

    let actors: Value = wait_until("both ready queues delivering", Duration::from_secs(20), || {
        let (_, body) = get(node.http, "/api/admin/actors/v1", &[]);
        let v: Value = serde_json::from_str(&body).ok()?;
        let queues = v["ready_queues"].as_array()?;
        let live =
            queues.iter().filter(|q| !q["limits"].is_null() && q["counts"]["delivered"].as_u64() > Some(0));
        (live.count() == 2).then_some(v)
    });
    let first = &actors["ready_queues"][0];
    assert_eq!(
        (&first["source"], &first["site"]),
        (&Value::from("ip-1"), &Value::from(format!("{site}@smtp_client")))
    );
    assert_eq!(first["limits"]["connection_limit"], 2);
    assert_eq!(actors["ready_queues"][1]["limits"]["connection_limit"], 3);

    let frame = node.cli(&["top", "--once"]);
    for (source, limit) in [("ip-1", "2"), ("ip-2", "3")] {
        // SITE READY CONN LIMIT MSG RATE  MAX READY  DELIVERED/s TRANSFAIL/s FAIL/s
        let row = top_row(&frame, source, &site);
        assert_eq!(row.len(), 9, "{frame}");
        assert_eq!((row[3].as_str(), row[4].as_str(), row[5].as_str()), (limit, "20/s", "1000"), "{frame}");
        let delivered: f64 = row[6].parse().unwrap_or_else(|_| panic!("a rate: {frame}"));
        assert!((5.0..=40.0).contains(&delivered), "about 20/s from {source}: {frame}");
        assert_eq!((row[7].as_str(), row[8].as_str()), ("0.0", "0.0"), "{frame}");
    }

    let url = format!("http://{}/", node.http);
    let dom = dump_dom(&url, Duration::from_secs(3));
    for (source, limit) in [("ip-1", "2"), ("ip-2", "3")] {
        let name = format!("{source}->{site}@smtp_client");
        assert_eq!(dashboard_cell(&dom, source, &name, "connection-limit"), limit, "{dom}");
        assert_eq!(dashboard_cell(&dom, source, &name, "message-rate"), "20/s");
        assert_eq!(dashboard_cell(&dom, source, &name, "max-ready"), "1000");
    }
    sink.wait_messages(300);
}
