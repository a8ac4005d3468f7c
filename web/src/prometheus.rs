//! `GET /metrics`: Prometheus text, streamed section by section in chunks so a million queues
//! never become one string.
//!
//! Names and labels are KumoMTA's, so `kcli queue-summary`, `kcli top` and dashboards built for
//! KumoMTA read them unchanged. Each family is written contiguously under one `# TYPE` line:
//! `total_messages_delivered` and `total_messages_transfail` carry the node-wide count unlabelled
//! (every Delivery / TransientFailure record), then `service="<protocol>"` (the sum over that
//! protocol's ready queues, as KumoMTA keeps it) and `service="<protocol>:<ready queue>"`;
//! `total_messages_fail` has the labelled samples only. The `ready_count` and
//! `connection_count` gauges end with their per-protocol sums too.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, get, web};
use ferry_actors::metrics::{Counts, GaugeFamily, HistogramSnapshot, Metrics, metrics};

/// Lines per streamed chunk.
const CHUNK: usize = 1000;

/// Prometheus label value escaping.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (le, n) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum.as_secs_f64(), h.count);
}

/// The per-service delivery counters: (metric, help, what to read from a queue's counts, whether
/// the family also has the unlabelled node-wide record count).
type CounterFamily = (&'static str, &'static str, fn(&Counts) -> u64, bool);

const COUNTERS: [CounterFamily; 3] = [
    ("total_messages_delivered", "Messages delivered", |c| c.delivered, true),
    ("total_messages_transfail", "Transient delivery failures", |c| c.transfail, true),
    ("total_messages_fail", "Delivery attempts that failed permanently", |c| c.fail, false),
];

/// Counters, histograms and single gauges: small, rendered at once.
fn head(m: &Metrics) -> String {
    let mut out = String::new();
    for (name, help, value) in m.totals() {
        // These two are written with their per-service samples, in one family each.
        if COUNTERS.iter().any(|(n, ..)| *n == name) {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        // Every Reception comes through the ESMTP listener: KumoMTA's per-listener sample.
        if name == "total_messages_received" {
            let _ = writeln!(out, "{name}{{service=\"esmtp_listener\"}} {value}");
        }
    }
    let dropped = m.log_records_dropped.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP log_records_dropped Log records lost because the log disk refused them\n# TYPE log_records_dropped counter\nlog_records_dropped {dropped}"
    );
    histogram(
        &mut out,
        "spool_commit_seconds",
        "Spool commit (with fsync) latency",
        &m.spool_commit.snapshot(),
    );
    histogram(
        &mut out,
        "policy_handler_seconds",
        "Time a policy call held a Lua state",
        &m.policy_handler.snapshot(),
    );
    let denied = m.connections_denied.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP total_connections_denied SMTP connections refused for smtp.max_connections or max_connections_per_ip\n# TYPE total_connections_denied counter\ntotal_connections_denied {denied}"
    );
    let open = m.smtp_connections.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP smtp_server_connections Open SMTP sessions\n# TYPE smtp_server_connections gauge\nsmtp_server_connections {open}"
    );
    let queued = m.policy_queued.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP policy_queue_depth Policy calls waiting for a Lua state\n# TYPE policy_queue_depth gauge\npolicy_queue_depth {queued}"
    );
    out
}

/// The labelled gauge families, in order: (metric, label, help, family).
type Gauges = (&'static str, &'static str, &'static str, &'static GaugeFamily);

fn gauges(m: &'static Metrics) -> [Gauges; 3] {
    [
        ("scheduled_count", "queue", "Messages waiting in a scheduled queue", &m.scheduled),
        ("ready_count", "service", "Messages in a ready queue", &m.ready),
        (
            "connection_count",
            "service",
            "Open connections (xfer: requests in flight) of a ready queue",
            &m.connections,
        ),
    ]
}

/// Where the stream is: the head, then the counter families, then the gauge families.
#[derive(Clone, Copy)]
enum Section {
    Head,
    Counter(usize),
    Gauge(usize),
    Done,
}

impl Section {
    fn next(&self) -> Section {
        match *self {
            Section::Head => Section::Counter(0),
            Section::Counter(i) if i + 1 < COUNTERS.len() => Section::Counter(i + 1),
            Section::Counter(_) => Section::Gauge(0),
            Section::Gauge(i) if i + 1 < 3 => Section::Gauge(i + 1),
            _ => Section::Done,
        }
    }
}

struct Cursor {
    section: Section,
    /// The last key written in this section (None: its header is next).
    after: Option<String>,
    /// A service gauge's running sums by protocol, written when the family ends.
    sums: BTreeMap<String, i64>,
}

impl Cursor {
    fn at(section: Section) -> Cursor {
        Cursor { section, after: None, sums: BTreeMap::new() }
    }

    /// Continue this section after `key`, or go on to the next one if the chunk was its last.
    fn then(self, key: Option<String>, full: bool) -> Cursor {
        match key {
            Some(key) if full => Cursor { after: Some(key), ..self },
            _ => Cursor::at(self.section.next()),
        }
    }
}

/// One per-service counter family, a chunk at a time.
fn counter_chunk(m: &Metrics, i: usize, after: Option<&str>, out: &mut String) -> (Option<String>, bool) {
    let (name, help, read, node_wide) = COUNTERS[i];
    if after.is_none() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        if node_wide && let Some((_, _, v)) = m.totals().into_iter().find(|(n, ..)| *n == name) {
            let _ = writeln!(out, "{name} {v}");
        }
        for (protocol, counts) in m.ready_queues.protocol_counts() {
            let _ = writeln!(out, "{name}{{service=\"{}\"}} {}", escape(&protocol), read(&counts));
        }
    }
    let rows = m.ready_queues.chunk_after(after, CHUNK);
    for q in &rows {
        let _ = writeln!(out, "{name}{{service=\"{}\"}} {}", escape(&q.service), read(&q.counts()));
    }
    (rows.last().map(|q| q.service.clone()), rows.len() == CHUNK)
}

#[utoipa::path(tag = "observe", responses((status = 200, description = "Prometheus text format, streamed", body = String, content_type = "text/plain"), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/metrics")]
pub(crate) async fn prometheus() -> HttpResponse {
    let m = metrics();
    let body = futures_util::stream::unfold(Cursor::at(Section::Head), move |mut cursor| async move {
        let mut out = String::new();
        let next = match cursor.section {
            Section::Done => return None,
            Section::Head => {
                out = head(m);
                Cursor::at(Section::Counter(0))
            }
            Section::Counter(i) => {
                let (last, full) = counter_chunk(m, i, cursor.after.as_deref(), &mut out);
                cursor.then(last, full)
            }
            Section::Gauge(i) => {
                let (name, label, help, family) = gauges(m)[i];
                if cursor.after.is_none() {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                }
                let rows = family.chunk_after(cursor.after.as_deref(), CHUNK);
                for (key, value) in &rows {
                    let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {value}", escape(key));
                    if label == "service"
                        && let Some((protocol, _)) = key.split_once(':')
                    {
                        *cursor.sums.entry(protocol.to_string()).or_default() += value;
                    }
                }
                let full = rows.len() == CHUNK;
                if !full {
                    for (protocol, sum) in &cursor.sums {
                        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {sum}", escape(protocol));
                    }
                    // Inbound sessions, as KumoMTA labels them (read by `kcli top`).
                    if name == "connection_count" {
                        let open = m.smtp_connections.load(Ordering::Relaxed);
                        let _ = writeln!(out, "{name}{{service=\"esmtp_listener\"}} {open}");
                    }
                }
                cursor.then(rows.last().map(|(k, _)| k.clone()), full)
            }
        };
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(out)), next))
    });
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").streaming(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(super::escape("x\ny"), "x\\ny");
    }
}
