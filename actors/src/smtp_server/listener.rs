//! Accepts SMTP connections and runs each session on one of the worker arbiters, round robin.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_rt::ArbiterHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::reception::{Connection, Reception};
use super::session::{Session, SessionSettings};

/// Accept until `shutdown` turns true. Each session holds a clone of `done`; when the receiver
/// sees every clone dropped, all sessions have ended.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<SessionSettings>,
    reception: Arc<Reception>,
    workers: Vec<ArbiterHandle>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let local = stream.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let _ = stream.set_nodelay(true);
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand over connection");
                continue;
            }
        };
        let (settings, reception, shutdown, done) =
            (settings.clone(), reception.clone(), shutdown.clone(), done.clone());
        let session = async move {
            let _done = done;
            let stream = match tokio::net::TcpStream::from_std(std_stream) {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "cannot register connection"),
            };
            let conn = Connection { peer, local, ehlo: String::new() };
            let span = tracing::info_span!("smtp", peer = %peer);
            let _ = tracing::Instrument::instrument(
                Session::new(stream, conn, settings, reception, shutdown).run(),
                span,
            )
            .await;
        };
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        if !worker.spawn(session) {
            tracing::error!("SMTP worker arbiter has stopped; connection dropped");
        }
    }
}
