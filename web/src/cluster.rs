//! `GET /api/admin/cluster/v1` (Ferry extension, issue 17 item 5): the nodes seen in the
//! cluster's Redis at this node's last heartbeat.

use actix_web::{HttpResponse, get, web};
use serde_json::json;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::AppState;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(cluster_view);
}

#[utoipa::path(tag = "admin", responses((status = 200, description = "`{cluster, connected, node_id, nodes: [{node_id, node_url, version, scheduled, ready, last_heartbeat}]}`: `cluster` false (and no nodes) without `[cluster]`; `connected` false while Redis is unreachable (nodes as last seen)", body = serde_json::Value), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/cluster/v1")]
async fn cluster_view(state: web::Data<AppState>) -> HttpResponse {
    let services = &state.services;
    let body = match &services.cluster {
        Some(link) => {
            let view = link.view();
            json!({"cluster": true, "connected": view.connected, "node_id": services.node_id, "nodes": view.nodes})
        }
        None => json!({"cluster": false, "connected": false, "node_id": services.node_id, "nodes": []}),
    };
    HttpResponse::Ok().json(body)
}
