//! Observing the actors: `GET /metrics`, `GET /api/admin/actors/v1`, `ferry queue-summary` and
//! `ferry top --once`.

use std::process::Command;

use ferry_integration_tests::http::get_with_head;
use ferry_integration_tests::node::ferry_bin;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

/// Delivers everything to the sink, except `held.example`, which is suspended by the tests, and
/// messages carrying an X-Schedule header, which wait.
fn node(sink: &SmtpSink) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    );
    FerryNode::start("", Some(&policy))
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start) && l[line_start.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn metrics_count_records_and_stream_every_queue_once() {
    let sink = SmtpSink::start();
    let node = node(&sink);
    node.cli(&["suspend", "--domain", "held.example", "--reason", "hold"]);
    let mut c = RawSmtp::connect(node.smtp);
    for i in 0..3 {
        queued_id(&c.send_message(
            "s@example.com",
            &[&format!("r{i}@example.com")],
            "Subject: x\r\n\r\nbody\r\n",
        ));
    }
    let held = queued_id(&c.send_message("s@example.com", &["r@held.example"], "Subject: x\r\n\r\nbody\r\n"));
    sink.wait_messages(3);
    node.wait_sequence(&held, &["Reception", "TransientFailure"]);

    // 2,500 more queues, each with one message held back: more than two chunks of the stream.
    let out = Command::new(ferry_bin())
        .args(["bench-smtp", "--target", &node.smtp.to_string(), "--messages", "2500", "--domains", "2500"])
        .args(["--concurrency", "10", "--size", "300", "--domain", "bulk.example"])
        .args([
            "--header",
            r#"X-Schedule: {"first_attempt":"2099-01-01T00:00:00Z","expires":"2099-01-02T00:00:00Z"}"#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = ferry_integration_tests::wait_until(
        "2,502 scheduled queues",
        std::time::Duration::from_secs(30),
        || {
            let (status, head, body) = get_with_head(node.http, "/metrics");
            assert_eq!(status, 200);
            assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "streamed: {head}");
            (body.lines().filter(|l| l.starts_with("scheduled_count{")).count() >= 2501).then_some(body)
        },
    );
    assert_eq!(metric(&text, "total_messages_received"), Some(2504.0));
    assert_eq!(metric(&text, "total_messages_delivered"), Some(3.0));
    assert_eq!(metric(&text, "total_messages_transfail"), Some(1.0));
    assert_eq!(metric(&text, "scheduled_count{queue=\"held.example\"}"), Some(1.0));
    assert!(metric(&text, "spool_commit_seconds_count").unwrap() > 0.0);
    let queues: Vec<&str> = text.lines().filter(|l| l.starts_with("scheduled_count{")).collect();
    let mut sorted = queues.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), queues.len(), "no queue repeated across chunk boundaries");
    assert_eq!(queues.iter().filter(|l| l.contains("bulk.example")).count(), 2500, "none missing");
    assert_eq!(text.matches("# TYPE scheduled_count gauge").count(), 1);

    // The actors view: the largest queues with their next due time, and the other actors.
    let (status, _, body) = get_with_head(node.http, "/api/admin/actors/v1?limit=3");
    assert_eq!(status, 200);
    let actors: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(actors["scheduled_queues"]["shown"], 3);
    assert!(actors["scheduled_queues"]["total"].as_u64().unwrap() >= 2501);
    let first = &actors["scheduled_queues"]["largest"][0];
    assert_eq!(first["waiting"], 1);
    assert!(first["next_due"].as_str().unwrap().starts_with("20"), "{first}");
    assert!(first["config"]["retry_interval"].is_string());
    assert!(actors["policy"]["states"].as_u64().unwrap() >= 1);
    assert!(actors["policy"]["calls"].as_u64().unwrap() > 0);
    assert!(actors["spool_writer"]["commits"].as_u64().unwrap() > 0);
    assert_eq!(actors["totals"]["total_messages_delivered"], 3);
    let (status, _, body) = get_with_head(node.http, "/api/admin/actors/v1?limit=x");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn queue_summary_and_top_render_for_people_and_scripts() {
    let sink = SmtpSink::start();
    let node = node(&sink);
    node.cli(&["suspend", "--domain", "held.example", "--reason", "maintenance window"]);
    let mut c = RawSmtp::connect(node.smtp);
    for rcpt in ["a@held.example", "b@held.example"] {
        let id = queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: x\r\n\r\nbody\r\n"));
        node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    }
    let human = node.cli(&["queue-summary"]);
    assert!(human.contains("SCHEDULED QUEUE"), "{human}");
    let row = human.lines().find(|l| l.starts_with("held.example")).unwrap_or_else(|| panic!("{human}"));
    assert_eq!(row.split_whitespace().last(), Some("2"), "{human}");
    assert!(human.contains("transfail 2"), "{human}");
    assert!(human.contains("suspended: domain=held.example (maintenance window)"), "{human}");
    let json: Value =
        serde_json::from_str(&node.cli(&["--json", "queue-summary", "--domain", "held.example"])).unwrap();
    assert_eq!(json["scheduled"], serde_json::json!([{"queue": "held.example", "count": 2}]));
    assert_eq!(json["totals"]["total_messages_transfail"], 2);
    let none: Value =
        serde_json::from_str(&node.cli(&["--json", "queue-summary", "--domain", "other.example"])).unwrap();
    assert_eq!(none["scheduled"], serde_json::json!([]));

    let frame = node.cli(&["top", "--once"]);
    assert!(frame.starts_with("ferry top"), "{frame}");
    assert!(frame.contains("transfail 2"), "{frame}");
    let queue_row =
        frame.lines().find(|l| l.starts_with("held.example")).unwrap_or_else(|| panic!("{frame}"));
    assert!(queue_row.contains(" 2 "), "{frame}");
    assert!(frame.contains("XFER TARGET") && frame.contains("DISPATCHER"), "{frame}");
    // The two receptions and failures are in the history: their rows' sparklines rise off the floor.
    for series in ["received/s", "transient/s", "queue_depth"] {
        let row =
            frame.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series}: {frame}"));
        assert!(row.chars().any(|c| "▂▃▄▅▆▇█".contains(c)), "{series} shows activity: {frame}");
    }
    let bounced = frame.lines().find(|l| l.starts_with("bounced/s")).unwrap_or_else(|| panic!("{frame}"));
    assert!(!bounced.chars().any(|c| "▂▃▄▅▆▇█".contains(c)), "no bounces, a flat line: {frame}");
    assert!(!frame.contains('\x1b'), "--once draws no screen control");
}

/// The OpenAPI description is built from the registered handlers: every SPEC endpoint is in it,
/// and every path in it answers (a bad or empty request gets 400, never 404 or 405).
#[test]
fn openapi_describes_every_endpoint_and_each_described_endpoint_exists() {
    let sink = SmtpSink::start();
    let node = node(&sink);
    let (status, _, body) = get_with_head(node.http, "/api-docs/openapi.json");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/check-liveness/v1", "get"),
        ("/api/admin/suspend/v1", "post"),
        ("/api/admin/suspend/v1", "get"),
        ("/api/admin/suspend/v1", "delete"),
        ("/api/admin/inspect-sched-q/v1", "get"),
        ("/api/admin/xfer/v1", "post"),
        ("/api/admin/xfer/cancel/v1", "post"),
        ("/api/admin/xfer/status/v1", "get"),
        ("/api/admin/bounce/v1", "post"),
        ("/api/admin/bounce/v1", "get"),
        ("/api/admin/bounce/v1", "delete"),
        ("/api/admin/rebind/v1", "post"),
        ("/api/admin/actors/v1", "get"),
        ("/api/admin/metrics-history/v1", "get"),
        ("/metrics", "get"),
        ("/api/xfer/inject/v1", "post"),
        ("/api/xfer/inject-batch/v1", "post"),
        ("/api/inject/v1", "post"),
    ];
    for (path, method) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not described");
    }
    let rebind = &doc["components"]["schemas"]["RebindRequest"]["properties"];
    assert!(rebind["trigger_rebind_event"].is_object(), "request bodies are described: {rebind}");
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let (status, text) = match method.as_str() {
                "get" => ferry_integration_tests::http::get(node.http, path, &[]),
                m => {
                    ferry_integration_tests::http::request(node.http, &m.to_ascii_uppercase(), path, &[], b"")
                }
            };
            assert!(
                status != 404 && status != 405,
                "{method} {path} is described but answers {status}: {text}"
            );
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_running_node_has_its_heap_trimmer_thread() {
    // The thread that hands memory freed after a backlog back to the OS (see BENCHMARKS.md, soak).
    let node = FerryNode::start("", None);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", node.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    assert!(threads.iter().any(|t| t == "ferry-heap-trim"), "{threads:?}");
}
