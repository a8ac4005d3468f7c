//! Pure rules and data types: no actors, no I/O. Everything here is unit-tested in place.

pub mod dkim;
pub mod event_time;
pub mod headers;
pub mod id;
pub mod message;
pub mod mta_sts;
pub mod queue_name;
pub mod record;
pub mod scheduling;
pub mod spool_room;
pub mod throttle;
pub mod tls_policy;
pub mod ttl_cache;

pub use id::{MessageId, MessageIdGenerator};
pub use message::{Message, SpoolMeta};
pub use record::{LogRecord, RecordType, Response};
pub mod address;
pub mod address_header;
pub mod admin;
pub mod batch;
pub mod bounce_classifier;
pub mod drain_rate;
pub mod egress;
pub mod egress_constraints;
pub mod egress_path;
pub mod gcra;
pub mod insert_context;
pub mod line_endings;
pub mod log_hook;
pub mod metrics_history;
pub mod queue_config;
pub mod ready_queue_suspension;
pub mod retry;
pub mod xfer;
