//! The SpoolWriter actor: the only writer of the spool, committing in groups.
//!
//! It runs on its own OS thread because an LMDB commit (with fsync) blocks for milliseconds and must
//! never stall an async arbiter. Its mailbox is a channel. The loop blocks for the first request,
//! then takes every request already waiting — exactly the writes that arrived while the previous
//! commit was in flight — applies them all in one transaction, commits once, and only then answers
//! each caller. One fsync thus makes a whole batch durable, and nobody hears "done" before it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::{Spool, SpoolError};
use crate::model::MessageId;

/// Most requests folded into one transaction; bounds the latency of the first one in a batch.
const MAX_BATCH: usize = 4096;

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

type Reply = oneshot::Sender<Result<(), SpoolError>>;

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
    let mut batch = Vec::new();
    let mut stopping = false;
    while !stopping {
        match rx.recv() {
            Ok(Mail::Write { ops, reply }) => batch.push((ops, reply)),
            Ok(Mail::Stop) | Err(_) => break,
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Mail::Write { ops, reply }) => batch.push((ops, reply)),
                Ok(Mail::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = apply(&spool, &batch).map_err(SpoolError::from);
        if let Err(e) = &result {
            tracing::error!(error = %e, batch = batch.len(), "spool commit failed; callers are told");
        }
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.largest_batch.fetch_max(batch.len() as u64, Ordering::Relaxed);
        stats.last_commit_micros.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let m = crate::metrics::metrics();
        m.spool_commit.observe(started.elapsed());
        m.spool_batch.observe(std::time::Duration::from_micros(batch.len() as u64));
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
    tracing::debug!("spool writer stopped");
}

fn apply(spool: &Spool, batch: &[(Vec<SpoolOp>, Reply)]) -> Result<(), heed::Error> {
    let (meta_db, data_db, tombstones) = spool.databases();
    let mut wtxn = spool.env().write_txn()?;
    for (ops, _) in batch {
        for op in ops {
            match op {
                SpoolOp::Put { id, meta, data } => {
                    meta_db.put(&mut wtxn, id.as_bytes(), meta)?;
                    if let Some(data) = data {
                        data_db.put(&mut wtxn, id.as_bytes(), data)?;
                    }
                }
                SpoolOp::Remove { id } => {
                    meta_db.delete(&mut wtxn, id.as_bytes())?;
                    data_db.delete(&mut wtxn, id.as_bytes())?;
                }
                SpoolOp::RemoveWithTombstone { id, prior_node, prior_id, expires } => {
                    meta_db.delete(&mut wtxn, id.as_bytes())?;
                    data_db.delete(&mut wtxn, id.as_bytes())?;
                    let value = format!("{expires}\n{prior_node}\n{prior_id}");
                    tombstones.put(&mut wtxn, id.as_bytes(), value.as_bytes())?;
                }
            }
        }
    }
    wtxn.commit()
}
