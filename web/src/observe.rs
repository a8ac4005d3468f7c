//! What the actors publish: `GET /metrics` (Prometheus text, streamed family by family in chunks
//! so a million queues never become one string) and `GET /api/admin/actors/v1` (every kind of
//! live actor and its state, as JSON).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use ferry_actors::metrics::{GaugeFamily, HistogramSnapshot, Metrics, metrics};
use ferry_actors::queue::InspectQueue;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(prometheus).service(actors).service(records).service(dashboard);
}

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

/// Counters, histograms and single gauges: small, rendered at once.
fn head(m: &Metrics) -> String {
    let mut out = String::new();
    for (name, help, value) in m.totals() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
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
fn families(m: &'static Metrics) -> [(&'static str, &'static str, &'static str, &'static GaugeFamily); 3] {
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

enum Cursor {
    Head,
    /// Family index, and the last key written (None: the family's header is next).
    Family(usize, Option<String>),
    Done,
}

#[utoipa::path(tag = "observe", responses((status = 200, description = "Prometheus text format, streamed", body = String, content_type = "text/plain"), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/metrics")]
async fn prometheus() -> HttpResponse {
    let m = metrics();
    let body = futures_util::stream::unfold(Cursor::Head, move |cursor| async move {
        let (chunk, next) = match cursor {
            Cursor::Done => return None,
            Cursor::Head => (head(m), Cursor::Family(0, None)),
            Cursor::Family(i, _) if i >= 3 => return None,
            Cursor::Family(i, last) => {
                let (name, label, help, family) = families(m)[i];
                let mut out = String::new();
                if last.is_none() {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                }
                let rows = family.chunk_after(last.as_deref(), CHUNK);
                for (key, value) in &rows {
                    let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {value}", escape(key));
                }
                let next = match rows.last() {
                    Some((key, _)) if rows.len() == CHUNK => Cursor::Family(i, Some(key.clone())),
                    _ if i + 1 < 3 => Cursor::Family(i + 1, None),
                    _ => Cursor::Done,
                };
                (out, next)
            }
        };
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(chunk)), next))
    });
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").streaming(body)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ActorsQuery {
    /// Scheduled queues to describe, largest first (default 100).
    #[serde(default)]
    limit: Option<usize>,
}

/// The `n` largest entries of a gauge family, walking it in chunks.
fn largest(family: &GaugeFamily, n: usize) -> Vec<(String, i64)> {
    let mut heap: BinaryHeap<Reverse<(i64, String)>> = BinaryHeap::new();
    let mut last: Option<String> = None;
    loop {
        let rows = family.chunk_after(last.as_deref(), CHUNK);
        for (key, value) in &rows {
            heap.push(Reverse((*value, key.clone())));
            if heap.len() > n {
                heap.pop();
            }
        }
        match rows.last() {
            Some((key, _)) if rows.len() == CHUNK => last = Some(key.clone()),
            _ => break,
        }
    }
    let mut out: Vec<(String, i64)> = heap.into_iter().map(|Reverse((v, k))| (k, v)).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[utoipa::path(tag = "observe", params(ActorsQuery), responses((status = 200, description = "Every kind of live actor and its state", body = serde_json::Value), (status = 400, description = "Bad query", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/actors/v1")]
async fn actors(state: web::Data<AppState>, q: web::Query<ActorsQuery>) -> HttpResponse {
    let m = metrics();
    let limit = q.limit.unwrap_or(100);
    let mut queues = Vec::new();
    for (name, waiting) in largest(&m.scheduled, limit) {
        let inspect = InspectQueue { queue_name: name.clone(), want_body: false, limit: Some(1) };
        let Ok(Some(v)) = state.queues.send(inspect).await else { continue };
        queues.push(json!({
            "name": name, "waiting": waiting, "next_due": v["messages"][0]["message"]["due"],
            "last_changed": v["last_changed"], "config": v["queue_config"],
        }));
    }
    let connections = |service: &str| m.connections.get(service).unwrap_or(0);
    let dispatchers: Vec<Value> = m
        .ready
        .chunk_after(None, usize::MAX)
        .into_iter()
        .filter(|(service, _)| !service.starts_with("xfer:"))
        .map(|(service, ready)| json!({"service": service, "ready": ready, "connections": connections(&service)}))
        .collect();
    let targets: Vec<Value> = m
        .xfer_targets
        .lock()
        .map(|all| {
            all.iter()
                .map(|(target, s)| {
                    json!({
                        "target": target, "site": s.site, "ready": s.ready.load(Ordering::Relaxed),
                        "in_flight": s.in_flight.load(Ordering::Relaxed), "sent": s.sent.load(Ordering::Relaxed),
                        "failed": s.failed.load(Ordering::Relaxed),
                        "last_error": s.last_error.lock().ok().and_then(|e| e.clone()),
                        "form": s.form.lock().map(|f| *f).unwrap_or("unknown"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let handler = m.policy_handler.snapshot();
    let commit = m.spool_commit.snapshot();
    let batch = m.spool_batch.snapshot();
    let stats = state.services.writer.stats();
    HttpResponse::Ok().json(json!({
        "scheduled_queues": {"total": m.scheduled.len(), "shown": queues.len(), "largest": queues},
        "dispatchers": dispatchers,
        "xfer_targets": targets,
        "xfer_sweeps": state.services.sweeps.list(),
        "policy": {
            "states": state.services.policy.states(), "queued": m.policy_queued.load(Ordering::Relaxed),
            "calls": handler.count, "mean_ms": millis(handler.mean()), "slowest_ms": millis(handler.max),
        },
        "spool_writer": {
            "commits": stats.commits.load(Ordering::Relaxed), "requests": stats.requests.load(Ordering::Relaxed),
            "largest_batch": stats.largest_batch.load(Ordering::Relaxed),
            "mean_batch": if batch.count == 0 { 0.0 } else { batch.sum.as_micros() as f64 / batch.count as f64 },
            "last_commit_ms": stats.last_commit_micros.load(Ordering::Relaxed) as f64 / 1e3,
            "commit_mean_ms": millis(commit.mean()), "commit_max_ms": millis(commit.max),
        },
        "totals": m.totals().into_iter().map(|(name, _, v)| (name.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    /// How many of the latest records (default 50, at most 200).
    #[serde(default)]
    limit: Option<usize>,
}

/// The latest log records this node wrote, oldest first (the same JSON as the log files).
#[utoipa::path(tag = "observe", params(RecordsQuery), responses((status = 200, description = "Records, oldest first", body = serde_json::Value), (status = 400, description = "Bad query", body = crate::errors::ErrorBody)))]
#[get("/api/admin/records/v1")]
async fn records(q: web::Query<RecordsQuery>) -> HttpResponse {
    let lines = metrics().recent_records(q.limit.unwrap_or(50));
    let body = format!("[{}]", lines.join(","));
    HttpResponse::Ok().content_type("application/json").body(body)
}

/// The live dashboard: one page, no build step; it polls the actors and records endpoints.
#[utoipa::path(tag = "observe", responses((status = 200, description = "The dashboard page", body = String, content_type = "text/html")))]
#[get("/")]
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("dashboard/index.html"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(super::escape("x\ny"), "x\\ny");
    }
}
