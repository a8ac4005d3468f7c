//! The configuration schema. Sections: `[node]`, `[smtp]`, `[http]`, `[spool]`, `[logs]`, `[policy]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;
use crate::{ByteSize, Cidr, HumanDuration};

/// The shipped example config; `ferry serve` without `--config` runs on exactly this text.
pub const EXAMPLE_CONFIG: &str = include_str!("../../examples/ferry.toml");
/// The shipped example policy, used when the embedded defaults are in force.
pub const EXAMPLE_POLICY: &str = include_str!("../../examples/policy.lua");
/// What error messages call the embedded defaults.
pub const EMBEDDED_NAME: &str = "<embedded examples/ferry.toml>";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub smtp: SmtpConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub xfer: XferConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[cluster]`: admin directives and the cluster view shared through Redis; absent: this node
    /// stands alone.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Where this config came from; not part of the TOML.
    #[serde(skip)]
    pub source: ConfigSource,
}

/// Where a config was read from, so relative paths and messages can refer to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ConfigSource {
    #[default]
    Embedded,
    File(PathBuf),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Node UUID; by default created on first start and kept in `data_dir/node_id`.
    pub id: Option<NodeId>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./ferry-data"), id: None }
    }
}

/// A hyphenated UUID string, validated at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(pub String);

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let groups: Vec<usize> = s.split('-').map(str::len).collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || groups != [8, 4, 4, 4, 12] {
            return Err(serde::de::Error::custom(format!(
                "invalid node id {s:?}: expected a hyphenated UUID such as 557f3ad4-2c8c-11ee-976e-782d7e12e173"
            )));
        }
        Ok(NodeId(s.to_ascii_lowercase()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub listen: SocketAddr,
    /// Name used in the greeting, EHLO reply and Received header; default: the machine's host name.
    pub hostname: Option<String>,
    pub relay_hosts: Vec<Cidr>,
    pub max_message_size: ByteSize,
    pub max_recipients: usize,
    /// Longest wait for any input from a client (per read).
    pub idle_timeout: HumanDuration,
    /// A whole command line must arrive within this, however it trickles in.
    pub command_timeout: HumanDuration,
    /// The whole DATA phase (354 to the final dot) must arrive within this.
    pub data_timeout: HumanDuration,
    /// A reply the client does not read for this long ends the session.
    pub write_timeout: HumanDuration,
    /// How long shutdown waits for open sessions before closing them.
    pub shutdown_grace: HumanDuration,
    /// Open sessions at most; one more gets 421 4.3.2.
    pub max_connections: usize,
    /// Open sessions from one client address at most.
    pub max_connections_per_ip: usize,
    /// What to do with a message containing a bare LF or bare CR (SMTP smuggling).
    pub invalid_line_endings: InvalidLineEndings,
    /// How a transaction's recipients are split into messages.
    pub batch_handling: BatchHandling,
    /// PEM certificate chain for STARTTLS, relative to the config file; with neither this nor
    /// `tls_private_key`, a self-signed certificate is made at start.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for STARTTLS, relative to the config file.
    pub tls_private_key: Option<PathBuf>,
    /// Refuse MAIL before a successful AUTH (a submission listener).
    pub auth_required: bool,
    /// Text after the host name in the 220 greeting.
    pub banner: String,
    /// More listeners (`[[smtp.listeners]]`), each taking the settings above unless it sets its
    /// own. With none, this table is the one listener.
    pub listeners: Vec<ListenerConfig>,
}

/// One SMTP listener of `[[smtp.listeners]]`: `listen` is required; every other key, when left
/// out, is the `[smtp]` table's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    pub hostname: Option<String>,
    pub banner: Option<String>,
    pub relay_hosts: Option<Vec<Cidr>>,
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// `"starttls"` (default) or `"implicit"` (TLS from the first byte, port 465).
    #[serde(default)]
    pub tls: ListenerTls,
    pub auth_required: Option<bool>,
    pub max_message_size: Option<ByteSize>,
    pub max_recipients: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    #[default]
    Starttls,
    Implicit,
}

/// A listener with every setting resolved (file paths against the config file's directory).
#[derive(Debug, Clone)]
pub struct EffectiveListener {
    pub listen: SocketAddr,
    pub hostname: Option<String>,
    pub banner: String,
    pub relay_hosts: Vec<Cidr>,
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub tls: ListenerTls,
    pub auth_required: bool,
    pub max_message_size: ByteSize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

/// `[smtp] batch_handling` (KumoMTA's listener option of the same name and values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum BatchHandling {
    /// One message per recipient domain: each domain's MX gets only its own recipients.
    #[default]
    BatchByDomain,
    /// One message per recipient.
    BifurcateAlways,
}

/// `[smtp] invalid_line_endings` (KumoMTA's listener option of the same name and values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum InvalidLineEndings {
    /// Refuse the message with a 5xx naming the bare LF/CR; nothing is spooled.
    #[default]
    Deny,
    /// Turn each bare LF and bare CR into CRLF before any policy event sees the message.
    Fix,
    /// Keep the bytes as sent (delivery still writes CRLF lines only).
    Allow,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            hostname: None,
            relay_hosts: loopback(),
            max_message_size: ByteSize(20 << 20),
            max_recipients: 1024,
            idle_timeout: HumanDuration::from_secs(300),
            command_timeout: HumanDuration::from_secs(300),
            data_timeout: HumanDuration::from_secs(600),
            write_timeout: HumanDuration::from_secs(60),
            shutdown_grace: HumanDuration::from_secs(5),
            max_connections: 2000,
            max_connections_per_ip: 100,
            invalid_line_endings: InvalidLineEndings::Deny,
            batch_handling: BatchHandling::BatchByDomain,
            tls_certificate: None,
            tls_private_key: None,
            auth_required: false,
            banner: "ESMTP Ferry".into(),
            listeners: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub trusted_hosts: Vec<Cidr>,
    /// Shared secret: a request with `Authorization: Bearer <token>` is accepted from any
    /// address, and xfer sends it to peers. Prefer `bearer_token_file` to keep it out of the config.
    pub bearer_token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace ignored).
    pub bearer_token_file: Option<PathBuf>,
    /// PEM certificate chain: the HTTP listener speaks HTTPS (relative to the config file).
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
    /// Largest `POST /api/inject/v1` body; a larger one is refused with 413 before it is parsed.
    pub max_inject_size: ByteSize,
    /// Most recipients one injection request may name (each becomes its own message).
    pub max_inject_recipients: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            trusted_hosts: loopback(),
            bearer_token: None,
            bearer_token_file: None,
            tls_certificate: None,
            tls_private_key: None,
            max_inject_size: ByteSize(20 << 20),
            max_inject_recipients: 10_000,
        }
    }
}

/// `[tls]`: what outbound TLS trusts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificates trusted besides the system's roots (a private CA), relative to the config file.
    pub ca_file: Option<PathBuf>,
    /// The port MTA-STS policies are fetched from (RFC 8461: 443). Only tests and labs move it.
    pub mta_sts_policy_port: u16,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { ca_file: None, mta_sts_policy_port: 443 }
    }
}

/// `[cluster]`: suspensions, ready-queue suspensions and admin bounces made on any node apply on
/// every node using this Redis, and each node heartbeats into it (the cluster view).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port/[db]` (or `rediss://`, `unix://`). Its password is
    /// never logged.
    pub redis: String,
    /// This node's admin URL as its peers reach it; default: `http(s)://` + `[http] listen`.
    #[serde(default)]
    pub node_url: Option<String>,
    /// How often this node writes its heartbeat; it drops out of the view after three missed.
    #[serde(default = "ClusterConfig::default_heartbeat")]
    pub heartbeat_interval: HumanDuration,
}

impl ClusterConfig {
    fn default_heartbeat() -> HumanDuration {
        HumanDuration::from_secs(5)
    }
}

/// `[xfer]`: moving queued mail to peer nodes (SPEC §4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XferConfig {
    /// Requests in flight per target node.
    pub concurrency: usize,
    /// Messages per request to a Ferry peer (the batch form); 1 = always the single-message form.
    pub batch_size: usize,
    /// A batch is closed once its messages add up to this many bytes.
    pub batch_bytes: ByteSize,
    /// Largest inject body this node accepts, after decompression (D20).
    pub max_body_size: ByteSize,
    /// A target node's sender is retired after this long with nothing to send or in flight; the
    /// next message for that node starts a fresh one.
    pub idle_timeout: HumanDuration,
    /// PEM certificates trusted for https:// targets besides the system's roots and `[tls] ca_file`.
    pub ca_file: Option<PathBuf>,
}

impl Default for XferConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            batch_size: 100,
            batch_bytes: ByteSize(8 << 20),
            max_body_size: ByteSize(64 << 20),
            idle_timeout: HumanDuration::from_secs(600),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Default: `<data_dir>/spool`.
    pub path: Option<PathBuf>,
    pub map_size: ByteSize,
    /// fsync every commit before acknowledging. Turning it off trades durability for speed.
    pub fsync: bool,
}

/// Largest `spool.map_size`: LMDB reserves the whole map as one memory mapping up front, and a
/// 64-bit process has 128 TiB of address space (47 bits), not all of it free; on a 32-bit
/// target, half of it.
pub const MAX_MAP_SIZE: u64 = if usize::BITS >= 64 { 64 << 40 } else { (usize::MAX >> 1) as u64 };

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { path: None, map_size: ByteSize(64 << 30), fsync: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogCompression {
    Zstd,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Default: `<data_dir>/logs`.
    pub dir: Option<PathBuf>,
    pub max_segment_duration: HumanDuration,
    pub max_file_size: ByteSize,
    pub compression: LogCompression,
    /// zstd level; 0 = zstd's default.
    pub compression_level: i32,
    /// Meta keys copied into records (`*` suffix = prefix wildcard).
    pub meta: Vec<String>,
    /// Header names copied into records (case-insensitive, `*` suffix = prefix wildcard).
    pub headers: Vec<String>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_segment_duration: HumanDuration::from_secs(60),
            max_file_size: ByteSize(1_000_000_000),
            compression: LogCompression::Zstd,
            compression_level: 0,
            meta: Vec::new(),
            headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Lua policy file, relative to the config file's directory. None: built-in defaults only.
    pub script: Option<PathBuf>,
    /// Number of Lua states serving policy events; 0 = one per CPU core.
    pub pool_size: usize,
    /// A handler running longer than this counts as an error.
    pub handler_timeout: HumanDuration,
    /// How long a failed `get_queue_config` is cached, and when the messages it left waiting
    /// (spooled ones found at start-up, requeued ones) are tried again.
    pub queue_config_retry_interval: HumanDuration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            script: None,
            pool_size: 0,
            handler_timeout: HumanDuration::from_secs(5),
            queue_config_retry_interval: HumanDuration::from_secs(60),
        }
    }
}

fn loopback() -> Vec<Cidr> {
    vec!["127.0.0.0/8".parse().expect("literal CIDR"), "::1".parse().expect("literal CIDR")]
}

/// `[dns]`: where MX and address lookups go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `ip:port`; empty = the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
}

/// The policy source to run: a file on disk, or the embedded example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    File(PathBuf),
    Embedded { name: &'static str, text: &'static str },
}

impl Config {
    /// Load from a file, or the embedded example defaults when `path` is None.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Self::parse(EXAMPLE_CONFIG, ConfigSource::Embedded),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::Io { file: p.display().to_string(), error: e.to_string() })?;
                Self::parse(&text, ConfigSource::File(p.to_path_buf()))
            }
        }
    }

    /// Parse TOML text; `source` names the file in errors and anchors relative policy paths.
    pub fn parse(text: &str, source: ConfigSource) -> Result<Config, ConfigError> {
        let file = match &source {
            ConfigSource::Embedded => EMBEDDED_NAME.to_string(),
            ConfigSource::File(p) => p.display().to_string(),
        };
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::from_toml(&file, text, "", e))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::from_toml(&file, text, &key, e.into_inner())
        })?;
        config.source = source;
        config.validate(&file, text)?;
        Ok(config)
    }

    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, msg: String| Err(ConfigError::invalid(file, text, key, msg));
        if self.smtp.max_recipients == 0 {
            return invalid("smtp.max_recipients", "must be at least 1".into());
        }
        if self.smtp.max_message_size.0 == 0 {
            return invalid("smtp.max_message_size", "must be greater than 0".into());
        }
        for (key, value) in [
            ("smtp.idle_timeout", self.smtp.idle_timeout),
            ("smtp.command_timeout", self.smtp.command_timeout),
            ("smtp.data_timeout", self.smtp.data_timeout),
            ("smtp.write_timeout", self.smtp.write_timeout),
        ] {
            if value.0.is_zero() {
                return invalid(key, "must be greater than 0".into());
            }
        }
        match (&self.http.tls_certificate, &self.http.tls_private_key) {
            (Some(_), None) => {
                return invalid("http.tls_certificate", "needs http.tls_private_key too".into());
            }
            (None, Some(_)) => {
                return invalid("http.tls_private_key", "needs http.tls_certificate too".into());
            }
            _ => {}
        }
        if let Some(c) = &self.cluster {
            // The value is not repeated in the message: it may carry a password.
            if !["redis://", "rediss://", "unix://", "redis+unix://"].iter().any(|p| c.redis.starts_with(p)) {
                return invalid("cluster.redis", "must be a redis://, rediss:// or unix:// URL".into());
            }
            if let Some(url) = &c.node_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return invalid("cluster.node_url", format!("{url:?} must be an http:// or https:// URL"));
            }
            if c.heartbeat_interval.0.is_zero() {
                return invalid("cluster.heartbeat_interval", "must be greater than 0".into());
            }
        }
        for (i, l) in self.smtp.listeners.iter().enumerate() {
            if l.tls_certificate.is_some() != l.tls_private_key.is_some() {
                let key = format!("smtp.listeners[{}].tls_certificate", i + 1);
                return invalid(&key, "tls_certificate and tls_private_key go together".into());
            }
        }
        match (&self.smtp.tls_certificate, &self.smtp.tls_private_key) {
            (Some(_), None) => {
                return invalid("smtp.tls_certificate", "needs smtp.tls_private_key too".into());
            }
            (None, Some(_)) => {
                return invalid("smtp.tls_private_key", "needs smtp.tls_certificate too".into());
            }
            _ => {}
        }
        if self.smtp.max_connections == 0 {
            return invalid("smtp.max_connections", "must be at least 1".into());
        }
        if self.tls.mta_sts_policy_port == 0 {
            return invalid("tls.mta_sts_policy_port", "must be a port number (443 unless testing)".into());
        }
        if self.smtp.max_connections_per_ip == 0 {
            return invalid("smtp.max_connections_per_ip", "must be at least 1".into());
        }
        if self.spool.map_size.0 < (1 << 20) {
            return invalid("spool.map_size", "must be at least 1MiB".into());
        }
        if self.spool.map_size.0 > MAX_MAP_SIZE {
            return invalid(
                "spool.map_size",
                format!(
                    "must be at most {}TiB: the spool is mapped into memory whole, and a larger map does not fit the address space",
                    MAX_MAP_SIZE >> 40
                ),
            );
        }
        if self.logs.max_segment_duration.0.is_zero() {
            return invalid("logs.max_segment_duration", "must be greater than 0".into());
        }
        if self.logs.max_file_size.0 == 0 {
            return invalid("logs.max_file_size", "must be greater than 0".into());
        }
        if !(-7..=22).contains(&self.logs.compression_level) {
            return invalid("logs.compression_level", "must be between -7 and 22".into());
        }
        if self.policy.handler_timeout.0.is_zero() {
            return invalid("policy.handler_timeout", "must be greater than 0".into());
        }
        if self.policy.queue_config_retry_interval.0.is_zero() {
            return invalid("policy.queue_config_retry_interval", "must be greater than 0".into());
        }
        if self.http.bearer_token.is_some() && self.http.bearer_token_file.is_some() {
            return invalid("http.bearer_token", "give bearer_token or bearer_token_file, not both".into());
        }
        if self.http.bearer_token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            return invalid("http.bearer_token", "must be at least 16 characters".into());
        }
        if !(1024..=(1 << 30)).contains(&self.http.max_inject_size.0) {
            return invalid("http.max_inject_size", "must be between 1KiB and 1GiB".into());
        }
        if self.http.max_inject_recipients == 0 {
            return invalid("http.max_inject_recipients", "must be at least 1".into());
        }
        if self.xfer.concurrency == 0 {
            return invalid("xfer.concurrency", "must be at least 1".into());
        }
        if self.xfer.batch_size == 0 {
            return invalid("xfer.batch_size", "must be at least 1 (1 = single-message requests)".into());
        }
        if self.xfer.idle_timeout.as_duration().is_zero() {
            return invalid("xfer.idle_timeout", "must be longer than 0s".into());
        }
        if self.xfer.max_body_size.0 < (1 << 20) {
            return invalid("xfer.max_body_size", "must be at least 1MiB".into());
        }
        Ok(())
    }

    /// The bearer token, read from `bearer_token_file` if that is how it is given. A file that
    /// cannot be read, or is empty, is an error naming the key.
    pub fn bearer_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.http.bearer_token_file else {
            return Ok(self.http.bearer_token.as_ref().map(|t| t.trim().to_string()));
        };
        let path = match &self.source {
            ConfigSource::File(cfg) if path.is_relative() => {
                cfg.parent().unwrap_or(Path::new(".")).join(path)
            }
            _ => path.clone(),
        };
        let fail = |error: String| ConfigError::KeyFile {
            key: "http.bearer_token_file".into(),
            file: path.display().to_string(),
            error,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(fail("the token must be at least 16 characters".into()));
        }
        Ok(Some(token.to_string()))
    }

    pub fn spool_path(&self) -> PathBuf {
        self.spool.path.clone().unwrap_or_else(|| self.node.data_dir.join("spool"))
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.logs.dir.clone().unwrap_or_else(|| self.node.data_dir.join("logs"))
    }

    /// The policy to run, if any. File paths are relative to the config file's directory; the
    /// embedded config runs the embedded example policy.
    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, file: &Path) -> PathBuf {
        match &self.source {
            ConfigSource::File(cfg) => cfg.parent().unwrap_or(Path::new(".")).join(file),
            ConfigSource::Embedded => file.to_path_buf(),
        }
    }

    /// The SMTP listeners to open: `[[smtp.listeners]]`, or the `[smtp]` table alone.
    pub fn smtp_listeners(&self) -> Vec<EffectiveListener> {
        let s = &self.smtp;
        let base = EffectiveListener {
            listen: s.listen,
            hostname: s.hostname.clone(),
            banner: s.banner.clone(),
            relay_hosts: s.relay_hosts.clone(),
            tls_files: self.smtp_tls_files(),
            tls: ListenerTls::Starttls,
            auth_required: s.auth_required,
            max_message_size: s.max_message_size,
            max_recipients: s.max_recipients,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
        };
        if s.listeners.is_empty() {
            return vec![base];
        }
        s.listeners
            .iter()
            .map(|l| EffectiveListener {
                listen: l.listen,
                hostname: l.hostname.clone().or_else(|| base.hostname.clone()),
                banner: l.banner.clone().unwrap_or_else(|| base.banner.clone()),
                relay_hosts: l.relay_hosts.clone().unwrap_or_else(|| base.relay_hosts.clone()),
                tls_files: match (&l.tls_certificate, &l.tls_private_key) {
                    (Some(c), Some(k)) => Some((self.resolve(c), self.resolve(k))),
                    _ => base.tls_files.clone(),
                },
                tls: l.tls,
                auth_required: l.auth_required.unwrap_or(base.auth_required),
                max_message_size: l.max_message_size.unwrap_or(base.max_message_size),
                max_recipients: l.max_recipients.unwrap_or(base.max_recipients),
                max_connections: l.max_connections.unwrap_or(base.max_connections),
                max_connections_per_ip: l.max_connections_per_ip.unwrap_or(base.max_connections_per_ip),
            })
            .collect()
    }

    /// `[tls] ca_file`, resolved against the config file's directory.
    pub fn tls_ca_file(&self) -> Option<PathBuf> {
        self.tls.ca_file.as_deref().map(|f| self.resolve(f))
    }

    /// `[xfer] ca_file`, resolved against the config file's directory.
    pub fn xfer_ca_file(&self) -> Option<PathBuf> {
        self.xfer.ca_file.as_deref().map(|f| self.resolve(f))
    }

    /// `[http] tls_certificate` and `tls_private_key`, resolved.
    pub fn http_tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = (self.http.tls_certificate.as_ref()?, self.http.tls_private_key.as_ref()?);
        Some((self.resolve(cert), self.resolve(key)))
    }

    /// `[smtp] tls_certificate` and `tls_private_key`, resolved against the config file's directory.
    pub fn smtp_tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = (self.smtp.tls_certificate.as_ref()?, self.smtp.tls_private_key.as_ref()?);
        let base = match &self.source {
            ConfigSource::File(cfg) => cfg.parent().unwrap_or(Path::new(".")).to_path_buf(),
            ConfigSource::Embedded => PathBuf::from("."),
        };
        Some((base.join(cert), base.join(key)))
    }

    pub fn policy_source(&self) -> Option<PolicySource> {
        let script = self.policy.script.as_ref()?;
        Some(match &self.source {
            ConfigSource::Embedded => {
                PolicySource::Embedded { name: "examples/policy.lua", text: EXAMPLE_POLICY }
            }
            ConfigSource::File(cfg) => {
                let base = cfg.parent().unwrap_or(Path::new("."));
                PolicySource::File(base.join(script))
            }
        })
    }
}
