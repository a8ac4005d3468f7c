//! Accepts SMTP connections and runs each session on one of the worker arbiters, round robin.
//!
//! The accept loop is the first line of defence: a connection over `smtp.max_connections` in
//! total, or over `smtp.max_connections_per_ip` from one address, is told `421 4.3.2` and closed
//! before any session exists, and counted (`total_connections_denied`). When `accept` itself
//! fails (out of descriptors: EMFILE/ENFILE) the loop backs off and logs at most once a second.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_rt::ArbiterHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::reception::{Connection, Reception};
use super::session::{Session, SessionSettings};

/// `smtp.max_connections` and `smtp.max_connections_per_ip`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

/// Open sessions, in total and per client address.
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A slot in [`Open`], given back when the session ends (whichever arbiter it ran on).
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
        crate::metrics::metrics().smtp_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Take a slot for `ip`, or None when a limit is reached.
fn admit(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: Limits) -> Option<Slot> {
    let mut guard = open.lock().unwrap_or_else(|p| p.into_inner());
    let from_ip = guard.per_ip.get(&ip).copied().unwrap_or(0);
    if guard.total >= limits.max_connections || from_ip >= limits.max_connections_per_ip {
        return None;
    }
    guard.total += 1;
    *guard.per_ip.entry(ip).or_insert(0) += 1;
    crate::metrics::metrics().smtp_connections.fetch_add(1, Ordering::Relaxed);
    Some(Slot { open: open.clone(), ip })
}

/// Tell a client over the limits to come back later, without waiting on it: the reply fits any
/// socket buffer, and a client that is not reading loses nothing it could have used.
/// Counted before the reply, so a client that has read the 421 finds it counted.
fn refuse(stream: TcpStream, hostname: &str) {
    crate::metrics::metrics().connections_denied.fetch_add(1, Ordering::Relaxed);
    let reply = format!("421 4.3.2 {hostname} Too many connections, try again later\r\n");
    let _ = stream.try_write(reply.as_bytes());
}

/// Accept until `shutdown` turns true. Each session holds a clone of `done`; when the receiver
/// sees every clone dropped, all sessions have ended.
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    settings: Arc<SessionSettings>,
    reception: Arc<Reception>,
    workers: Vec<ArbiterHandle>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let mut next = 0usize;
    let mut accept_errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; sessions ending free descriptors.
                accept_errors.note(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&open, peer.ip(), limits) else {
            tracing::debug!(%peer, "connection refused: smtp.max_connections or max_connections_per_ip reached");
            refuse(stream, &settings.hostname);
            continue;
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
            let _slot = slot;
            let stream = match tokio::net::TcpStream::from_std(std_stream) {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "cannot register connection"),
            };
            let conn = Connection { peer, local, ehlo: String::new(), tls: None, auth: None };
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

/// Failed accepts, logged at most once a second with the count since the last line.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        self.unlogged += 1;
        if self.last_logged.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        let hint = match e.raw_os_error() {
            Some(libc::EMFILE) => " (out of file descriptors for this process: raise its limit)",
            Some(libc::ENFILE) => " (the system is out of file descriptors)",
            _ => "",
        };
        tracing::error!(error = %e, failures = self.unlogged, "SMTP accept failed; backing off{hint}");
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_address_and_come_back() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = Limits { max_connections: 3, max_connections_per_ip: 2 };
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let a1 = admit(&open, a, limits).unwrap();
        let _a2 = admit(&open, a, limits).unwrap();
        assert!(admit(&open, a, limits).is_none(), "third from one address");
        let _b1 = admit(&open, b, limits).unwrap();
        assert!(admit(&open, b, limits).is_none(), "fourth in total");
        drop(a1);
        assert!(admit(&open, b, limits).is_some(), "a freed slot is reusable");
        drop(_a2);
        assert_eq!(open.lock().unwrap().per_ip.get(&a), None, "an address with no session is forgotten");
    }
}
