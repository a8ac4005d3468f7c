//! ferry-web: the HTTP surface. Routes translate HTTP to actor messages and back; they hold no
//! state and no business logic of their own.

mod admin;
mod cluster;
mod directives;
mod errors;
mod inject;
mod inspect_message;
mod log_filter;
mod observe;
mod prometheus;
mod ready_queue;
mod trace;
mod xfer;

use std::sync::Arc;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpMessage, HttpResponse, get, web};
use ferry_actors::queue::{QueueManager, Services};
use ferry_config::Cidr;
pub use log_filter::{DiagnosticFilter, FilterError};

/// What the handlers talk to.
#[derive(Clone)]
pub struct AppState {
    pub queues: Addr<QueueManager>,
    pub services: Services,
    pub trusted_hosts: Arc<Vec<Cidr>>,
    /// `[http] bearer_token`: admits a request from any address.
    pub token: Option<Arc<str>>,
    /// `[xfer] max_body_size`.
    pub xfer_body_limit: usize,
    /// `POST /api/inject/v1`: renders, runs policy and spools through the SMTP reception path.
    pub injector: Arc<ferry_actors::inject::Injector>,
    /// Swaps the stderr tracing filter (`set_diagnostic_log_filter`); None where the process's
    /// subscriber was not built reloadable.
    pub diagnostic_filter: Option<DiagnosticFilter>,
}

/// How the middleware admitted a request (a request extension): `trusted_hosts` or `bearer_token`.
#[derive(Debug, Clone, Copy)]
pub struct Authorized(pub &'static str);

/// Register every route, documenting each in the OpenAPI description as it is registered.
/// `state` is None only in tests of the state-free routes.
pub fn routes(state: Option<AppState>) -> impl FnOnce(&mut utoipa_actix_web::service_config::ServiceConfig) {
    move |cfg| {
        cfg.service(check_liveness);
        if let Some(state) = state {
            // Bounds the xfer bodies on the wire (JSON bodies have their own 1 MiB limit).
            let wire = web::PayloadConfig::new(state.xfer_body_limit + 1);
            cfg.app_data(web::Data::new(state))
                .app_data(errors::json_config())
                .app_data(errors::query_config())
                .app_data(wire);
            endpoints(cfg);
        }
    }
}

/// Every endpoint that needs [`AppState`] (all but liveness).
fn endpoints(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    admin::routes(cfg);
    cluster::routes(cfg);
    inspect_message::routes(cfg);
    log_filter::routes(cfg);
    directives::routes(cfg);
    observe::routes(cfg);
    ready_queue::routes(cfg);
    xfer::routes(cfg);
    inject::routes(cfg);
    trace::routes(cfg);
}

/// The OpenAPI description of every endpoint, as a running node serves it at
/// `GET /api-docs/openapi.json` (the manual's coverage test reads it).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(api_info())
        .configure(|cfg| {
            cfg.service(check_liveness);
            endpoints(cfg);
        })
        .split_for_parts();
    api
}

/// The whole HTTP surface on `app`, plus `GET /api-docs/openapi.json` describing it.
pub fn build<T>(app: actix_web::App<T>, state: Option<AppState>) -> actix_web::App<T>
where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
{
    use utoipa_actix_web::AppExt;
    let mut methods: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let app = app.into_utoipa_app().openapi(api_info()).configure(routes(state)).openapi_service(|api| {
        for (path, item) in &api.paths.paths {
            let allowed = serde_json::to_value(item)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.keys().map(|k| k.to_ascii_uppercase()).collect()))
                .unwrap_or_default();
            methods.insert(path.clone(), allowed);
        }
        let json = api.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        web::resource("/api-docs/openapi.json").route(web::get().to(move || {
            let json = json.clone();
            async move { HttpResponse::Ok().content_type("application/json").body(json) }
        }))
    });
    // A known path asked with a method it does not take is a 405 naming the ones it does.
    let methods = std::sync::Arc::new(methods);
    app.into_app().default_service(web::to(move |req: actix_web::HttpRequest| {
        let methods = methods.clone();
        async move {
            match methods.get(req.path()) {
                Some(allowed) => {
                    HttpResponse::MethodNotAllowed().insert_header(("Allow", allowed.join(", "))).json(
                        serde_json::json!({"error": format!("{} takes {}", req.path(), allowed.join(", "))}),
                    )
                }
                None => HttpResponse::NotFound()
                    .json(serde_json::json!({"error": format!("no such endpoint: {}", req.path())})),
            }
        }
    }))
}

fn api_info() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{InfoBuilder, OpenApiBuilder};
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Ferry admin and xfer API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "KumoMTA-compatible admin endpoints (SPEC §5), HTTP injection (`/api/inject/v1`), xfer inject (SPEC §4.3 and docs/xfer-protocol.md) and observation. \
                     Every endpoint but liveness answers only http.trusted_hosts or an `Authorization: Bearer` token.",
                ))
                .build(),
        )
        .build()
}

/// Admin and xfer routes answer only peers in `trusted_hosts` (default loopback) or requests
/// carrying the configured bearer token.
pub async fn trusted_only(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let admitted = match req.app_data::<web::Data<AppState>>() {
        _ if req.path() == "/api/check-liveness/v1" => Some("open"),
        None => Some("open"),
        Some(state) => {
            let bearer = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            // Either admits: a trusted host needs no token (and one without a token configured
            // ignores the header a token-carrying peer sends).
            match (bearer, &state.token) {
                (Some(given), Some(token)) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                    Some("bearer_token")
                }
                _ => req
                    .peer_addr()
                    .filter(|p| ferry_config::cidr::any_contains(&state.trusted_hosts, p.ip()))
                    .map(|_| "trusted_hosts"),
            }
        }
    };
    let Some(how) = admitted else {
        // SPEC §4.3: an untrusted xfer peer gets 401; other admin calls 403.
        let mut resp = if req.path().starts_with("/api/xfer/") {
            HttpResponse::Unauthorized()
        } else {
            HttpResponse::Forbidden()
        };
        let resp = resp.json(serde_json::json!({
            "error": "not allowed: this address is not in http.trusted_hosts and no valid bearer token was given"
        }));
        return Ok(req.into_response(resp).map_into_right_body());
    };
    req.extensions_mut().insert(Authorized(how));
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// Compare secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 200 while the node runs; load balancers and tests poll it. Open to every address.
#[utoipa::path(tag = "observe", responses((status = 200, description = "`OK`", body = String, content_type = "text/plain")))]
#[get("/api/check-liveness/v1")]
async fn check_liveness() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("OK")
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test};

    #[actix_web::test]
    async fn liveness_answers_ok() {
        let app = test::init_service(super::build(App::new(), None)).await;
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/api/check-liveness/v1").to_request())
                .await;
        assert!(resp.status().is_success());
        assert_eq!(test::read_body(resp).await, "OK");
    }
}

#[cfg(test)]
mod token_tests {
    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(super::constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!super::constant_time_eq(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!super::constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
    }
}

#[cfg(test)]
mod openapi_tests {
    use actix_web::{App, test};

    #[actix_web::test]
    async fn the_description_is_served_and_lists_what_is_registered() {
        let app = test::init_service(super::build(App::new(), None)).await;
        let req = test::TestRequest::get().uri("/api-docs/openapi.json").to_request();
        let doc: serde_json::Value = test::call_and_read_body_json(&app, req).await;
        assert_eq!(doc["info"]["title"], "Ferry admin and xfer API");
        // Without state only liveness is registered, and only it is described.
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(paths, ["/api/check-liveness/v1"]);
        assert!(doc["paths"]["/api/check-liveness/v1"]["get"].is_object());
        let req = test::TestRequest::post().uri("/api/check-liveness/v1").to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers().get("allow").unwrap(), "GET");
        let req = test::TestRequest::get().uri("/no/such/thing").to_request();
        assert_eq!(test::call_service(&app, req).await.status(), 404);
    }
}
