//! `POST /api/xfer/inject/v1` (SPEC §4.3) and the batch form `POST /api/xfer/inject-batch/v1`
//! (docs/xfer-protocol.md): translate the request for `xfer::inject` and its answer back to HTTP.

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, post, web};
use ferry_actors::xfer::codec::BATCH_CONTENT_TYPE;
use ferry_actors::xfer::inject::{InjectRequest, Refused, inject, inject_batch};
use serde_json::json;

use crate::errors::json_error;
use crate::{AppState, Authorized};

/// The wire limit is an app-wide `PayloadConfig` (see `crate::routes`); the limit that matters is
/// applied after decompression.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(inject_v1).service(inject_batch_v1);
}

fn request(
    state: &AppState,
    req: &HttpRequest,
    body: web::Bytes,
    content_type: &str,
) -> Result<InjectRequest, Refused> {
    let (Some(peer), local) = (req.peer_addr(), req.app_config().local_addr()) else {
        return Err(Refused { status: 400, message: "no peer address".into() });
    };
    // An absent Content-Type is tolerated; a different one is a client talking the wrong protocol.
    if let Some(given) = req.headers().get("content-type") {
        let media = given.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(content_type) {
            return Err(Refused {
                status: 415,
                message: format!("Content-Type must be {content_type}, not {media:?}"),
            });
        }
    }
    let content_encoding =
        req.headers().get("content-encoding").and_then(|v| v.to_str().ok()).map(str::to_string);
    let auth = req.extensions().get::<Authorized>().map_or("trusted_hosts", |a| a.0);
    Ok(InjectRequest { body, content_encoding, peer, local, limit: state.xfer_body_limit, auth })
}

fn refusal(r: Refused) -> HttpResponse {
    json_error(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), r.message)
}

#[utoipa::path(tag = "xfer", request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "gzip: JSON line, newline, raw message (SPEC §4.3)"), responses((status = 200, description = "`{\"id\"}`: stored with fsync, or already here", body = serde_json::Value), (status = 400, description = "Malformed body; nothing stored", body = crate::errors::ErrorBody), (status = 401, description = "Not a trusted host and no valid bearer token"), (status = 413, description = "Larger than xfer.max_body_size after decompression"), (status = 415, description = "Wrong Content-Type"), (status = 507, description = "Spool full (spool.map_size); nothing stored, retry later", body = crate::errors::ErrorBody)))]
#[post("/api/xfer/inject/v1")]
async fn inject_v1(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let request = match request(&state, &req, body, "application/octet-stream") {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    match inject(&state.services, request).await {
        Ok(id) => HttpResponse::Ok().json(json!({"id": id.to_string()})),
        Err(r) => refusal(r),
    }
}

/// `200 {"results":[{"id":…} | {"status":…,"error":…}, …]}`, one entry per message in order;
/// a request whose framing is bad is refused whole, with nothing stored.
#[utoipa::path(tag = "xfer", request_body(content = Vec<u8>, content_type = "application/x-ferry-xfer-batch", description = "gzip: items of JSON line with size, newline, raw bytes (docs/xfer-protocol.md)"), responses((status = 200, description = "`{\"results\":[…]}`, one per message in order (`{\"status\":507,…}` for each message a full spool could not take)", body = serde_json::Value), (status = 400, description = "Malformed body; nothing stored", body = crate::errors::ErrorBody), (status = 401, description = "Not a trusted host and no valid bearer token"), (status = 413, description = "Larger than xfer.max_body_size after decompression"), (status = 415, description = "Wrong Content-Type")))]
#[post("/api/xfer/inject-batch/v1")]
async fn inject_batch_v1(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let request = match request(&state, &req, body, BATCH_CONTENT_TYPE) {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    match inject_batch(&state.services, request).await {
        Ok(results) => {
            let results: Vec<_> = results
                .into_iter()
                .map(|r| match r {
                    Ok(id) => json!({"id": id.to_string()}),
                    Err(Refused { status, message }) => json!({"status": status, "error": message}),
                })
                .collect();
            HttpResponse::Ok().json(json!({ "results": results }))
        }
        Err(r) => refusal(r),
    }
}
