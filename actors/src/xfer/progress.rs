//! Progress of admin xfer sweeps, for `ferry xfer --wait` (`GET /api/admin/xfer/status/v1`).
//!
//! A sweep counts the messages it moved into its xfer queue, then each one's fate: transferred
//! (`XferOut`), failing (its last attempt failed; it waits in the xfer queue for a retry), or
//! left (it will not be transferred by this sweep: cancelled back to its queue, moved elsewhere
//! by a policy, bounced or expired). The registry lives in memory: a restart forgets sweeps,
//! and the client is told so by a 404.
//!
//! Hooks sit on the paths every message takes, so they must be cheap when no sweep runs: one
//! atomic load.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::model::MessageId;

/// Finished sweeps are forgotten this long after they finish.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Sweeps {
    /// Messages tracked across all sweeps: the hooks' fast path.
    tracked: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sweeps: HashMap<Uuid, Sweep>,
    owner: HashMap<MessageId, Uuid>,
}

struct Sweep {
    target: String,
    xfer_queue: String,
    reason: String,
    started: DateTime<Utc>,
    sweeping: bool,
    total: u64,
    transferred: u64,
    left: u64,
    failing: HashSet<MessageId>,
    last_error: Option<String>,
    finished: Option<Instant>,
}

/// What `GET /api/admin/xfer/status/v1` answers for one sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SweepStatus {
    pub id: Uuid,
    pub target: String,
    pub xfer_queue: String,
    pub reason: String,
    pub started: DateTime<Utc>,
    /// Still moving messages out of the matched queues: `total` may grow.
    pub sweeping: bool,
    /// Messages moved into the xfer queue.
    pub total: u64,
    /// Accepted by the target and removed here.
    pub transferred: u64,
    /// Still on this node, in the xfer queue or in flight.
    pub remaining: u64,
    /// Of `remaining`, those whose last attempt failed.
    pub failing: u64,
    /// Will not be transferred by this sweep (cancelled, re-routed, bounced or expired).
    pub left: u64,
    pub last_error: Option<String>,
    /// Nothing more will happen: the sweep is over and no message remains.
    pub done: bool,
}

impl Sweep {
    fn status(&self, id: Uuid) -> SweepStatus {
        let remaining = self.total - self.transferred - self.left;
        SweepStatus {
            id,
            target: self.target.clone(),
            xfer_queue: self.xfer_queue.clone(),
            reason: self.reason.clone(),
            started: self.started,
            sweeping: self.sweeping,
            total: self.total,
            transferred: self.transferred,
            remaining,
            failing: self.failing.len() as u64,
            left: self.left,
            last_error: self.last_error.clone(),
            done: !self.sweeping && remaining == 0,
        }
    }

    fn check_finished(&mut self) {
        if !self.sweeping && self.total == self.transferred + self.left && self.finished.is_none() {
            self.finished = Some(Instant::now());
        }
    }
}

impl Sweeps {
    /// A sweep starts; an id the client chose is kept (so it can follow it), else one is made.
    pub fn begin(&self, id: Option<Uuid>, target: &str, xfer_queue: &str, reason: &str) -> Uuid {
        let id = id.unwrap_or_else(Uuid::new_v4);
        let mut inner = self.inner.lock().expect("sweeps lock");
        inner.sweeps.retain(|_, s| s.finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
        inner.sweeps.insert(
            id,
            Sweep {
                target: target.to_string(),
                xfer_queue: xfer_queue.to_string(),
                reason: reason.to_string(),
                started: Utc::now(),
                sweeping: true,
                total: 0,
                transferred: 0,
                left: 0,
                failing: HashSet::new(),
                last_error: None,
                finished: None,
            },
        );
        id
    }

    /// The sweep moved `msg` into its xfer queue.
    pub fn captured(&self, sweep: Uuid, msg: MessageId) {
        let mut inner = self.inner.lock().expect("sweeps lock");
        let Some(s) = inner.sweeps.get_mut(&sweep) else { return };
        s.total += 1;
        // A message swept twice (two overlapping sweeps) belongs to the newer one.
        if let Some(old) = inner.owner.insert(msg, sweep) {
            if let Some(o) = inner.sweeps.get_mut(&old) {
                o.left += 1;
                o.failing.remove(&msg);
                o.check_finished();
            }
        } else {
            self.tracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every matched queue has been swept.
    pub fn end_sweep(&self, sweep: Uuid) {
        let mut inner = self.inner.lock().expect("sweeps lock");
        if let Some(s) = inner.sweeps.get_mut(&sweep) {
            s.sweeping = false;
            s.check_finished();
        }
    }

    fn settle(&self, msg: &MessageId, f: impl FnOnce(&mut Sweep)) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("sweeps lock");
        let Some(sweep) = inner.owner.remove(msg) else { return };
        self.tracked.fetch_sub(1, Ordering::Relaxed);
        if let Some(s) = inner.sweeps.get_mut(&sweep) {
            s.failing.remove(msg);
            f(s);
            s.check_finished();
        }
    }

    /// The target accepted `msg`.
    pub fn transferred(&self, msg: &MessageId) {
        self.settle(msg, |s| s.transferred += 1);
    }

    /// `msg` will not be transferred by its sweep.
    pub fn left(&self, msg: &MessageId) {
        self.settle(msg, |s| s.left += 1);
    }

    /// `msg` left `queue` for another: it leaves its sweep unless that is the sweep's xfer queue.
    pub fn moved(&self, msg: &MessageId, queue: &str) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let owned_elsewhere = {
            let inner = self.inner.lock().expect("sweeps lock");
            inner.owner.get(msg).and_then(|s| inner.sweeps.get(s)).is_some_and(|s| s.xfer_queue != queue)
        };
        if owned_elsewhere {
            self.left(msg);
        }
    }

    /// An attempt to transfer `msg` failed; it stays in the xfer queue.
    pub fn failed(&self, msg: &MessageId, error: &str) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("sweeps lock");
        let Some(sweep) = inner.owner.get(msg).copied() else { return };
        if let Some(s) = inner.sweeps.get_mut(&sweep) {
            s.failing.insert(*msg);
            s.last_error = Some(error.to_string());
        }
    }

    pub fn status(&self, sweep: Uuid) -> Option<SweepStatus> {
        let inner = self.inner.lock().expect("sweeps lock");
        inner.sweeps.get(&sweep).map(|s| s.status(sweep))
    }

    pub fn list(&self) -> Vec<SweepStatus> {
        let inner = self.inner.lock().expect("sweeps lock");
        let mut all: Vec<_> = inner.sweeps.iter().map(|(id, s)| s.status(*id)).collect();
        all.sort_by_key(|s| s.started);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageIdGenerator;

    #[test]
    fn a_sweep_counts_each_message_once_whatever_becomes_of_it() {
        let g = MessageIdGenerator::new(&Uuid::new_v4());
        let ids: Vec<MessageId> = (0..4).map(|_| g.generate()).collect();
        let sweeps = Sweeps::default();
        let s = sweeps.begin(None, "http://b:8000", "http://b:8000/.xfer.kumomta.internal", "r");
        for id in &ids {
            sweeps.captured(s, *id);
        }
        sweeps.failed(&ids[0], "connection refused");
        let st = sweeps.status(s).unwrap();
        assert_eq!((st.total, st.remaining, st.failing, st.done), (4, 4, 1, false));
        assert_eq!(st.last_error.as_deref(), Some("connection refused"));
        sweeps.transferred(&ids[0]);
        sweeps.transferred(&ids[1]);
        sweeps.transferred(&ids[1]); // a duplicate XferOut counts once
        sweeps.moved(&ids[2], "http://b:8000/.xfer.kumomta.internal"); // its own queue: no change
        sweeps.moved(&ids[2], "example.com"); // cancelled back
        sweeps.end_sweep(s);
        let st = sweeps.status(s).unwrap();
        assert_eq!((st.transferred, st.left, st.remaining, st.failing, st.done), (2, 1, 1, 0, false));
        sweeps.left(&ids[3]);
        let st = sweeps.status(s).unwrap();
        assert_eq!((st.transferred, st.left, st.remaining, st.done), (2, 2, 0, true));
        assert_eq!(sweeps.tracked.load(Ordering::Relaxed), 0, "hooks are back on their fast path");
    }

    #[test]
    fn a_message_swept_again_moves_to_the_newer_sweep() {
        let g = MessageIdGenerator::new(&Uuid::new_v4());
        let id = g.generate();
        let sweeps = Sweeps::default();
        let a = sweeps.begin(None, "t", "q1", "r");
        sweeps.captured(a, id);
        let b = sweeps.begin(Some(Uuid::new_v4()), "t2", "q2", "r");
        sweeps.captured(b, id);
        sweeps.end_sweep(a);
        assert_eq!(sweeps.status(a).unwrap().left, 1);
        assert!(sweeps.status(a).unwrap().done);
        sweeps.transferred(&id);
        assert_eq!(sweeps.status(b).unwrap().transferred, 1);
        assert_eq!(sweeps.list().len(), 2);
    }
}
