//! Test harness: real `ferry` processes on 127.0.0.1 with ephemeral ports, talked to over real SMTP
//! and HTTP, observed through their log records (`ferry logs`) and spool (`ferry spool list`).

pub mod browser;
pub mod dkim;
pub mod dns;
pub mod http;
pub mod node;
pub mod peer;
pub mod redis;
pub mod requires;
pub mod sink;
pub mod smtp;
pub mod tls;
pub mod trace;
pub mod wait;
pub mod webhook;

pub use node::FerryNode;
pub use smtp::RawSmtp;
pub use wait::wait_until;
