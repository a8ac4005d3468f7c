//! ferry-web: the HTTP surface. Routes translate HTTP to actor messages and back; they hold no
//! state and no business logic of their own.

use actix_web::{HttpResponse, web};

/// Register every route on an actix-web app.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/check-liveness/v1", web::get().to(check_liveness));
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
        let app = test::init_service(App::new().configure(super::routes)).await;
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/api/check-liveness/v1").to_request())
                .await;
        assert!(resp.status().is_success());
        assert_eq!(test::read_body(resp).await, "OK");
    }
}
