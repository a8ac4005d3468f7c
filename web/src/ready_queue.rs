//! Ready-queue admin with KumoMTA's paths and JSON: `suspend-ready-q` (POST, GET, DELETE),
//! `inspect-ready-q` and `resolve-egress-path`.
//!
//! Where KumoMTA's response has a field Ferry has nothing for, it is answered with the empty value
//! of its type: `mx` null (Ferry resolves MX per connection and keeps no per-queue result),
//! `dispatchers` empty (connections keep no phase or counters), `watchdog_threshold` "0s" (there
//! is no dispatcher watchdog). Ferry adds `ready_messages`, `idle_connections` and
//! `path_config_resolved` to inspect-ready-q, and `scheduled_queue` and `egress_pool` to
//! resolve-egress-path.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, SecondsFormat, Utc};
use ferry_actors::delivery::{
    CancelReadyQueueSuspension, InspectReadyQueue, ListReadyQueueSuspensions, ReadyQueueStatesOf,
    SuspendReadyQueue,
};
use ferry_actors::egress::ready_queue::ReadyQueueSnapshot;
use ferry_actors::egress::resolve_path::{Destination, ResolvedPath, resolve};
use ferry_actors::model::egress_constraints;
use ferry_actors::model::egress_path::EgressPathConfig;
use ferry_actors::model::ready_queue_suspension::ReadyQueueSuspension;
use ferry_config::{HumanDuration, format_duration};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::AppState;
use crate::admin::{IdRequest, directive_duration};
use crate::errors::json_error;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(suspend_ready_q)
        .service(suspend_ready_q_list)
        .service(suspend_ready_q_cancel)
        .service(inspect_ready_q)
        .service(ready_q_states)
        .service(resolve_egress_path);
}

/// KumoMTA's `SuspendReadyQueueV1Request`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SuspendReadyQRequest {
    /// The ready queue's full name, e.g. `unspecified->mx:example.com@smtp_client`.
    name: String,
    reason: String,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "5m")]
    duration: Option<HumanDuration>,
    #[serde(default)]
    expires: Option<DateTime<Utc>>,
}

#[utoipa::path(tag = "admin", request_body = SuspendReadyQRequest, responses((status = 200, description = "`{\"id\"}` of the new suspension", body = serde_json::Value), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[post("/api/admin/suspend-ready-q/v1")]
async fn suspend_ready_q(state: web::Data<AppState>, body: web::Json<SuspendReadyQRequest>) -> HttpResponse {
    let body = body.into_inner();
    if body.name.trim().is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "name: must name a ready queue");
    }
    let duration = match directive_duration(body.duration, body.expires) {
        Ok(d) => d,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    let req = SuspendReadyQueue { name: body.name, reason: body.reason, duration };
    match state.services.delivery.send(req).await {
        Ok(id) => HttpResponse::Ok().json(json!({"id": id})),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// KumoMTA's `SuspendReadyQueueV1ListEntry`: `duration` is the time left.
fn list_entry(s: &ReadyQueueSuspension, now: DateTime<Utc>) -> Value {
    json!({
        "id": s.id, "name": s.name, "reason": s.reason,
        "duration": format_duration(s.remaining(now)),
        "expires": s.expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        // Ferry extension: the node that made it.
        "origin": s.origin,
    })
}

#[utoipa::path(tag = "admin", responses((status = 200, description = "Live ready-queue suspensions: id, name, reason, duration (left), expires", body = serde_json::Value), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/suspend-ready-q/v1")]
async fn suspend_ready_q_list(state: web::Data<AppState>) -> HttpResponse {
    match state.services.delivery.send(ListReadyQueueSuspensions).await {
        Ok(list) => {
            let now = Utc::now();
            HttpResponse::Ok().json(list.iter().map(|s| list_entry(s, now)).collect::<Vec<_>>())
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[utoipa::path(tag = "admin", request_body = crate::admin::IdRequest, responses((status = 200, description = "`removed <id>`", body = String, content_type = "text/plain"), (status = 404, description = "Suspension either expired or was never valid", body = crate::errors::ErrorBody), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[delete("/api/admin/suspend-ready-q/v1")]
async fn suspend_ready_q_cancel(state: web::Data<AppState>, body: web::Json<IdRequest>) -> HttpResponse {
    match state.services.delivery.send(CancelReadyQueueSuspension(body.id)).await {
        Ok(true) => HttpResponse::Ok().content_type("text/plain").body(format!("removed {}", body.id)),
        Ok(false) => {
            json_error(StatusCode::NOT_FOUND, format!("suspend-ready-q entry {} not found", body.id))
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// KumoMTA's `InspectReadyQV1Request` (`name` accepted for `queue_name`).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct InspectReadyQQuery {
    /// The ready queue's full name, as `resolve-egress-path` or the metrics' `service` label give it.
    #[serde(alias = "name")]
    queue_name: String,
    /// Also list the scheduled queues of the messages waiting in it.
    #[serde(default)]
    include_scheduled_queues: bool,
}

/// The path config as KumoMTA's `EgressPathConfig` JSON: unset options are left out, so that a
/// reader with KumoMTA's defaults fills them.
fn path_json(path: &EgressPathConfig) -> Value {
    let mut v = serde_json::to_value(path).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, value| !value.is_null());
    }
    v
}

fn state_entry(context: String, since: Option<DateTime<Utc>>) -> Value {
    since.map_or(Value::Null, |since| json!({"context": context, "since": since}))
}

fn inspect_json(snap: ReadyQueueSnapshot, with_sched: bool) -> Value {
    let now = Utc::now();
    let protocol = snap.name.rsplit_once('@').map_or("", |(_, p)| p).to_string();
    let limit = snap.path.connection_limit;
    let mut out = json!({
        "queue_name": snap.name,
        "mx": null,
        "egress_source": snap.egress_source,
        "egress_pool": snap.egress_pool,
        "protocol": protocol,
        "state": {
            "ready_count": snap.ready.len(),
            "connection_count": snap.connections,
            "connection_rate_throttled": state_entry(
                format!("max_connection_rate {} throttling", json!(snap.path.max_connection_rate)),
                snap.rate_throttled_since,
            ),
            "connection_limited": state_entry(format!("connection_limit {limit} reached"), snap.limited_since),
            "suspended": snap.suspended.as_ref().map(|s| list_entry(s, now)),
            "watchdog_threshold": format_duration(Duration::ZERO),
        },
        "path_config": path_json(&snap.path),
        "constraints": egress_constraints::of(&snap.path),
        "dispatchers": [],
        "now": now,
        "ready_messages": snap.ready.iter().map(|(id, queue)| json!({"id": id.to_string(), "queue": queue})).collect::<Vec<_>>(),
        "idle_connections": snap.idle_connections,
        "path_config_resolved": snap.path_known,
    });
    if with_sched {
        let mut names: Vec<&String> = snap.ready.iter().map(|(_, q)| q).collect();
        names.sort();
        names.dedup();
        out["scheduled_queue_names"] = json!(names);
    }
    out
}

#[utoipa::path(tag = "admin", params(InspectReadyQQuery), responses((status = 200, description = "KumoMTA's InspectReadyQV1Response (mx null, dispatchers empty), plus `ready_messages`", body = serde_json::Value), (status = 404, description = "No such ready queue (ready queues exist while they have messages or connections)", body = crate::errors::ErrorBody), (status = 400, description = "Bad query: the error names the key", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/inspect-ready-q/v1")]
async fn inspect_ready_q(state: web::Data<AppState>, q: web::Query<InspectReadyQQuery>) -> HttpResponse {
    let InspectReadyQQuery { queue_name, include_scheduled_queues } = q.into_inner();
    match state.services.delivery.send(InspectReadyQueue(queue_name.clone())).await {
        Ok(Some(snap)) => HttpResponse::Ok().json(inspect_json(snap, include_scheduled_queues)),
        Ok(None) => json_error(StatusCode::NOT_FOUND, format!("no ready queue named {queue_name}")),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// KumoMTA's `ReadyQueueStateRequest`: `queues` is a comma-separated list; none: every queue.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct StatesQuery {
    #[serde(default)]
    queues: Option<String>,
}

#[utoipa::path(tag = "admin", params(StatesQuery), responses((status = 200, description = "KumoMTA's ReadyQueueStateResponse: `states_by_ready_queue` maps each ready queue held back by `connection_limit` or `max_connection_rate` to `connection_limited` / `connection_rate_throttled` `{context, since}`", body = serde_json::Value), (status = 400, description = "Bad query: the error names the key", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/ready-q-states/v1")]
async fn ready_q_states(state: web::Data<AppState>, q: web::Query<StatesQuery>) -> HttpResponse {
    let names: Vec<String> = q
        .into_inner()
        .queues
        .map(|list| list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let states = match state.services.delivery.send(ReadyQueueStatesOf(names)).await {
        Ok(states) => states,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let stamp = |since: &DateTime<Utc>| since.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let mut by_queue = serde_json::Map::new();
    for s in states {
        let mut entry = serde_json::Map::new();
        for (key, state) in [
            ("connection_limited", &s.connection_limited),
            ("connection_rate_throttled", &s.connection_rate_throttled),
        ] {
            if let Some((context, since)) = state {
                entry.insert(key.into(), json!({"context": context, "since": stamp(since)}));
            }
        }
        if !entry.is_empty() {
            by_queue.insert(s.name, Value::Object(entry));
        }
    }
    HttpResponse::Ok().json(json!({"states_by_ready_queue": by_queue}))
}

/// KumoMTA's `ResolveEgressPathV1Request`, plus the other parts of a scheduled queue name.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ResolveQuery {
    /// Destination domain.
    domain: String,
    /// Egress source; default: the first source the queue's egress pool rotates to ("unspecified"
    /// for the default pool, KumoMTA's default).
    #[serde(default)]
    source: Option<String>,
    /// Ferry extension: the tenant part of the queue name.
    #[serde(default)]
    tenant: Option<String>,
    /// Ferry extension: the campaign part of the queue name.
    #[serde(default)]
    campaign: Option<String>,
    /// Ferry extension: the routing domain part of the queue name.
    #[serde(default)]
    routing_domain: Option<String>,
}

fn resolved_json(domain: String, r: ResolvedPath) -> Value {
    json!({
        "domain": domain,
        "source": r.source,
        "mx": null,
        "queue_name": r.ready_queue,
        "queue_config": r.queue_config,
        "path_config": path_json(&r.path),
        "constraints": egress_constraints::of(&r.path),
        "scheduled_queue": r.scheduled_queue,
        "egress_pool": r.egress_pool,
    })
}

#[utoipa::path(tag = "admin", params(ResolveQuery), responses((status = 200, description = "KumoMTA's ResolveEgressPathV1Response (mx null), plus `scheduled_queue` and `egress_pool`", body = serde_json::Value), (status = 400, description = "Bad query: the error names the key", body = crate::errors::ErrorBody), (status = 500, description = "A policy event failed: the error names it", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/resolve-egress-path/v1")]
async fn resolve_egress_path(state: web::Data<AppState>, q: web::Query<ResolveQuery>) -> HttpResponse {
    let q = q.into_inner();
    if q.domain.trim().is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "domain: must not be empty");
    }
    let domain = q.domain.clone();
    let dest = Destination {
        domain: q.domain,
        tenant: q.tenant,
        campaign: q.campaign,
        routing_domain: q.routing_domain,
        source: q.source,
    };
    match resolve(&state.services.policy, dest).await {
        Ok(r) => HttpResponse::Ok().json(resolved_json(domain, r)),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
