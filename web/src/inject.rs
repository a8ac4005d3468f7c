//! `POST /api/inject/v1` (KumoMTA's injection API): bound the body, hand it to
//! `ferry_actors::inject`, translate the answer. Rendering, policy and spooling happen there.

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, post, web};
use ferry_actors::inject::{InjectCall, InjectError};
use futures_util::StreamExt;

use crate::errors::json_error;
use crate::{AppState, Authorized};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(inject_v1);
}

/// The body, refused with 413 as soon as it is known to exceed `limit` (by Content-Length, or
/// while it streams in): a large body is never buffered whole, let alone parsed.
async fn bounded_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, HttpResponse> {
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than http.max_inject_size ({limit} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `{"success_count","fail_count","failed_recipients","errors"}` once every message made is
/// spooled (fsync); a per-recipient failure (render error, policy rejection) is listed there and
/// the others are spooled. A bad request is refused whole with 400 naming the field.
#[utoipa::path(tag = "inject", request_body(content = serde_json::Value, content_type = "application/json", description = "KumoMTA's InjectV1Request: envelope_sender, recipients, content (RFC 5322 string or {subject, from, reply_to, headers, text_body, html_body, amp_html_body, attachments}), substitutions, template_dialect"), responses((status = 200, description = "InjectV1Response", body = serde_json::Value), (status = 400, description = "Bad JSON, unknown field, template syntax error or invalid address; nothing spooled", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token"), (status = 413, description = "Body larger than http.max_inject_size"), (status = 415, description = "Content-Type is not application/json"), (status = 503, description = "Spool or policy unavailable; nothing spooled", body = crate::errors::ErrorBody), (status = 507, description = "Spool full; nothing spooled", body = crate::errors::ErrorBody)))]
#[post("/api/inject/v1")]
async fn inject_v1(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Some(given) = req.headers().get("content-type") {
        let media = given.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be application/json, not {media:?}"),
            );
        }
    }
    let body = match bounded_body(&req, payload, state.injector.max_size).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let (Some(peer), local) = (req.peer_addr(), req.app_config().local_addr()) else {
        return json_error(StatusCode::BAD_REQUEST, "no peer address");
    };
    let auth = req.extensions().get::<Authorized>().map_or("trusted_hosts", |a| a.0);
    match state.injector.inject(InjectCall { body, peer, local, auth }).await {
        Ok(response) => HttpResponse::Ok().json(response),
        Err(e) => {
            let status = match e {
                InjectError::BadRequest(_) => StatusCode::BAD_REQUEST,
                InjectError::SpoolFull(_) => StatusCode::INSUFFICIENT_STORAGE,
                InjectError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            json_error(status, e.to_string())
        }
    }
}
