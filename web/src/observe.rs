//! What the actors publish, for people: `GET /api/admin/actors/v1` (every kind of live actor and
//! its state, as JSON), the latest records, the last 15 minutes' per-second history, and the
//! dashboard that polls them. `GET /metrics` is
//! in `prometheus.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use ferry_actors::metrics::{GaugeFamily, Metrics, metrics};
use ferry_actors::queue::InspectQueue;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(crate::prometheus::prometheus)
        .service(actors)
        .service(records)
        .service(metrics_history)
        .service(dashboard);
}

/// Gauge entries read per lock when looking for the largest queues.
const CHUNK: usize = 1000;

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

/// Every live ready queue, ordered by source then site: what it is, its path's limits (null
/// until the path config is known), its ready and connection counts and its delivery counters
/// (clients turn two readings into rates).
fn ready_queues(m: &Metrics) -> Vec<Value> {
    let mut all = m.ready_queues.chunk_after(None, usize::MAX);
    all.sort_by(|a, b| (&a.source, &a.site).cmp(&(&b.source, &b.site)));
    all.iter()
        .map(|q| {
            json!({
                "name": q.name, "service": q.service, "source": q.source, "site": q.site,
                "protocol": q.protocol, "ready": m.ready.get(&q.service).unwrap_or(0),
                "connections": m.connections.get(&q.service).unwrap_or(0),
                "limits": q.limits(), "counts": q.counts(),
            })
        })
        .collect()
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
        "ready_queues": ready_queues(m),
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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Only samples after this unix second (a poll asks for what is new since its last sample).
    #[serde(default)]
    since: Option<u64>,
}

/// Per-second samples over the last 15 minutes (received, delivered, transient, bounced, xfer
/// out and in per second; queue depth), oldest first: `at` holds each sample's unix second and
/// every series one value per sample.
#[utoipa::path(tag = "observe", params(HistoryQuery), responses((status = 200, description = "The history, one array per series", body = serde_json::Value), (status = 400, description = "Bad query", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/metrics-history/v1")]
async fn metrics_history(q: web::Query<HistoryQuery>) -> HttpResponse {
    HttpResponse::Ok().json(metrics().history(q.since))
}

/// The live dashboard: one page, no build step; it polls the actors and records endpoints.
#[utoipa::path(tag = "observe", responses((status = 200, description = "The dashboard page", body = String, content_type = "text/html")))]
#[get("/")]
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("dashboard/index.html"))
}
