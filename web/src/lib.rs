//! ferry-web: the HTTP surface. Routes translate HTTP to actor messages and back; they hold no
//! state and no business logic of their own.

mod admin;
mod errors;
mod xfer;

use std::sync::Arc;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpResponse, web};
use ferry_actors::queue::{QueueManager, Services};
use ferry_config::Cidr;

/// What the handlers talk to.
#[derive(Clone)]
pub struct AppState {
    pub queues: Addr<QueueManager>,
    pub services: Services,
    pub trusted_hosts: Arc<Vec<Cidr>>,
}

/// Register every route. `state` is None only in tests of the state-free routes.
pub fn routes(state: Option<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.route("/api/check-liveness/v1", web::get().to(check_liveness));
        if let Some(state) = state {
            cfg.app_data(web::Data::new(state))
                .app_data(errors::json_config())
                .app_data(errors::query_config());
            admin::routes(cfg);
            xfer::routes(cfg);
        }
    }
}

/// Admin routes answer only peers in `trusted_hosts` (SPEC §4.3 / issue: default loopback).
pub async fn trusted_only(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let allowed = match (req.app_data::<web::Data<AppState>>(), req.peer_addr()) {
        _ if req.path() == "/api/check-liveness/v1" => true,
        (Some(state), Some(peer)) => ferry_config::cidr::any_contains(&state.trusted_hosts, peer.ip()),
        (None, _) => true,
        _ => false,
    };
    if !allowed {
        // SPEC §4.3: an untrusted xfer peer gets 401; other admin calls 403.
        let mut resp = if req.path().starts_with("/api/xfer/") {
            HttpResponse::Unauthorized()
        } else {
            HttpResponse::Forbidden()
        };
        let resp = resp.json(serde_json::json!({"error": "this address is not in http.trusted_hosts"}));
        return Ok(req.into_response(resp).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// 200 while the node runs; load balancers and tests poll it.
async fn check_liveness() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("OK")
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test};

    #[actix_web::test]
    async fn liveness_answers_ok() {
        let app = test::init_service(App::new().configure(super::routes(None))).await;
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/api/check-liveness/v1").to_request())
                .await;
        assert!(resp.status().is_success());
        assert_eq!(test::read_body(resp).await, "OK");
    }
}
