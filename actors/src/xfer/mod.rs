//! Moving queued messages between nodes (SPEC §4): the wire codec, the receiving endpoint's
//! logic, the XferSupervisor with one XferTarget actor per peer, and the admin transitions.

pub mod admin;
pub mod codec;
pub mod inject;
pub mod progress;
mod sender;
mod supervisor;

pub use progress::{SweepStatus, Sweeps};
pub use supervisor::{AttachXfer, Transfer, XferSupervisor, XferTarget};

/// `[xfer]` and the outbound half of `[http] bearer_token`.
#[derive(Debug, Clone)]
pub struct XferSettings {
    /// Requests in flight per target (SPEC §4.1: 32).
    pub concurrency: usize,
    /// Messages per batch request; 1 = the single-message form only.
    pub batch_size: usize,
    /// A batch request closes once its messages add up to this many bytes.
    pub batch_bytes: usize,
    /// Sent as `Authorization: Bearer` to peers.
    pub token: Option<String>,
    /// A target actor with nothing to do for this long is retired.
    pub idle_timeout: std::time::Duration,
    /// Verifies https:// targets (system roots, `[tls] ca_file`, `[xfer] ca_file`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// An HTTP client for peers: https:// targets are verified with `tls`.
pub fn http_client(
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    timeout: std::time::Duration,
) -> awc::Client {
    let builder = awc::Client::builder().timeout(timeout).disable_redirects();
    match tls {
        Some(config) => builder.connector(awc::Connector::new().rustls_0_23(config.clone())).finish(),
        None => builder.finish(),
    }
}

impl Default for XferSettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            batch_size: 100,
            batch_bytes: 8 << 20,
            token: None,
            idle_timeout: std::time::Duration::from_secs(600),
            tls: None,
        }
    }
}
