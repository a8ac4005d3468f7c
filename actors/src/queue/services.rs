//! Handles every queue and delivery actor needs. Cloned into each; all cheap to clone.

use std::sync::{Arc, Mutex};

use actix::Addr;
use actix_rt::ArbiterHandle;

use super::manager::QueueManager;
use crate::delivery::DeliveryManager;
use crate::delivery::mx::Resolver;
use crate::logging::Logger;
use crate::model::admin::{Bounces, Suspensions};
use crate::model::ready_queue_suspension::ReadyQueueSuspensions;
use crate::policy::PolicyPool;
use crate::spool::{Spool, SpoolWriter};

/// Outbound delivery settings that are the node's, not an egress path's.
#[derive(Clone)]
pub struct DeliverySettings {
    /// EHLO name when neither the egress path nor the source names one.
    pub ehlo_name: String,
    /// Outbound STARTTLS configs (system roots + `[tls] ca_file`, and the insecure one); None:
    /// delivery never starts TLS.
    pub client_tls: Option<Arc<crate::tls::ClientTls>>,
}

impl std::fmt::Debug for DeliverySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeliverySettings({}, tls: {})", self.ehlo_name, self.client_tls.is_some())
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self { ehlo_name: "localhost".into(), client_tls: None }
    }
}

#[derive(Clone)]
pub struct Services {
    pub spool: Spool,
    pub writer: SpoolWriter,
    pub logger: Logger,
    pub policy: PolicyPool,
    pub suspensions: Arc<Mutex<Suspensions>>,
    pub bounces: Arc<Mutex<Bounces>>,
    /// `suspend-ready-q` directives, by ready queue name.
    pub ready_suspensions: Arc<Mutex<ReadyQueueSuspensions>>,
    pub queues: Addr<QueueManager>,
    pub delivery: Addr<DeliveryManager>,
    pub xfer: Addr<crate::xfer::XferSupervisor>,
    pub settings: Arc<DeliverySettings>,
    pub resolver: Arc<Resolver>,
    /// MTA-STS policies of destination domains, cached by their max_age.
    pub mta_sts: Arc<crate::egress::mta_sts::MtaStsCache>,
    /// Arbiters that run delivery connections, round robin.
    pub workers: Arc<Vec<ArbiterHandle>>,
    /// This node's UUID (log records, xfer loop guard) and its message-id node field.
    pub node_id: uuid::Uuid,
    pub node_field: [u8; 6],
    pub xfer_settings: Arc<crate::xfer::XferSettings>,
    /// Admin xfer sweeps being followed (`ferry xfer --wait`).
    pub sweeps: Arc<crate::xfer::Sweeps>,
    /// `[cluster]`: where admin directives made here are announced; None: they stay local.
    pub cluster: Option<crate::cluster::ClusterLink>,
}

impl Services {
    /// This node, as the origin of a directive it makes.
    pub fn origin(&self) -> crate::model::cluster::Origin {
        match &self.cluster {
            Some(link) => link.origin(self.node_id),
            None => crate::model::cluster::Origin::local(self.node_id),
        }
    }

    /// Tell the cluster about a directive made here (nothing without `[cluster]`).
    pub(crate) fn announce(&self, d: crate::model::cluster::Directive) {
        if let Some(link) = &self.cluster {
            link.made(d);
        }
    }

    /// Tell the cluster a directive was cancelled here.
    pub(crate) fn announce_cancel(&self, key: crate::model::cluster::DirectiveKey) {
        if let Some(link) = &self.cluster {
            link.cancelled(key);
        }
    }
}
