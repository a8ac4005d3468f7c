//! The `smtp-sink` process: an SMTP server on 127.0.0.1 that Ferry delivers to. Tests read what it
//! received (messages, refusals, connection count) from the files it keeps in its directory.
//!
//! Answers depend on the local part of each MAIL FROM / RCPT TO address: `tempfail` (400),
//! `permfail` (500), `full` (452), `450-…`, `421-…` (closes the connection) and `550-…`; anything
//! else is accepted. The sink writes each file before sending the reply it matches.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const POLL: Duration = Duration::from_millis(25);

/// The `smtp-sink` binary: `$SMTP_SINK_BIN`, else the one cargo built next to the running test.
pub fn sink_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SMTP_SINK_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("smtp-sink")
}

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    pub seq: u64,
    pub mail_from: String,
    /// Only the recipients the sink accepted.
    pub rcpt_to: Vec<String>,
    /// The message as received (dot-unstuffed, ending with the last line's CRLF), lossy UTF-8.
    pub data: String,
    pub helo: String,
    /// The client's address and port as the sink saw them.
    pub peer: String,
}

impl SinkMessage {
    fn from_json(v: &Value) -> Option<SinkMessage> {
        let s = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let rcpt_to = v.get("rcpt_to")?.as_array()?.iter().map(|r| r.as_str().map(str::to_string));
        Some(SinkMessage {
            seq: v.get("seq")?.as_u64()?,
            mail_from: s("mail_from")?,
            rcpt_to: rcpt_to.collect::<Option<Vec<_>>>()?,
            data: s("data")?,
            helo: s("helo")?,
            peer: s("peer").unwrap_or_default(),
        })
    }
}

pub struct SmtpSink {
    dir: TempDir,
    child: Child,
    addr: SocketAddr,
}

impl SmtpSink {
    /// Start the sink (see [`sink_bin`]) and wait, up to 20 s, until it is accepting connections.
    /// Panics with the sink's stderr if it exits before that.
    pub fn start() -> SmtpSink {
        Self::start_on("127.0.0.1:0")
    }

    /// Start the sink listening on `listen` (e.g. `[::1]:0`).
    pub fn start_on(listen: &str) -> SmtpSink {
        let bin = sink_bin();
        assert!(
            bin.exists(),
            "{} not found: build the smtp-sink binary (cargo test builds it) or set SMTP_SINK_BIN",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("ferry-sink-").tempdir().expect("tempdir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let child = Command::new(&bin)
            .arg("--dir")
            .arg(dir.path())
            .args(["--listen", listen, "--hostname", "sink.test"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        // Built before it is ready so that a panic below still kills the child (Drop).
        let mut sink = SmtpSink { dir, child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = sink.read_addr() {
                sink.addr = addr;
                return sink;
            }
            match sink.child.try_wait() {
                Ok(Some(status)) => panic!("smtp-sink exited early ({status}); stderr:\n{}", sink.stderr()),
                Ok(None) => {}
                Err(e) => panic!("smtp-sink: wait: {e}"),
            }
            if Instant::now() > deadline {
                panic!("smtp-sink not ready after 20 s; stderr:\n{}", sink.stderr());
            }
            std::thread::sleep(POLL);
        }
    }

    fn read_addr(&self) -> Option<SocketAddr> {
        let text = std::fs::read_to_string(self.dir.path().join("sink.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v.get("smtp")?.as_str()?.parse().ok()
    }

    /// What the sink wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The sink's directory (sink.json, messages/, rejections.jsonl, connections).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// All stored messages in sequence order.
    pub fn messages(&self) -> Vec<SinkMessage> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("messages")) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .as_ref()
                    .and_then(SinkMessage::from_json)
                    .unwrap_or_else(|| panic!("{}: not a sink message: {text}", p.display()))
            })
            .collect()
    }

    /// When each stored message arrived (its file's modification time), earliest first.
    pub fn arrival_times(&self) -> Vec<std::time::SystemTime> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("messages")) else { return Vec::new() };
        let mut times: Vec<_> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .collect();
        times.sort();
        times
    }

    /// How many messages are stored (cheap: counts files).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("messages"))
            .map(|d| {
                d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count()
            })
            .unwrap_or(0)
    }

    /// Wait (up to 30 s) until at least `n` messages are stored; return all of them.
    pub fn wait_messages(&self, n: usize) -> Vec<SinkMessage> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after 30 s waiting for {n} sink messages; have {}: {messages:#?}\nrejections: {:#?}",
                    messages.len(),
                    self.rejections()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// All refusals so far: `{"command":"MAIL"|"RCPT"|"DATA","address":…,"code":…,"text":…}`, where
    /// `text` is the reply after the code (e.g. "4.0.0 tempfail requested").
    pub fn rejections(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("rejections.jsonl")).unwrap_or_default();
        // Only complete lines: one being appended right now is skipped.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("rejections.jsonl: {e}: {l}")))
            .collect()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.read_count("open")
    }

    /// The most connections that were open at once.
    pub fn max_open_connections(&self) -> u64 {
        self.read_count("max_open")
    }

    fn read_count(&self, file: &str) -> u64 {
        std::fs::read_to_string(self.dir.path().join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Connections the sink has accepted so far.
    pub fn connections(&self) -> u64 {
        std::fs::read_to_string(self.dir.path().join("connections"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
