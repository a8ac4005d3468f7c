//! Bad requests get 400 with a message naming what is wrong (the JSON field, the query key).

use actix_web::error::{InternalError, JsonPayloadError, QueryPayloadError};
use actix_web::{HttpResponse, web};

fn bad_request(message: String) -> actix_web::Error {
    InternalError::from_response(
        message.clone(),
        HttpResponse::BadRequest().json(serde_json::json!({"error": message})),
    )
    .into()
}

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(1 << 20)
        .error_handler(|err: JsonPayloadError, _| bad_request(format!("invalid JSON body: {err}")))
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err: QueryPayloadError, _| bad_request(format!("invalid query: {err}")))
}

/// Every error answer: `{"error": "<what was wrong>"}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

pub fn json_error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": message.into()}))
}
