//! `ferry`: the engine (`ferry serve`) and its operator tools. A library so that the
//! integration tests can build the very same binary as a target of their own package.

mod admin;
mod bench;
mod bench_dkim;
mod bench_inject;
mod bench_spool;
mod cli;
mod cluster;
mod inject;
mod node;
mod observe;
mod ready_q;
mod ready_queue_view;
mod serve;
mod sparkline;
mod trace;
mod xfer_wait;

pub(crate) use cli::EXIT_CONFIG;
pub use cli::main;
