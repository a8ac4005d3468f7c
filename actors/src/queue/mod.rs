//! Scheduled queues: a [`QueueManager`] that finds or creates one [`ScheduledQueue`] actor per
//! queue name, and the requeue path every transient failure takes. A queue actor owns only its
//! messages' (due, id) pairs and one timer; bodies stay in the spool.

pub mod admin;
mod inspect;
pub mod load;
mod manager;
pub(crate) mod records;
mod remote;
pub mod requeue;
mod scheduled;
mod services;

pub use admin::{BounceQueues, BounceView, CancelBounce, ListBounces, RebindQueues};
pub use inspect::InspectQueue;
pub use manager::{
    Attach, CancelSuspension, Insert, InsertEnumerated, ListSuspensions, MatchingQueues, QueueManager,
    ReadyHasRoom, Suspend, SuspensionView, Waiting,
};
pub use records::{Attempt, EgressUsed, Records};
pub use scheduled::{DrainWaiting, ScheduledQueue};
pub use services::{DeliverySettings, Services};
