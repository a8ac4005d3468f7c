//! A `ferry serve` process under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::wait::wait_until;

/// The `ferry` binary under test: `$FERRY_BIN`, else `ferry-it`, this package's build of the
/// same entry point, which cargo rebuilds before running this package's tests.
pub fn ferry_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FERRY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ferry-it");
    assert!(bin.exists(), "{} not found: run the tests with cargo", bin.display());
    bin
}

pub struct FerryNode {
    dir: TempDir,
    child: Option<Child>,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub nodeid: String,
    starts: usize,
}

impl FerryNode {
    /// Start a node. `extra` is TOML appended to a base config (it may add sections and keys not
    /// in the base); `policy` is the Lua policy text, if any.
    pub fn start(extra: &str, policy: Option<&str>) -> FerryNode {
        let dir = tempfile::Builder::new().prefix("ferry-it-").tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let policy_section = match policy {
            Some(text) => {
                std::fs::write(dir.path().join("policy.lua"), text).unwrap();
                "[policy]\nscript = \"policy.lua\"\n"
            }
            None => "",
        };
        let base = format!(
            "[smtp]\nlisten = \"127.0.0.1:0\"\nhostname = \"ferry.test\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[logs]\nmax_segment_duration = \"1s\"\n\n{policy_section}"
        );
        let config = format!("[node]\ndata_dir = \"{}\"\n\n{}", data.display(), merge_sections(&base, extra));
        std::fs::write(dir.path().join("ferry.toml"), config).unwrap();
        let mut node = FerryNode {
            dir,
            child: None,
            smtp: "127.0.0.1:0".parse().unwrap(),
            http: "127.0.0.1:0".parse().unwrap(),
            nodeid: String::new(),
            starts: 0,
        };
        node.spawn();
        node
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ferry.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join(format!("stderr-{}.log", self.starts))
    }

    /// Everything the current (or last) process wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let listeners = self.data_dir().join("listeners.json");
        let _ = std::fs::remove_file(&listeners);
        let stderr = std::fs::File::create(self.stderr_path()).unwrap();
        let child = Command::new(ferry_bin())
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env("FERRY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn ferry");
        self.child = Some(child);
        let info: Value = wait_until("ferry to be ready", Duration::from_secs(30), || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("ferry exited during start-up with {status}:\n{}", self.stderr());
            }
            let text = std::fs::read_to_string(&listeners).ok()?;
            serde_json::from_str(&text).ok()
        });
        self.smtp = info["smtp"].as_str().unwrap().parse().unwrap();
        self.http = info["http"].as_str().unwrap().parse().unwrap();
        self.nodeid = info["nodeid"].as_str().unwrap().to_string();
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("node is running");
        let pid = c.id() as libc::pid_t;
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        wait_until("ferry to exit after SIGTERM", Duration::from_secs(40), || c.try_wait().ok().flatten())
    }

    /// Rewrite the config to listen on the ports bound now, so a restart keeps them (peers that
    /// name this node by address, e.g. in an xfer queue, still find it).
    pub fn pin_ports(&self) {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut section = String::new();
        let pinned: Vec<String> = text
            .lines()
            .map(|line| {
                if line.trim_start().starts_with('[') {
                    section = line.trim().to_string();
                }
                match (section.as_str(), line.trim_start().starts_with("listen")) {
                    ("[smtp]", true) => format!("listen = \"{}\"", self.smtp),
                    ("[http]", true) => format!("listen = \"{}\"", self.http),
                    _ => line.to_string(),
                }
            })
            .collect();
        std::fs::write(&path, pinned.join("\n")).unwrap();
    }

    /// Start again on the same config and data after a stop or kill.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the node first");
        self.spawn();
    }

    /// Run a `ferry` admin command against this node; panics with stderr on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(out.status.success(), "ferry {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a `ferry` admin command against this node, whatever its outcome.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        let endpoint = format!("http://{}", self.http);
        let mut all = vec!["--endpoint", endpoint.as_str()];
        all.extend_from_slice(args);
        self.ferry(&all)
    }

    /// A `ferry` admin command against this node, to spawn and follow (e.g. `xfer --wait`).
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ferry_bin());
        cmd.arg("--endpoint").arg(format!("http://{}", self.http)).args(args);
        cmd
    }

    /// `inspect-sched-q QUEUE --no-limit` as JSON; None when the queue does not exist.
    pub fn inspect(&self, queue: &str) -> Option<Value> {
        let out = self.cli_output(&["inspect-sched-q", queue, "--no-limit"]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("404"), "inspect-sched-q {queue} failed: {err}");
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("inspect output is JSON"))
    }

    /// Wait until message `id` waits in scheduled queue `queue`. A TransientFailure record is
    /// written before the message's requeue decision (a policy call) puts it back, so an admin
    /// sweep right after the record can miss it.
    pub fn wait_scheduled(&self, queue: &str, id: &str) {
        wait_until(&format!("{id} back in scheduled queue {queue}"), Duration::from_secs(20), || {
            let q = self.inspect(queue)?;
            q["messages"].as_array()?.iter().any(|m| m["id"] == id).then_some(())
        });
    }

    /// Records about one message, in event-time order.
    pub fn records_for(&self, id: &str) -> Vec<Value> {
        let mut r: Vec<Value> = self.records().into_iter().filter(|r| r["id"] == id).collect();
        r.sort_by(|a, b| a["event_time"].as_str().cmp(&b["event_time"].as_str()));
        r
    }

    /// The running `ferry serve` process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// Wait until the record types for `id` are exactly `kinds` (in order); returns the records.
    pub fn wait_sequence(&self, id: &str, kinds: &[&str]) -> Vec<Value> {
        let (mut last, mut responses) = (Vec::new(), Vec::new());
        let found = crate::wait::try_wait_until(Duration::from_secs(30), || {
            let r = self.records_for(id);
            last = r.iter().map(|r| r["type"].as_str().unwrap_or("").to_string()).collect();
            responses = r.iter().map(|r| r["response"]["content"].to_string()).collect();
            (last == kinds).then_some(r)
        });
        found.unwrap_or_else(|| {
            panic!("records for {id}: expected {kinds:?}, last saw {last:?} {responses:?}\n{}", self.stderr())
        })
    }

    fn ferry(&self, args: &[&str]) -> std::process::Output {
        Command::new(ferry_bin()).args(args).output().expect("run ferry")
    }

    /// All log records written so far (complete lines only), in file order.
    pub fn records(&self) -> Vec<Value> {
        let dir = self.data_dir().join("logs");
        if !dir.exists() {
            return Vec::new();
        }
        let out = self.ferry(&["logs", "--dir", dir.to_str().unwrap()]);
        assert!(out.status.success(), "ferry logs failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l}: {e}")))
            .collect()
    }

    /// Wait until at least `n` records of type `kind` exist; returns them.
    pub fn wait_records(&self, kind: &str, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} {kind} record(s)"), Duration::from_secs(20), || {
            let found: Vec<Value> = self.records().into_iter().filter(|r| r["type"] == kind).collect();
            (found.len() >= n).then_some(found)
        })
    }

    /// Ids in the spool, read with `ferry spool list`.
    pub fn spool_ids(&self) -> Vec<String> {
        let out = self.ferry(&["spool", "list", "--config", self.config_path().to_str().unwrap()]);
        assert!(out.status.success(), "ferry spool list failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }
}

impl Drop for FerryNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Append `extra` to `base`, merging keys into sections both define (TOML forbids a section twice).
fn merge_sections(base: &str, extra: &str) -> String {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut arrays = 0;
    for text in [base, extra] {
        let mut current = String::new();
        for line in text.lines() {
            let t = line.trim();
            // `[[x]]` starts a new element of an array of tables each time: never merged.
            if t.starts_with("[[") {
                arrays += 1;
                current = format!("{t}#{arrays}");
                sections.push((current.clone(), Vec::new()));
                continue;
            }
            if t.starts_with('[') {
                current = t.to_string();
                continue;
            }
            if t.is_empty() {
                continue;
            }
            let key = t.split('=').next().unwrap_or("").trim().to_string();
            match sections.iter_mut().find(|(s, _)| *s == current) {
                Some((_, lines)) => {
                    lines.retain(|l| l.split('=').next().unwrap_or("").trim() != key);
                    lines.push(t.to_string());
                }
                None => sections.push((current.clone(), vec![t.to_string()])),
            }
        }
    }
    sections
        .into_iter()
        .map(|(s, lines)| format!("{}\n{}\n", s.split('#').next().unwrap_or(&s), lines.join("\n")))
        .collect::<Vec<_>>()
        .join("\n")
}
