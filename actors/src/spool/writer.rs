//! The SpoolWriter actor: the only writer of the spool, committing in groups.
//!
//! It runs on its own OS thread because an LMDB commit (with fsync) blocks for milliseconds and must
//! never stall an async arbiter. Its mailbox is a channel. The loop blocks for the first request,
//! then takes every request already waiting — exactly the writes that arrived while the previous
//! commit was in flight — applies them all in one transaction, commits once, and only then answers
//! each caller. One fsync thus makes a whole batch durable, and nobody hears "done" before it is.
//! When the map is full, removals are kept apart from inserts and retried until they land (see
//! [`commit`]); their callers hear "done" only then.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;

use super::commit::{self, Reply, Request};
use super::{Spool, SpoolError};
use crate::model::MessageId;

/// Most requests folded into one transaction; bounds the latency of the first one in a batch.
const MAX_BATCH: usize = 4096;

/// How soon a removal that found the map full is tried again when no other write comes first.
const RETRY: Duration = Duration::from_millis(250);

/// How often a full spool is reported while it stays full.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One change to the spool.
#[derive(Debug, Clone)]
pub enum SpoolOp {
    /// Store meta, and the body when given (a meta-only update leaves the body as it is).
    Put {
        id: MessageId,
        meta: Vec<u8>,
        data: Option<Bytes>,
    },
    Remove {
        id: MessageId,
    },
    /// Remove, leaving a tombstone that remembers the xfer key until `expires` (unix seconds).
    RemoveWithTombstone {
        id: MessageId,
        prior_node: String,
        prior_id: String,
        expires: i64,
    },
}

impl SpoolOp {
    /// Store a whole message: meta and body.
    pub fn put(msg: &crate::model::Message) -> SpoolOp {
        SpoolOp::Put { id: msg.id, meta: msg.spool_meta().to_bytes(), data: Some(msg.data.clone()) }
    }
}

enum Mail {
    Write { ops: Vec<SpoolOp>, reply: Reply },
    Stop,
}

/// Counters an observer can read without asking the actor.
#[derive(Debug, Default)]
pub struct SpoolStats {
    pub commits: AtomicU64,
    pub requests: AtomicU64,
    pub largest_batch: AtomicU64,
    pub last_commit_micros: AtomicU64,
}

/// Handle to the SpoolWriter. Clones share the same actor.
#[derive(Clone)]
pub struct SpoolWriter {
    tx: Sender<Mail>,
    stats: Arc<SpoolStats>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl SpoolWriter {
    pub fn start(spool: Spool) -> SpoolWriter {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(SpoolStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-spool-writer".into())
            .spawn(move || run(spool, rx, &thread_stats))
            .expect("spawn spool writer thread");
        SpoolWriter { tx, stats, thread: Arc::new(std::sync::Mutex::new(Some(thread))) }
    }

    pub fn stats(&self) -> &SpoolStats {
        &self.stats
    }

    pub(crate) fn submit(&self, ops: Vec<SpoolOp>) -> oneshot::Receiver<Result<(), SpoolError>> {
        let (reply, rx) = oneshot::channel();
        // If the actor has stopped the reply sender is dropped, which the receiver reports.
        let _ = self.tx.send(Mail::Write { ops, reply });
        rx
    }

    /// Apply `ops` atomically; resolves once they are durable.
    pub async fn commit(&self, ops: Vec<SpoolOp>) -> Result<(), SpoolError> {
        self.submit(ops).await.unwrap_or(Err(SpoolError::WriterStopped))
    }

    /// Blocking form of [`commit`](Self::commit), for threads outside any runtime.
    pub fn commit_blocking(&self, ops: Vec<SpoolOp>) -> Result<(), SpoolError> {
        self.submit(ops).blocking_recv().unwrap_or(Err(SpoolError::WriterStopped))
    }

    /// Commit everything already queued, then stop. Later writes fail with `WriterStopped`.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Mail::Stop);
        let handle = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn run(spool: Spool, rx: Receiver<Mail>, stats: &SpoolStats) {
    let mut stalled: Vec<Request> = Vec::new();
    let mut full = FullNotice::default();
    let mut stopping = false;
    while !stopping {
        // Removals waiting for room go first, and are retried at least every RETRY.
        let mut batch = std::mem::take(&mut stalled);
        let first = if batch.is_empty() {
            rx.recv().ok()
        } else {
            match rx.recv_timeout(RETRY) {
                Ok(mail) => Some(mail),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Mail::Stop),
            }
        };
        match first {
            Some(Mail::Write { ops, reply }) => batch.push(Request { ops, reply }),
            Some(Mail::Stop) => stopping = true,
            None if batch.is_empty() => break,
            None => {}
        }
        while !stopping && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Mail::Write { ops, reply }) => batch.push(Request { ops, reply }),
                Ok(Mail::Stop) => stopping = true,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let size = batch.len() as u64;
        // Counted before the commit answers its callers, so a caller that has its answer sees
        // its request counted.
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(size, Ordering::Relaxed);
        stats.largest_batch.fetch_max(size, Ordering::Relaxed);
        let outcome = commit::commit(&spool, batch);
        if let Some(e) = &outcome.error {
            tracing::error!(error = %e, batch = size, "spool commit failed; callers are told");
        }
        full.note(outcome.refused, outcome.stalled.len());
        stalled = outcome.stalled;
        stats.last_commit_micros.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let m = crate::metrics::metrics();
        m.spool_commit.observe(started.elapsed());
        m.spool_batch.observe(std::time::Duration::from_micros(size));
    }
    if !stalled.is_empty() {
        tracing::error!(
            removals = stalled.len(),
            "spool full at shutdown; these messages will be found again at restart"
        );
    }
    for request in stalled {
        let _ = request.reply.send(Err(SpoolError::Full));
    }
    tracing::debug!("spool writer stopped");
}

/// Logs a full spool once per LOG_EVERY, not once per refusal, and its recovery once.
#[derive(Default)]
struct FullNotice {
    refused: usize,
    logged: Option<Instant>,
}

impl FullNotice {
    fn note(&mut self, refused: usize, stalled: usize) {
        self.refused += refused;
        if refused == 0 && stalled == 0 {
            if self.logged.take().is_some() {
                tracing::info!("spool has room again; accepting new messages");
            }
            self.refused = 0;
            return;
        }
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                refused = self.refused,
                removals_waiting = stalled,
                "spool full (spool.map_size): refusing new messages until deliveries free room"
            );
            self.logged = Some(Instant::now());
            self.refused = 0;
        }
    }
}
