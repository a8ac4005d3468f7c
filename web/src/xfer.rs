//! `POST /api/xfer/inject/v1` (SPEC §4.3): translate the request for `xfer::inject` and its
//! answer back to HTTP.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use ferry_actors::xfer::inject::{DEFAULT_BODY_LIMIT, InjectRequest, inject};

use crate::AppState;
use crate::errors::json_error;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/xfer/inject/v1")
            // The limit that matters is applied after decompression; this one bounds the wire.
            .app_data(web::PayloadConfig::new(DEFAULT_BODY_LIMIT + 1))
            .route(web::post().to(inject_v1)),
    );
}

async fn inject_v1(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (Some(peer), local) = (req.peer_addr(), req.app_config().local_addr()) else {
        return json_error(StatusCode::BAD_REQUEST, "no peer address");
    };
    let content_encoding =
        req.headers().get("content-encoding").and_then(|v| v.to_str().ok()).map(str::to_string);
    let request = InjectRequest { body, content_encoding, peer, local, limit: DEFAULT_BODY_LIMIT };
    match inject(&state.services, request).await {
        Ok(id) => HttpResponse::Ok().json(serde_json::json!({"id": id.to_string()})),
        Err(r) => {
            json_error(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), r.message)
        }
    }
}
