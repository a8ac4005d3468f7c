//! The dashboard (`GET /`) in headless Chromium: a queue created by sending mail appears with its
//! count, and the count drops after delivery; a burst of mail rises in the activity charts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_integration_tests::browser::{dump_dom, screenshot};
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// The waiting count the page shows for `queue`, or None if it shows no such row.
fn shown_count(dom: &str, queue: &str) -> Option<u64> {
    let row = dom.split(&format!("data-queue=\"{queue}\"")).nth(1)?;
    let cell = row.split("class=\"n count\">").nth(1)?;
    cell.split('<').next()?.trim().parse().ok()
}

/// A node whose queues deliver to `sink`, retrying every 2 s.
fn node_relaying_to(sink: &SmtpSink) -> FerryNode {
    let policy = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ retry_interval = '2s', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }} end)",
        sink.port()
    );
    FerryNode::start("", Some(&policy))
}

/// What the page drew for one series: the SVG's values, the time of its last one, the polyline's
/// points, the plot's baseline (the frame's bottom edge) and the caption's figures.
#[derive(Debug)]
struct Chart {
    values: Vec<f64>,
    end: u64,
    points: Vec<(f64, f64)>,
    baseline: f64,
    total: Option<u64>,
}

/// `name="value"` in `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    tag.split(&format!(" {name}=\"")).nth(1)?.split('"').next()
}

/// The chart of `series` as drawn in `dom`, or None if the page has no such chart.
fn chart(dom: &str, series: &str) -> Option<Chart> {
    let figure = dom.split(&format!("data-chart=\"{series}\"")).nth(1)?.split("</figure>").next()?;
    let figures = figure.split("class=\"figures\"").nth(1)?.split('>').next()?;
    let svg = figure.split("<svg").nth(1)?.split('>').next()?;
    let values = attr(svg, "data-values")?;
    let frame = figure.split("class=\"frame\"").nth(1)?.split('>').next()?;
    let line = figure.split("class=\"line\"").nth(1)?.split('>').next()?;
    let num = |t: &str, a: &str| attr(t, a).and_then(|v| v.parse::<f64>().ok());
    Some(Chart {
        values: values.split(',').filter(|v| !v.is_empty()).map(|v| v.parse().unwrap()).collect(),
        end: attr(svg, "data-end")?.parse().ok()?,
        points: attr(line, "points")?
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect(),
        baseline: num(frame, "y")? + num(frame, "height")?,
        total: attr(figures, "data-total").and_then(|v| v.parse().ok()),
    })
}

#[test]
fn the_dashboard_charts_a_burst_of_mail() {
    let sink = SmtpSink::start();
    let node = node_relaying_to(&sink);
    let url = format!("http://{}/", node.http);

    let quiet = dump_dom(&url, Duration::from_secs(3));
    for series in ["received", "delivered", "transient", "bounced", "queue_depth", "xfer_out", "xfer_in"] {
        let c = chart(&quiet, series).unwrap_or_else(|| panic!("a {series} chart: {quiet}"));
        assert!(c.values.iter().all(|v| *v == 0.0), "nothing happened yet: {c:?}");
    }
    assert!(quiet.contains("<title>Messages received per second, last 15 minutes"), "charts are titled");

    let burst_start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    for i in 0..200 {
        let reply = c.transaction(
            "s@example.com",
            &[&format!("r{i}@burst.example")],
            "Subject: burst\r\n\r\nbody\r\n",
        );
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    sink.wait_messages(200);

    // A fresh page load draws the node's history: the whole burst, after it started.
    let (dom, received) = wait_until("the charts to hold the whole burst", Duration::from_secs(60), || {
        let dom = dump_dom(&url, Duration::from_secs(3));
        let received = chart(&dom, "received")?;
        let delivered = chart(&dom, "delivered")?;
        (received.total == Some(200) && delivered.total == Some(200)).then_some((dom, received))
    });
    assert!((received.values.iter().sum::<f64>() - 200.0).abs() < 1e-6, "{received:?}");
    assert_eq!(received.points.len(), received.values.len(), "one point per second: {received:?}");
    // One sample per second, the last at `end`: nothing was received before the burst began.
    let first_at = received.end + 1 - received.values.len() as u64;
    for (i, v) in received.values.iter().enumerate() {
        if first_at + (i as u64) < burst_start {
            assert_eq!(*v, 0.0, "second {} is before the burst: {received:?}", first_at + i as u64);
        }
    }
    // The line rises off the baseline where the burst was, to the top of the plot at its peak.
    let peak = received.values.iter().copied().fold(0.0, f64::max);
    let at_peak = received.values.iter().position(|v| *v == peak).unwrap();
    let highest = received.points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    assert!(peak > 0.0 && received.points[at_peak].1 == highest, "{received:?}");
    assert!(highest < received.baseline - 20.0, "the rise is drawn: {received:?}");
    assert!(
        received.points.iter().zip(&received.values).all(|(p, v)| (*v == 0.0) == (p.1 == received.baseline)),
        "quiet seconds lie on the baseline: {received:?}"
    );
    assert!(dom.contains("200 in all"), "the numbers are shown as text too");
    let bounced = chart(&dom, "bounced").unwrap();
    assert!(bounced.values.iter().all(|v| *v == 0.0), "no bounces were drawn: {bounced:?}");
}

#[test]
fn the_dashboard_shows_a_queue_appear_and_drain() {
    let sink = SmtpSink::start();
    let node = node_relaying_to(&sink);
    let out = node.cli(&["--json", "suspend", "--domain", "held.example", "--reason", "hold"]);
    let suspension = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
    let mut c = RawSmtp::connect(node.smtp);
    for rcpt in ["a@held.example", "b@held.example"] {
        let id = queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: dash\r\n\r\nbody\r\n"));
        node.wait_sequence(&id, &["Reception", "TransientFailure"]);
    }
    let url = format!("http://{}/", node.http);

    let dom = dump_dom(&url, Duration::from_secs(3));
    assert!(dom.contains("data-updates"), "the page loaded its data: {dom}");
    assert_eq!(shown_count(&dom, "held.example"), Some(2), "{dom}");
    assert!(dom.contains("TransientFailure"), "latest records are shown");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    screenshot(&url, &shot);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot at {}", shot.display());
    eprintln!("dashboard screenshot: {}", shot.display());

    node.cli(&["suspend-cancel", "--id", &suspension]);
    sink.wait_messages(2);
    let drained = wait_until("the page to show the drained queue", Duration::from_secs(60), || {
        let dom = dump_dom(&url, Duration::from_secs(2));
        matches!(shown_count(&dom, "held.example"), None | Some(0)).then_some(dom)
    });
    assert!(drained.contains("Delivery"), "the deliveries are among the latest records");
}
