//! `POST /api/admin/set_diagnostic_log_filter/v1`: change the node's diagnostic (stderr tracing)
//! filter while it runs, as KumoMTA's `kcli set-log-filter` does. `FERRY_LOG` stays the filter a
//! node starts with; a change lasts until the next change or restart.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, post, web};
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::AppState;
use crate::errors::json_error;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(set_diagnostic_log_filter);
}

/// Why a filter was not applied.
#[derive(Debug)]
pub enum FilterError {
    /// The directive does not parse; the parser's message. The current filter stays.
    Invalid(String),
    /// The filter could not be swapped (the subscriber is gone).
    Unavailable(String),
}

/// Parses a directive and puts it in force.
type SetFilter = dyn Fn(&str) -> Result<(), FilterError> + Send + Sync;

/// Replaces the diagnostic filter. `ferry serve` builds it around its tracing reload handle, so
/// this crate needs to know nothing of the subscriber's layers.
#[derive(Clone)]
pub struct DiagnosticFilter(Arc<SetFilter>);

impl DiagnosticFilter {
    pub fn new(set: impl Fn(&str) -> Result<(), FilterError> + Send + Sync + 'static) -> Self {
        DiagnosticFilter(Arc::new(set))
    }

    pub fn set(&self, directive: &str) -> Result<(), FilterError> {
        (self.0)(directive)
    }
}

/// KumoMTA's `SetDiagnosticFilterRequest`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetDiagnosticFilterRequest {
    /// A tracing `EnvFilter` directive, e.g. `info,ferry_actors::delivery=debug`.
    #[schema(example = "info,policy=debug")]
    filter: String,
}

/// The reply is empty, as KumoMTA's (its `kcli` then prints `OK`).
#[utoipa::path(tag = "admin", request_body = SetDiagnosticFilterRequest, responses((status = 200, description = "The filter is in force (empty body)"), (status = 400, description = "The filter does not parse (the error names `filter` and quotes the parser), or bad JSON; the current filter stays", body = crate::errors::ErrorBody), (status = 503, description = "This process's diagnostic filter cannot be changed", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[post("/api/admin/set_diagnostic_log_filter/v1")]
async fn set_diagnostic_log_filter(
    state: web::Data<AppState>,
    body: web::Json<SetDiagnosticFilterRequest>,
) -> HttpResponse {
    let Some(control) = &state.diagnostic_filter else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process's diagnostic filter is not reloadable",
        );
    };
    match control.set(&body.filter) {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(FilterError::Invalid(why)) => json_error(
            StatusCode::BAD_REQUEST,
            format!("filter {:?} is not a valid filter: {why}", body.filter),
        ),
        Err(FilterError::Unavailable(why)) => json_error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}
