//! ferry-actors: the engine. Pure rules live in `model`; each other module is one actor (or a small
//! family of them) that owns its state and talks to the rest by message.

pub mod cluster;
pub mod delivery;
pub mod dkim;
pub mod egress;
pub mod inject;
pub mod log_hooks;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod queue;
pub mod secrets;
pub mod smtp_server;
pub mod smtp_trace;
pub mod spool;
pub mod throttles;
pub mod tls;
pub mod xfer;
