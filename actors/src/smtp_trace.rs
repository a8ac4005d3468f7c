//! The two live-trace channels (inbound sessions, outbound connections) that the admin
//! websockets subscribe to. Publishing is free when nobody traces: the hot path reads one atomic
//! counter and builds nothing; only with a subscriber is an event built and broadcast.
//! A subscriber that falls behind loses the oldest events (and is told how many), never slows
//! SMTP: a broadcast send does not wait for readers.
//!
//! The channels are process-wide (like the metrics registry): every session and connection of
//! the node publishes to the same place, whichever actor owns it.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

use crate::model::smtp_trace::{ClientTraceEvent, ServerTraceEvent};

/// Events a subscriber may fall behind by before it starts losing them.
const CAPACITY: usize = 4096;

pub struct TraceHub<E> {
    tx: broadcast::Sender<E>,
    /// Live subscriptions; kept apart from the channel's own count, which takes a lock to read.
    subscribers: AtomicUsize,
}

impl<E: Clone> TraceHub<E> {
    fn new() -> Self {
        TraceHub { tx: broadcast::channel(CAPACITY).0, subscribers: AtomicUsize::new(0) }
    }

    /// Is anyone tracing? One relaxed load: call it before building anything to publish.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Build and broadcast an event, only if someone is subscribed.
    #[inline]
    pub fn publish(&self, event: impl FnOnce() -> E) {
        if self.is_active() {
            let _ = self.tx.send(event());
        }
    }

    /// Start receiving every event published from now on.
    pub fn subscribe(&'static self) -> Subscription<E> {
        let rx = self.tx.subscribe();
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription { rx, hub: self }
    }
}

/// A subscriber's end; dropping it stops the publishing when it was the last one.
pub struct Subscription<E: Clone + 'static> {
    rx: broadcast::Receiver<E>,
    hub: &'static TraceHub<E>,
}

/// What a subscriber gets next.
pub enum Traced<E> {
    Event(E),
    /// It fell behind and this many events were dropped for it.
    Lagged(u64),
}

impl<E: Clone> Subscription<E> {
    pub async fn next(&mut self) -> Traced<E> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Traced::Event(e),
                Err(broadcast::error::RecvError::Lagged(n)) => return Traced::Lagged(n),
                // The hubs are static: the sender never goes away. Wait rather than spin.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl<E: Clone> Drop for Subscription<E> {
    fn drop(&mut self) {
        self.hub.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Inbound SMTP sessions (`/api/admin/trace-smtp-server/v1`).
pub static SERVER: LazyLock<TraceHub<ServerTraceEvent>> = LazyLock::new(TraceHub::new);
/// Outbound SMTP connections (`/api/admin/trace-smtp-client/v1`).
pub static CLIENT: LazyLock<TraceHub<ClientTraceEvent>> = LazyLock::new(TraceHub::new);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::smtp_trace::ServerTracePayload;

    fn event(n: usize) -> ServerTraceEvent {
        ServerTraceEvent {
            conn_meta: serde_json::json!({"n": n}),
            payload: ServerTracePayload::Connected,
            when: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn nothing_is_built_without_a_subscriber_and_a_slow_one_is_told_it_lagged() {
        static HUB: LazyLock<TraceHub<ServerTraceEvent>> = LazyLock::new(TraceHub::new);
        HUB.publish(|| panic!("built with nobody tracing"));
        let mut sub = HUB.subscribe();
        assert!(HUB.is_active());
        for n in 0..CAPACITY + 10 {
            HUB.publish(|| event(n));
        }
        assert!(matches!(sub.next().await, Traced::Lagged(10)));
        match sub.next().await {
            Traced::Event(e) => assert_eq!(e.conn_meta["n"], 10),
            Traced::Lagged(_) => panic!("lagged twice"),
        }
        drop(sub);
        assert!(!HUB.is_active());
        HUB.publish(|| panic!("built after the last subscriber left"));
    }
}
