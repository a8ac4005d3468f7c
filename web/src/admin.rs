//! Admin endpoints with KumoMTA-compatible paths and JSON (SPEC §5).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, post, web};
use ferry_actors::model::admin::Criteria;
use ferry_actors::queue::{CancelSuspension, InspectQueue, ListSuspensions, Suspend};
use ferry_config::{HumanDuration, format_duration};
use serde::Deserialize;

use utoipa_actix_web::service_config::ServiceConfig;

use crate::AppState;
use crate::errors::json_error;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(suspend)
        .service(suspend_list)
        .service(suspend_cancel)
        .service(inspect)
        .service(xfer)
        .service(xfer_cancel)
        .service(xfer_status);
}

/// Default duration of a suspension or bounce (SPEC §2.8).
const DEFAULT_SUSPEND: Duration = Duration::from_secs(300);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SuspendRequest {
    #[serde(default)]
    campaign: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    queue_names: Vec<String>,
    reason: String,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "5m")]
    duration: Option<HumanDuration>,
    #[serde(default)]
    expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// A directive's lifetime from `duration` or `expires` (default 5 minutes, SPEC §2.8); the error
/// is the 400's message.
pub(crate) fn directive_duration(
    duration: Option<HumanDuration>,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Duration, &'static str> {
    match (duration, expires) {
        (Some(_), Some(_)) => Err("give either duration or expires, not both"),
        (_, Some(expires)) => (expires - chrono::Utc::now()).to_std().map_err(|_| "expires is in the past"),
        (Some(d), None) => Ok(d.0),
        (None, None) => Ok(DEFAULT_SUSPEND),
    }
}

#[utoipa::path(tag = "admin", request_body = SuspendRequest, responses((status = 200, description = "`{\"id\"}` of the new suspension", body = serde_json::Value), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[post("/api/admin/suspend/v1")]
async fn suspend(state: web::Data<AppState>, body: web::Json<SuspendRequest>) -> HttpResponse {
    let body = body.into_inner();
    let duration = match directive_duration(body.duration, body.expires) {
        Ok(d) => d,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    let criteria = Criteria {
        campaign: body.campaign,
        tenant: body.tenant,
        domain: body.domain,
        routing_domain: None,
        queue_names: body.queue_names,
    };
    match state.queues.send(Suspend { criteria, reason: body.reason, duration }).await {
        Ok(id) => HttpResponse::Ok().json(serde_json::json!({"id": id})),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[utoipa::path(tag = "admin", responses((status = 200, description = "Live suspensions; Ferry adds `origin` {node_id, node_url}: the node that made each", body = serde_json::Value), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/suspend/v1")]
async fn suspend_list(state: web::Data<AppState>) -> HttpResponse {
    match state.queues.send(ListSuspensions).await {
        Ok(list) => {
            let out: Vec<_> = list
                .into_iter()
                .map(|v| {
                    let c = &v.suspension.criteria;
                    serde_json::json!({
                        "id": v.suspension.id,
                        "campaign": c.campaign,
                        "tenant": c.tenant,
                        "domain": c.domain,
                        "queue_names": c.queue_names,
                        "reason": v.suspension.reason,
                        "duration": format_duration(Duration::from_secs(v.remaining.as_secs())),
                        // Ferry extension: the node that made it.
                        "origin": v.suspension.origin,
                    })
                })
                .collect();
            HttpResponse::Ok().json(out)
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdRequest {
    pub id: uuid::Uuid,
}

#[utoipa::path(tag = "admin", request_body = IdRequest, responses((status = 200, description = "`removed <id>`", body = String, content_type = "text/plain"), (status = 404, description = "No such suspension", body = crate::errors::ErrorBody), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[delete("/api/admin/suspend/v1")]
async fn suspend_cancel(state: web::Data<AppState>, body: web::Json<IdRequest>) -> HttpResponse {
    match state.queues.send(CancelSuspension(body.id)).await {
        Ok(true) => HttpResponse::Ok().content_type("text/plain").body(format!("removed {}", body.id)),
        Ok(false) => json_error(StatusCode::NOT_FOUND, format!("no suspension with id {}", body.id)),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct XferRequest {
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    routing_domain: Option<String>,
    #[serde(default)]
    campaign: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    queue_names: Vec<String>,
    reason: String,
    /// KumoMTA's single target; optional when `targets` is given.
    #[serde(default)]
    target: Option<String>,
    /// Ferry extension: drain over several peers, each matched scheduled queue going whole to one
    /// of them (rendezvous hashing by queue name). Combined with `target` if both are given.
    #[serde(default)]
    targets: Vec<String>,
    /// Ferry extension: an id the client chose to follow the sweep by
    /// (`GET /api/admin/xfer/status/v1?id=`); the reply stays `{}` as in SPEC §4.5.
    #[serde(default)]
    sweep_id: Option<uuid::Uuid>,
}

/// SPEC §4.5: validate, answer `{}` at once; the move runs in the background.
#[utoipa::path(tag = "xfer", request_body = XferRequest, responses((status = 200, description = "`{}`: the sweep runs in the background", body = serde_json::Value), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[post("/api/admin/xfer/v1")]
async fn xfer(state: web::Data<AppState>, body: web::Json<XferRequest>) -> HttpResponse {
    let body = body.into_inner();
    let mut targets: Vec<String> = body.target.iter().cloned().collect();
    targets.extend(body.targets.iter().cloned());
    if targets.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "target: missing (or give targets: [...])");
    }
    let mut xfer_queues = Vec::with_capacity(targets.len());
    for t in &targets {
        match ferry_actors::model::xfer::queue_for_target(t) {
            Ok(q) if !xfer_queues.contains(&q) => xfer_queues.push(q),
            Ok(_) => {}
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
    let criteria = Criteria {
        campaign: body.campaign,
        tenant: body.tenant,
        domain: body.domain,
        routing_domain: body.routing_domain,
        queue_names: body.queue_names,
    };
    if let Some(id) = body.sweep_id
        && state.services.sweeps.status(id).is_some()
    {
        return json_error(StatusCode::CONFLICT, format!("sweep_id {id} is already in use"));
    }
    // Registered before the reply, so the client can follow it at once.
    let sweep = state.services.sweeps.begin(
        body.sweep_id,
        &targets.join(", "),
        &xfer_queues.join(", "),
        &body.reason,
    );
    state.queues.do_send(ferry_actors::xfer::admin::AdminXfer {
        criteria,
        xfer_queues,
        reason: body.reason,
        sweep,
    });
    HttpResponse::Ok().json(serde_json::json!({}))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    queue_name: String,
    reason: String,
}

/// SPEC §4.6.
#[utoipa::path(tag = "xfer", request_body = CancelRequest, responses((status = 200, description = "`{}`: the cancel runs in the background", body = serde_json::Value), (status = 400, description = "Not an xfer queue, or bad JSON", body = crate::errors::ErrorBody), (status = 404, description = "No such xfer queue", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[post("/api/admin/xfer/cancel/v1")]
async fn xfer_cancel(state: web::Data<AppState>, body: web::Json<CancelRequest>) -> HttpResponse {
    let CancelRequest { queue_name, reason } = body.into_inner();
    match state.queues.send(ferry_actors::xfer::admin::CancelXfer { queue_name, reason }).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({})),
        Ok(Err((status, message))) => {
            json_error(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message)
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    #[serde(default)]
    id: Option<uuid::Uuid>,
}

/// Ferry extension: progress of admin xfer sweeps (one with `?id=`, else all this node knows).
#[utoipa::path(tag = "xfer", params(StatusQuery), responses((status = 200, description = "One sweep, or all this node remembers", body = serde_json::Value), (status = 400, description = "Bad query", body = crate::errors::ErrorBody), (status = 404, description = "No such sweep", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/xfer/status/v1")]
async fn xfer_status(state: web::Data<AppState>, q: web::Query<StatusQuery>) -> HttpResponse {
    match q.id {
        None => HttpResponse::Ok().json(state.services.sweeps.list()),
        Some(id) => match state.services.sweeps.status(id) {
            Some(s) => HttpResponse::Ok().json(s),
            None => json_error(
                StatusCode::NOT_FOUND,
                format!(
                    "no xfer sweep {id} on this node (sweeps are forgotten at restart and an hour after they finish)"
                ),
            ),
        },
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
struct InspectQuery {
    queue_name: String,
    #[serde(default)]
    want_body: bool,
    /// Default 5; 0 or absent `no_limit=true` means every message.
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    no_limit: bool,
}

#[utoipa::path(tag = "admin", params(InspectQuery), responses((status = 200, description = "The queue and its waiting messages (SPEC §5)", body = serde_json::Value), (status = 404, description = "No such scheduled queue", body = crate::errors::ErrorBody), (status = 400, description = "Bad query", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/inspect-sched-q/v1")]
async fn inspect(state: web::Data<AppState>, q: web::Query<InspectQuery>) -> HttpResponse {
    let q = q.into_inner();
    let limit = if q.no_limit { None } else { Some(q.limit.unwrap_or(5)) };
    let name = q.queue_name.clone();
    match state.queues.send(InspectQueue { queue_name: q.queue_name, want_body: q.want_body, limit }).await {
        Ok(Some(v)) => HttpResponse::Ok().json(v),
        Ok(None) => json_error(StatusCode::NOT_FOUND, format!("no scheduled queue named {name}")),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
