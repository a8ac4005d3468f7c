//! The cluster's Redis room (issue 17, items 3 and 5): cluster-wide admin directives and the
//! node heartbeats behind the cluster view. The rules (encoding, merge, expiry) are in
//! `model::cluster` and `model::cluster_node`; this module only talks to Redis and to the two
//! actors that hold directives.
//!
//! Actors hold a [`ClusterLink`] (in `Services`) and tell it what they made or cancelled; the
//! [`ClusterInbox`] task stores and announces it, applies what peers announce through the same
//! handlers as local requests ([`ApplyDirective`], [`CancelDirective`]), and heartbeats.

mod session;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::model::cluster::{Directive, DirectiveKey, Origin};
use crate::model::cluster_node::NodeHeartbeat;

/// What an actor tells the cluster task.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Made(Box<Directive>),
    Cancelled(DirectiveKey),
}

/// The nodes seen at the last heartbeat.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Redis answered the last heartbeat.
    pub connected: bool,
    pub nodes: Vec<NodeHeartbeat>,
}

/// The actors' handle on the cluster: cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterLink {
    tx: mpsc::UnboundedSender<Outgoing>,
    node_url: Arc<OnceLock<String>>,
    view: Arc<Mutex<ClusterView>>,
}

/// The receiving end, run by [`ClusterInbox::run`].
pub struct ClusterInbox {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    node_url: Arc<OnceLock<String>>,
    view: Arc<Mutex<ClusterView>>,
}

impl ClusterLink {
    pub fn new() -> (ClusterLink, ClusterInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (node_url, view) = (Arc::new(OnceLock::new()), Arc::default());
        let inbox = ClusterInbox { rx, node_url: Arc::clone(&node_url), view: Arc::clone(&view) };
        (ClusterLink { tx, node_url, view }, inbox)
    }

    /// This node as the origin of a directive it makes.
    pub fn origin(&self, node_id: uuid::Uuid) -> Origin {
        Origin { node_id, node_url: self.node_url.get().cloned() }
    }

    pub(crate) fn made(&self, d: Directive) {
        let _ = self.tx.send(Outgoing::Made(Box::new(d)));
    }

    pub(crate) fn cancelled(&self, key: DirectiveKey) {
        let _ = self.tx.send(Outgoing::Cancelled(key));
    }

    /// The nodes seen in Redis (`GET /api/admin/cluster/v1`).
    pub fn view(&self) -> ClusterView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// What the task needs to know about this node.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `[cluster] redis`; never logged as it is (it may carry a password).
    pub redis_url: String,
    pub node_id: uuid::Uuid,
    /// `[cluster] node_url`, or the HTTP listener's address.
    pub node_url: String,
    pub heartbeat_interval: Duration,
    pub version: String,
}

/// The actors the task applies peers' directives to.
#[derive(Clone)]
pub struct Handles {
    pub queues: Addr<crate::queue::QueueManager>,
    pub delivery: Addr<crate::delivery::DeliveryManager>,
}

impl Handles {
    fn apply(&self, d: Directive) {
        match d {
            Directive::SuspendReadyQ(_) => self.delivery.do_send(ApplyDirective(d)),
            _ => self.queues.do_send(ApplyDirective(d)),
        }
    }

    fn cancel(&self, key: DirectiveKey) {
        match key.0 {
            crate::model::cluster::DirectiveKind::SuspendReadyQ => {
                self.delivery.do_send(CancelDirective(key))
            }
            _ => self.queues.do_send(CancelDirective(key)),
        }
    }
}

/// A peer's directive (or one found in Redis at start): applied like a local one, not announced.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ApplyDirective(pub Directive);

/// A peer cancelled a directive: removed like a local cancel, not announced.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CancelDirective(pub DirectiveKey);

impl ClusterInbox {
    /// Runs until the actors' links are all dropped.
    pub async fn run(self, settings: ClusterSettings, handles: Handles) {
        let _ = self.node_url.set(settings.node_url.clone());
        session::run(self.rx, self.view, settings, handles).await;
    }
}
