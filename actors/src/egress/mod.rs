//! Egress: where outbound traffic leaves from. Between the scheduled queues and the protocols,
//! this layer turns a queue's `egress_pool` into one source per promoted message (weighted round
//! robin over the pool's sources, per scheduled queue) and keys ready queues by source and site.

pub mod mta_sts;
pub mod pools;
pub mod ready_queue;
pub mod resolve_path;

pub use pools::{Chosen, EgressPools, ResolvedPool};
