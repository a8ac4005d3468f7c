//! `POST /api/xfer/inject/v1` (SPEC §4.3) and the batch form `POST /api/xfer/inject-batch/v1`
//! (docs/xfer-protocol.md): translate the request for `xfer::inject` and its answer back to HTTP.

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use ferry_actors::xfer::codec::BATCH_CONTENT_TYPE;
use ferry_actors::xfer::inject::{InjectRequest, Refused, inject, inject_batch};
use serde_json::json;

use crate::errors::json_error;
use crate::{AppState, Authorized};

pub fn routes(cfg: &mut web::ServiceConfig, body_limit: usize) {
    // The limit that matters is applied after decompression; this one bounds the wire.
    let wire = web::PayloadConfig::new(body_limit + 1);
    cfg.service(web::resource("/api/xfer/inject/v1").app_data(wire.clone()).route(web::post().to(inject_v1)))
        .service(
            web::resource("/api/xfer/inject-batch/v1").app_data(wire).route(web::post().to(inject_batch_v1)),
        );
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
