//! `GET /api/admin/trace-smtp-server/v1` and `/api/admin/trace-smtp-client/v1`: websockets that
//! stream live SMTP trace events (KumoMTA's protocol, so `kcli trace-smtp-*` work). The client
//! sends its filter as the first text message; every event its filter admits then follows as one
//! JSON text message. Behind the admin middleware like every other admin route: a trace shows
//! mail traffic.

use actix_web::{HttpRequest, HttpResponse, get, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use ferry_actors::model::smtp_trace::{ClientTraceRequest, ServerTraceRequest, TraceEvent, TraceFilter};
use ferry_actors::smtp_trace::{CLIENT, SERVER, Subscription, Traced};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(trace_smtp_server).service(trace_smtp_client);
}

/// Inbound SMTP tracing over a websocket (send a `TraceSmtpV1Request` first).
#[utoipa::path(tag = "debugging", responses((status = 101, description = "Websocket: `TraceSmtpV1Event` JSON messages"), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/trace-smtp-server/v1")]
async fn trace_smtp_server(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    // Subscribed before the handshake answer unblocks the client: nothing it then causes is missed.
    let events = SERVER.subscribe();
    let (resp, session, stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(relay::<ServerTraceRequest>(session, stream, events));
    Ok(resp)
}

/// Outbound SMTP tracing over a websocket (send a `TraceSmtpClientV1Request` first).
#[utoipa::path(tag = "debugging", responses((status = 101, description = "Websocket: `TraceSmtpClientV1Event` JSON messages"), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/trace-smtp-client/v1")]
async fn trace_smtp_client(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let events = CLIENT.subscribe();
    let (resp, session, stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(relay::<ClientTraceRequest>(session, stream, events));
    Ok(resp)
}

/// A filter is a small JSON object; nothing else the client sends is read.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Read the filter, then forward what it admits until either side goes away.
async fn relay<F>(
    mut session: actix_ws::Session,
    stream: actix_ws::MessageStream,
    mut events: Subscription<TraceEvent<F::Payload>>,
) where
    F: TraceFilter + DeserializeOwned,
    TraceEvent<F::Payload>: Clone + Serialize + 'static,
{
    let mut stream = stream.max_frame_size(MAX_CLIENT_MESSAGE).aggregate_continuations();
    let filter: F = loop {
        match stream.next().await {
            Some(Ok(AggregatedMessage::Text(text))) => match serde_json::from_str(&text) {
                Ok(f) => break f,
                Err(e) => {
                    let description = format!("invalid trace request: {e}");
                    let _ = session
                        .close(Some(CloseReason { code: CloseCode::Invalid, description: Some(description) }))
                        .await;
                    return;
                }
            },
            Some(Ok(AggregatedMessage::Ping(p))) => {
                let _ = session.pong(&p).await;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            _ => return,
        }
    };
    loop {
        let out = tokio::select! {
            traced = events.next() => match traced {
                Traced::Event(e) => match filter.view(e) {
                    Some(e) => e,
                    None => continue,
                },
                // The subscriber is told, and goes on with what is still there.
                Traced::Lagged(n) => F::lagged(n),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(AggregatedMessage::Ping(p))) => {
                    if session.pong(&p).await.is_err() {
                        return;
                    }
                    continue;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => continue,
                // Close, an error, or anything else: the subscriber is done.
                _ => {
                    let _ = session.close(None).await;
                    return;
                }
            },
        };
        let Ok(json) = serde_json::to_string(&out) else { continue };
        if session.text(json).await.is_err() {
            return;
        }
    }
}
