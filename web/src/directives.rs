//! Admin bounce and rebind (SPEC §2.8, §5) with KumoMTA's paths and JSON.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, post, web};
use ferry_actors::model::admin::Criteria;
use ferry_actors::queue::{BounceQueues, CancelBounce, ListBounces, RebindQueues};
use ferry_config::{HumanDuration, format_duration};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use utoipa_actix_web::service_config::ServiceConfig;

use crate::AppState;
use crate::admin::{IdRequest, directive_duration};
use crate::errors::json_error;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(bounce).service(bounce_list).service(bounce_cancel).service(rebind);
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BounceRequest {
    #[serde(default)]
    campaign: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    routing_domain: Option<String>,
    #[serde(default)]
    queue_names: Vec<String>,
    reason: String,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "5m")]
    duration: Option<HumanDuration>,
    #[serde(default)]
    expires: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    suppress_logging: bool,
}

/// Start a bounce: `{"id","bounced":{},"total_bounced":0}` at once; the drain runs in the
/// background and its counts show in the list.
#[utoipa::path(tag = "admin", request_body = BounceRequest, responses((status = 200, description = "`{\"id\",\"bounced\":{},\"total_bounced\":0}`", body = serde_json::Value), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[post("/api/admin/bounce/v1")]
async fn bounce(state: web::Data<AppState>, body: web::Json<BounceRequest>) -> HttpResponse {
    let body = body.into_inner();
    let duration = match directive_duration(body.duration, body.expires) {
        Ok(d) => d,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    let criteria = Criteria {
        campaign: body.campaign,
        tenant: body.tenant,
        domain: body.domain,
        routing_domain: body.routing_domain,
        queue_names: body.queue_names,
    };
    let req =
        BounceQueues { criteria, reason: body.reason, duration, suppress_logging: body.suppress_logging };
    match state.queues.send(req).await {
        Ok(id) => HttpResponse::Ok().json(json!({"id": id, "bounced": {}, "total_bounced": 0})),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[utoipa::path(tag = "admin", responses((status = 200, description = "Live bounces with this node's counts; Ferry adds `origin`: the node that made each", body = serde_json::Value), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/bounce/v1")]
async fn bounce_list(state: web::Data<AppState>) -> HttpResponse {
    match state.queues.send(ListBounces).await {
        Ok(list) => {
            let out: Vec<_> = list
                .into_iter()
                .map(|v| {
                    let (b, c) = (&v.bounce, &v.bounce.criteria);
                    json!({
                        "id": b.id, "campaign": c.campaign, "tenant": c.tenant, "domain": c.domain,
                        "routing_domain": c.routing_domain, "queue_names": c.queue_names, "reason": b.reason,
                        "duration": format_duration(Duration::from_secs(v.remaining.as_secs())),
                        "bounced": b.bounced, "total_bounced": b.total_bounced,
                        // Ferry extension: the node that made it (counts are this node's).
                        "origin": b.origin,
                    })
                })
                .collect();
            HttpResponse::Ok().json(out)
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[utoipa::path(tag = "admin", request_body = crate::admin::IdRequest, responses((status = 200, description = "`removed <id>`", body = String, content_type = "text/plain"), (status = 404, description = "No such bounce", body = crate::errors::ErrorBody), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[delete("/api/admin/bounce/v1")]
async fn bounce_cancel(state: web::Data<AppState>, body: web::Json<IdRequest>) -> HttpResponse {
    match state.queues.send(CancelBounce(body.id)).await {
        Ok(true) => HttpResponse::Ok().content_type("text/plain").body(format!("removed {}", body.id)),
        Ok(false) => json_error(StatusCode::NOT_FOUND, format!("no bounce with id {}", body.id)),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RebindRequest {
    #[serde(default)]
    campaign: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    routing_domain: Option<String>,
    reason: String,
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"queue": "rebound.com"}))]
    data: Map<String, Value>,
    #[serde(default)]
    suppress_logging: bool,
    #[serde(default)]
    trigger_rebind_event: bool,
    #[serde(default)]
    always_flush: bool,
}

/// SPEC §5: `{}` at once; the rebind runs in the background.
#[utoipa::path(tag = "admin", request_body = RebindRequest, responses((status = 200, description = "`{}`: the rebind runs in the background", body = serde_json::Value), (status = 400, description = "Bad JSON: the error names the field", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[post("/api/admin/rebind/v1")]
async fn rebind(state: web::Data<AppState>, body: web::Json<RebindRequest>) -> HttpResponse {
    let b = body.into_inner();
    if b.data.is_empty() && !b.trigger_rebind_event && !b.always_flush {
        return json_error(
            StatusCode::BAD_REQUEST,
            "nothing to do: give data, trigger_rebind_event or always_flush",
        );
    }
    let criteria = Criteria {
        campaign: b.campaign,
        tenant: b.tenant,
        domain: b.domain,
        routing_domain: b.routing_domain,
        queue_names: Vec::new(),
    };
    state.queues.do_send(RebindQueues {
        criteria,
        reason: b.reason,
        data: b.data,
        suppress_logging: b.suppress_logging,
        trigger_rebind_event: b.trigger_rebind_event,
        always_flush: b.always_flush,
    });
    HttpResponse::Ok().json(json!({}))
}
