//! A running `ferry trace-smtp-server|client --json`: its events as they arrive, for tests that
//! watch a live SMTP conversation.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{FerryNode, wait_until};

pub struct TraceCli {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl TraceCli {
    /// Start `ferry <args> --json` against `node` and wait until it is subscribed (anything the
    /// node does from then on is traced).
    pub fn start(node: &FerryNode, args: &[&str]) -> TraceCli {
        let mut child = node
            .cli_command(args)
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry trace");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let event: Value = serde_json::from_str(&line).expect("each line is one JSON event");
                sink.lock().unwrap().push(event);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("subscribed") => break,
                Ok(line) => eprintln!("trace: {line}"),
                Err(e) => panic!("ferry {args:?} did not subscribe: {e}"),
            }
        }
        TraceCli { child, events }
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Wait until the events so far satisfy `done`, and return them.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        wait_until(what, Duration::from_secs(30), || {
            let events = self.events();
            done(&events).then_some(events)
        })
    }
}

impl Drop for TraceCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of a `Read`/`Write` (or abbreviated) payload, if the event has one.
pub fn payload_text<'a>(event: &'a Value, kind: &str) -> Option<&'a str> {
    event["payload"].get(kind).and_then(Value::as_str)
}
