//! The log writer thread.
//!
//! Callers hand over already-serialised JSON lines through an unbounded channel, so logging
//! never waits on the disk. One thread owns the current segment; that keeps records in order
//! and needs no locking around the zstd encoder.
//!
//! Segment lifecycle:
//! 1. opened lazily by the first record after the previous segment closed (no empty files),
//!    named by its UTC open time `%Y%m%d-%H%M%S.%f` (nanoseconds);
//! 2. flushed whenever the channel is momentarily empty, so readers can decode everything
//!    written so far while the segment is still open;
//! 3. closed when its uncompressed size reaches `max_file_size`, when `max_segment_duration`
//!    has passed since it opened (even if no further records arrive), or at shutdown. Closing
//!    finishes the zstd frame and clears the write bits, which is how readers know it is
//!    complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::spill::Spill;
use crate::model::throttle::Throttle;

/// strftime pattern of segment file names (UTC open time, nanosecond precision).
pub const SEGMENT_NAME_FORMAT: &str = "%Y%m%d-%H%M%S.%f";

/// All write permission bits; a segment with none of them set is complete.
const WRITE_BITS: u32 = 0o222;

/// How many successive nanosecond bumps to try when a segment name is already taken.
const MAX_NAME_ATTEMPTS: u32 = 1000;

/// Where and how segments are written.
#[derive(Clone, Debug)]
pub struct SegmentConfig {
    /// Log directory; created if missing.
    pub dir: PathBuf,
    /// A segment is closed once it has been open this long (checked on a timer).
    pub max_segment_duration: Duration,
    /// A segment is closed once this many *uncompressed* bytes have been written to it.
    pub max_file_size: u64,
    pub compression: Compression,
}

/// Segment encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain text lines.
    None,
    /// One zstd frame per segment; level 0 means zstd's default level.
    Zstd { level: i32 },
}

/// Message to the writer thread.
enum Msg {
    Line(String),
    /// Write out everything queued before it now (not at the end of the flush window), then
    /// acknowledge.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Close the current segment, acknowledge, and stop.
    Shutdown(Sender<()>),
}

/// Handle to the writer thread. Cheap to clone; `Send + Sync`.
///
/// Dropping every handle without calling [`shutdown`](Self::shutdown) also makes the thread
/// close its segment and exit, but nothing waits for it.
#[derive(Clone)]
pub struct LogWriterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Msg>,
    /// Set by `shutdown`, so later `write_line` calls are dropped with a warning.
    stopped: AtomicBool,
    /// Taken by the first `shutdown`; the lock also makes concurrent callers wait until done.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LogWriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriterHandle")
            .field("stopped", &self.inner.stopped.load(Ordering::Relaxed))
            .finish()
    }
}

impl LogWriterHandle {
    /// Start the writer thread (named "ferry-log-writer"): creates `dir` if needed and marks
    /// leftover writable files complete (they were left by a crash).
    ///
    /// Fails on an out-of-range zstd level, so a misconfiguration surfaces here rather than as
    /// an error for every segment.
    pub fn start(cfg: SegmentConfig) -> io::Result<LogWriterHandle> {
        if let Compression::Zstd { level } = cfg.compression
            && !zstd::compression_level_range().contains(&level)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("zstd compression level {level} is out of range"),
            ));
        }
        fs::create_dir_all(&cfg.dir)?;
        mark_leftovers_complete(&cfg.dir)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new().name("ferry-log-writer".into()).spawn(move || {
            SegmentWriter::new(cfg).run(&rx);
        })?;
        Ok(LogWriterHandle {
            inner: Arc::new(Inner { tx, stopped: AtomicBool::new(false), thread: Mutex::new(Some(thread)) }),
        })
    }

    /// Queue one already-serialised JSON record (no trailing newline; the writer adds '\n').
    /// Never blocks on disk I/O (the queue is unbounded).
    pub fn write_line(&self, line: String) {
        if self.inner.stopped.load(Ordering::Acquire) || self.inner.tx.send(Msg::Line(line)).is_err() {
            tracing::warn!("log writer is shut down; dropping log record");
        }
    }

    /// Wait until every line queued before this call is in the segment file (written, so a
    /// kill -9 keeps it; not fsync'd). Returns at once if the writer has stopped.
    pub async fn flushed(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.inner.stopped.load(Ordering::Acquire) || self.inner.tx.send(Msg::Flush(tx)).is_err() {
            return;
        }
        let _ = rx.await;
    }

    /// Flush everything queued, close the current segment (finish frame, clear write bits) and
    /// stop the thread. Blocks until done. Safe to call more than once and from any clone.
    pub fn shutdown(&self) {
        let mut thread = self.inner.thread.lock().unwrap_or_else(PoisonError::into_inner);
        self.inner.stopped.store(true, Ordering::Release);
        let Some(thread) = thread.take() else {
            return;
        };
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if self.inner.tx.send(Msg::Shutdown(ack_tx)).is_ok() {
            // An Err only means the thread is already gone; the join below still waits.
            let _ = ack_rx.recv();
        }
        if thread.join().is_err() {
            tracing::error!("log writer thread panicked");
        }
    }
}

/// Clear the write bits of every regular file in `dir` that still has one: a writable file at
/// start-up is a segment a crashed process never closed, and readers would otherwise wait on it
/// forever. Per-file failures are logged, not fatal, so logging can still start.
fn mark_leftovers_complete(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        // symlink_metadata: never chmod a symlink's target outside the log directory.
        let marked = fs::symlink_metadata(&path).and_then(|meta| {
            let writable = meta.is_file() && meta.permissions().mode() & WRITE_BITS != 0;
            if writable {
                mark_complete(&path)?;
            }
            Ok(writable)
        });
        match marked {
            Ok(true) => {
                tracing::info!(file = %path.display(), "marked leftover log segment complete")
            }
            Ok(false) => {}
            Err(error) => tracing::error!(
                file = %path.display(), %error,
                "cannot mark leftover log segment complete"
            ),
        }
    }
    Ok(())
}

/// Clear all write permission bits of `path`.
fn mark_complete(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    let mode = perms.mode();
    if mode & WRITE_BITS != 0 {
        perms.set_mode(mode & !WRITE_BITS);
        fs::set_permissions(path, perms)?;
    }
    Ok(())
}

/// Segment file name for an open time.
fn segment_name(opened: DateTime<Utc>) -> String {
    opened.format(SEGMENT_NAME_FORMAT).to_string()
}

/// The encoder stack of an open segment. It writes into memory ([`Spill`]); `persist` moves
/// the bytes to the file.
enum Output {
    Plain(Spill<File>),
    Zstd(zstd::stream::write::Encoder<'static, Spill<File>>),
}

impl Output {
    fn write_record(&mut self, line: &str) -> io::Result<()> {
        let w: &mut dyn Write = match self {
            Output::Plain(w) => w,
            Output::Zstd(w) => w,
        };
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")
    }

    /// End the current zstd block, so everything written so far decodes once persisted.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(w) => w.flush(),
            Output::Zstd(w) => w.flush(),
        }
    }

    fn spill(&self) -> &Spill<File> {
        match self {
            Output::Plain(s) => s,
            Output::Zstd(w) => w.get_ref(),
        }
    }

    fn spill_mut(&mut self) -> &mut Spill<File> {
        match self {
            Output::Plain(s) => s,
            Output::Zstd(w) => w.get_mut(),
        }
    }

    /// Finish the zstd frame (into memory, like every write).
    fn finish(self) -> io::Result<Spill<File>> {
        match self {
            Output::Plain(s) => Ok(s),
            Output::Zstd(w) => w.finish(),
        }
    }
}

struct Segment {
    path: PathBuf,
    out: Output,
    /// Uncompressed bytes written, compared against `max_file_size`.
    written: u64,
    /// When the segment must close; `None` if the duration is too large to represent.
    deadline: Option<Instant>,
}

/// A finished segment whose last bytes the disk has not taken yet.
struct Closing {
    path: PathBuf,
    spill: Spill<File>,
}

/// Encoded bytes kept in memory while the disk refuses them. Past this, *new* records are
/// dropped and counted: the file stays a gap-free prefix of what was logged, and the compressed
/// stream already in memory cannot lose its oldest records anyway. 64 MiB of zstd is several
/// hundred thousand records.
const MAX_PENDING_BYTES: usize = 64 << 20;

/// How soon a failing segment is retried when no new record comes to retry it.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Records reach the file at most this long after they are logged (see `run`).
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// While writes keep failing, at most one error line per this long.
const ERROR_INTERVAL: Duration = Duration::from_secs(60);

/// State owned by the writer thread.
struct SegmentWriter {
    cfg: SegmentConfig,
    current: Option<Segment>,
    closing: Option<Closing>,
    /// Open time used for the previous segment name; new names are strictly later, so names
    /// stay unique and sort in write order even if the clock stalls or steps back.
    last_opened: Option<DateTime<Utc>>,
    /// [`MAX_PENDING_BYTES`], smaller in tests.
    pending_limit: usize,
    /// Since when writes have been failing (set by the first reported error).
    failing_since: Option<Instant>,
    /// Records lost since the trouble began (reported with each error and on recovery).
    dropped: u64,
    errors: Throttle,
    /// Flushes so far (each ends a zstd block); returned by `run` for tests.
    flushes: u64,
}

impl SegmentWriter {
    fn new(cfg: SegmentConfig) -> Self {
        SegmentWriter {
            cfg,
            current: None,
            closing: None,
            last_opened: None,
            pending_limit: MAX_PENDING_BYTES,
            failing_since: None,
            dropped: 0,
            errors: Throttle::new(ERROR_INTERVAL),
            flushes: 0,
        }
    }

    /// Write records until shut down; returns how many flushes it made.
    fn run(mut self, rx: &Receiver<Msg>) -> u64 {
        let mut last_flush = Instant::now();
        loop {
            // Wake without a record to retry a failing write, or to close an aged segment.
            let first = match self.wake_at() {
                Some(at) => match rx.recv_deadline(at) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => {
                        self.tick();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                },
            };
            if self.take(first, rx).is_break() {
                return self.flushes;
            }
            // Flushing ends a zstd block. Records that arrive within MIN_FLUSH_INTERVAL of the
            // last flush join this block: under load the writer then compresses a few large
            // blocks a second instead of thousands of small ones (and wakes as often).
            let flush_at = last_flush + MIN_FLUSH_INTERVAL;
            loop {
                let next = match rx.try_recv() {
                    Ok(msg) => msg,
                    Err(_) if Instant::now() >= flush_at => break,
                    Err(_) => match rx.recv_deadline(flush_at) {
                        Ok(msg) => msg,
                        Err(_) => break,
                    },
                };
                if self.take(next, rx).is_break() {
                    return self.flushes;
                }
            }
            self.flush_current();
            self.flushes += 1;
            last_flush = Instant::now();
        }
        // Every handle was dropped without shutdown.
        self.close_all();
        self.flushes
    }

    /// Write a record, or shut down (Break: the writer is done).
    fn take(&mut self, msg: Msg, rx: &Receiver<Msg>) -> std::ops::ControlFlow<()> {
        match msg {
            Msg::Line(line) => {
                self.write_record(&line);
                std::ops::ControlFlow::Continue(())
            }
            Msg::Flush(ack) => {
                self.flush_current();
                self.flushes += 1;
                let _ = ack.send(());
                std::ops::ControlFlow::Continue(())
            }
            Msg::Shutdown(ack) => {
                self.close_all();
                let dropped = rx.try_iter().filter(|m| matches!(m, Msg::Line(_))).count();
                if dropped > 0 {
                    tracing::warn!(dropped, "log records queued after shutdown were dropped");
                }
                let _ = ack.send(());
                std::ops::ControlFlow::Break(())
            }
        }
    }

    fn wake_at(&self) -> Option<Instant> {
        if self.failing() {
            return Some(Instant::now() + RETRY_INTERVAL);
        }
        self.current.as_ref().and_then(|s| s.deadline)
    }

    /// Nothing arrived before `wake_at`: retry, then close the segment if it is due.
    fn tick(&mut self) {
        self.flush_current();
        if self.rotation_due() {
            self.close_current();
        }
    }

    /// Bytes are waiting for the disk. A failing segment is neither rotated nor replaced: a new
    /// file would only be one more the disk cannot take.
    fn failing(&self) -> bool {
        self.closing.is_some() || self.current.as_ref().is_some_and(|s| s.out.spill().failing())
    }

    fn pending_bytes(&self) -> usize {
        self.closing.as_ref().map_or(0, |c| c.spill.pending())
            + self.current.as_ref().map_or(0, |s| s.out.spill().pending())
    }

    fn rotation_due(&self) -> bool {
        !self.failing()
            && self.current.as_ref().is_some_and(|s| s.deadline.is_some_and(|d| Instant::now() >= d))
    }

    fn write_record(&mut self, line: &str) {
        // A busy writer may never time out in recv, so also check the age here.
        if self.rotation_due() {
            self.close_current();
        }
        if self.pending_bytes() >= self.pending_limit {
            self.drop_record();
            let limit = self.pending_limit;
            self.report(
                "log records over the in-memory limit while the disk refuses them; dropping new ones",
                &format!("{limit} bytes are waiting"),
            );
            return;
        }
        if self.current.is_none() {
            self.current = self.open_segment();
        }
        let Some(seg) = self.current.as_mut() else {
            self.drop_record(); // open_segment already reported why.
            return;
        };
        match seg.out.write_record(line) {
            Ok(()) => {
                seg.written += line.len() as u64 + 1;
                if seg.written >= self.cfg.max_file_size && !self.failing() {
                    self.close_current();
                }
            }
            // The bytes go to memory, so only the encoder itself can fail here.
            Err(error) => {
                tracing::error!(
                    file = %seg.path.display(), %error,
                    "cannot encode log record; abandoning segment"
                );
                self.abandon_current();
            }
        }
    }

    fn drop_record(&mut self) {
        self.dropped += 1;
        crate::metrics::metrics().log_records_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A write problem, logged at most once per [`ERROR_INTERVAL`] with what is at stake.
    fn report(&mut self, what: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        self.failing_since.get_or_insert(now);
        if let Some(suppressed) = self.errors.hit(now) {
            tracing::error!(
                dir = %self.cfg.dir.display(), %error, pending_bytes = self.pending_bytes(),
                dropped = self.dropped, suppressed, "{what}"
            );
        }
    }

    /// Everything pending reached the disk: say so once, with what was lost meanwhile.
    fn note_recovery(&mut self) {
        if self.failing() {
            return;
        }
        if let Some(since) = self.failing_since.take() {
            tracing::warn!(
                dir = %self.cfg.dir.display(), after = ?since.elapsed(), dropped = self.dropped,
                "log writes recovered; records kept in memory meanwhile are on disk"
            );
            self.dropped = 0;
            self.errors.reset();
        }
    }

    /// Create the next segment file; reports and returns `None` on failure.
    fn open_segment(&mut self) -> Option<Segment> {
        // Re-created on every open in case the directory was removed under us.
        if let Err(error) = fs::create_dir_all(&self.cfg.dir) {
            self.report("cannot create log directory; dropping log records", &error);
            return None;
        }
        let mut opened = Utc::now();
        if let Some(last) = self.last_opened
            && opened <= last
        {
            opened = bump(last);
        }
        for _ in 0..MAX_NAME_ATTEMPTS {
            let path = self.cfg.dir.join(segment_name(opened));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    self.last_opened = Some(opened);
                    return self.new_segment(path, file);
                }
                // Same nanosecond as an existing file (e.g. another process, or clock stepped
                // back): try the next nanosecond.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => opened = bump(opened),
                Err(error) => {
                    self.report("cannot create log segment; dropping log records", &error);
                    return None;
                }
            }
        }
        self.report("no free log segment name; dropping log records", &"every name tried exists");
        None
    }

    fn new_segment(&self, path: PathBuf, file: File) -> Option<Segment> {
        let spill = Spill::new(file);
        let out = match self.cfg.compression {
            Compression::None => Ok(Output::Plain(spill)),
            Compression::Zstd { level } => {
                zstd::stream::write::Encoder::new(spill, level).and_then(|mut enc| {
                    enc.include_checksum(true)?;
                    Ok(Output::Zstd(enc))
                })
            }
        };
        match out {
            Ok(out) => Some(Segment {
                path,
                out,
                written: 0,
                deadline: Instant::now().checked_add(self.cfg.max_segment_duration),
            }),
            Err(error) => {
                tracing::error!(
                    file = %path.display(), %error,
                    "cannot start zstd encoder; dropping log record"
                );
                // Nothing was written; remove it rather than leave an empty segment behind.
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Move what is pending to disk: the closing segment's tail first, then the current one.
    /// A failure keeps the bytes for the next try (the next drain, or `tick`).
    fn flush_current(&mut self) {
        if let Some(closing) = self.closing.as_mut() {
            if let Err(error) = closing.spill.persist() {
                self.report("cannot write log segment; its records stay in memory and are retried", &error);
                return;
            }
            let Closing { path, spill } = self.closing.take().expect("checked above");
            complete(&path, spill.into_file());
        }
        let Some(seg) = self.current.as_mut() else {
            self.note_recovery();
            return;
        };
        if let Err(error) = seg.out.flush() {
            tracing::error!(file = %seg.path.display(), %error, "cannot encode log segment; abandoning it");
            self.abandon_current();
            return;
        }
        match seg.out.spill_mut().persist() {
            Ok(()) => self.note_recovery(),
            Err(error) => {
                self.report("cannot write log segment; its records stay in memory and are retried", &error)
            }
        }
    }

    /// Finish the frame and hand the segment to `closing`, which writes its tail, syncs and
    /// marks it complete (now, or once the disk takes it).
    fn close_current(&mut self) {
        let Some(seg) = self.current.take() else {
            return;
        };
        if let Some(stuck) = self.closing.take() {
            give_up(stuck); // Not reached: a failing writer does not rotate.
        }
        match seg.out.finish() {
            Ok(spill) => self.closing = Some(Closing { path: seg.path, spill }),
            Err(error) => {
                tracing::error!(file = %seg.path.display(), %error, "cannot finish log segment");
                if let Err(error) = mark_complete(&seg.path) {
                    tracing::error!(file = %seg.path.display(), %error, "cannot mark log segment complete");
                }
            }
        }
        self.flush_current();
    }

    /// At shutdown: one last try for everything, then give up on what the disk still refuses
    /// (waiting longer would hang the node's exit).
    fn close_all(&mut self) {
        self.flush_current();
        if let Some(stuck) = self.closing.take() {
            give_up(stuck);
        }
        self.close_current();
        if let Some(stuck) = self.closing.take() {
            give_up(stuck);
        }
    }

    /// After an encoder error: drop the encoder without finishing and mark the file complete
    /// anyway, so readers stop waiting for it (they accept a truncated frame). The next record
    /// opens a new segment.
    fn abandon_current(&mut self) {
        if let Some(seg) = self.current.take() {
            let path = seg.path;
            drop(seg.out);
            if let Err(error) = mark_complete(&path) {
                tracing::error!(
                    file = %path.display(), %error,
                    "cannot mark abandoned log segment complete"
                );
            }
        }
    }
}

/// Sync before clearing the write bits so a "complete" file is not missing its tail after a
/// power loss. Once per segment, so the cost is negligible.
fn complete(path: &Path, file: File) {
    if let Err(error) = file.sync_all() {
        tracing::error!(file = %path.display(), %error, "cannot sync log segment");
    }
    if let Err(error) = mark_complete(path) {
        tracing::error!(file = %path.display(), %error, "cannot mark log segment complete");
    }
}

/// Mark a segment whose tail never reached the disk complete anyway; readers accept the
/// truncated frame.
fn give_up(stuck: Closing) {
    tracing::error!(
        file = %stuck.path.display(), lost_bytes = stuck.spill.pending(),
        "the end of a log segment could not be written and is lost"
    );
    if let Err(error) = mark_complete(&stuck.path) {
        tracing::error!(file = %stuck.path.display(), %error, "cannot mark log segment complete");
    }
}

/// One nanosecond later (or unchanged at the end of chrono's range, where a name clash is
/// then reported by `open_segment`).
fn bump(t: DateTime<Utc>) -> DateTime<Utc> {
    t.checked_add_signed(TimeDelta::nanoseconds(1)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::segment_reader::{is_complete, list_segments, read_segment_lines};

    fn config(dir: &Path, compression: Compression) -> SegmentConfig {
        SegmentConfig {
            dir: dir.to_path_buf(),
            max_segment_duration: Duration::from_secs(3600),
            max_file_size: 1_000_000_000,
            compression,
        }
    }

    fn records(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| serde_json::json!({"type": "Delivery", "id": i, "pad": "x".repeat(i % 50)}).to_string())
            .collect()
    }

    fn all_lines(dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        for seg in list_segments(dir).unwrap() {
            lines.extend(read_segment_lines(&seg).unwrap());
        }
        lines
    }

    /// Poll `cond` until it holds or `timeout` passes; returns whether it held.
    fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        cond()
    }

    fn round_trip(compression: Compression) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let input = records(5000);
        let writer = LogWriterHandle::start(config(dir.path(), compression)).unwrap();
        for line in &input {
            writer.write_line(line.clone());
        }
        writer.shutdown();
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(is_complete(&segs[0]).unwrap());
        assert_eq!(all_lines(dir.path()), input);
        (dir, segs)
    }

    #[test]
    fn zstd_round_trip() {
        let (_dir, segs) = round_trip(Compression::Zstd { level: 0 });
        let bytes = fs::read(&segs[0]).unwrap();
        assert_eq!(&bytes[..4], &[0x28, 0xB5, 0x2F, 0xFD]);
    }

    /// Records that trickle in (one every half millisecond) share zstd blocks: a flush at most
    /// every MIN_FLUSH_INTERVAL, not one per record, and every record is in the file.
    #[test]
    fn trickling_records_are_flushed_together() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Compression::Zstd { level: 0 });
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = std::thread::spawn(move || SegmentWriter::new(cfg).run(&rx));
        let input = records(200);
        let started = Instant::now();
        for line in &input {
            tx.send(Msg::Line(line.clone())).unwrap();
            // A producer pacing its records, not a wait for a condition.
            std::thread::sleep(Duration::from_micros(500));
        }
        let elapsed = started.elapsed();
        drop(tx);
        let flushes = writer.join().unwrap();
        let most = elapsed.as_millis() as u64 / MIN_FLUSH_INTERVAL.as_millis() as u64 + 3;
        assert!(flushes <= most, "{flushes} flushes for 200 records over {elapsed:?} (at most {most})");
        assert_eq!(all_lines(dir.path()), input);
    }

    /// `flushed` does not wait for the flush window: the lines logged before it are in the file.
    #[test]
    fn flushed_puts_what_was_logged_in_the_file_now() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LogWriterHandle::start(config(dir.path(), Compression::None)).unwrap();
        let input = records(3);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for line in &input {
            writer.write_line(line.clone());
            rt.block_on(writer.flushed());
            let segment = list_segments(dir.path()).unwrap().remove(0);
            let text = fs::read_to_string(&segment).unwrap();
            assert!(text.ends_with(&format!("{line}\n")), "{line} is in the file: {text}");
        }
        writer.shutdown();
        rt.block_on(writer.flushed()); // a stopped writer answers at once
    }

    #[test]
    fn plain_round_trip() {
        let (_dir, segs) = round_trip(Compression::None);
        let text = fs::read_to_string(&segs[0]).unwrap();
        assert!(text.starts_with("{\"id\":0,"), "{}", &text[..20]);
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn segment_names_use_utc_nanosecond_timestamps() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000000789Z").unwrap().to_utc();
        assert_eq!(segment_name(t), "20260102-030405.000000789");
    }

    #[test]
    fn names_stay_unique_and_increasing_when_the_clock_does_not_advance() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Compression::None);
        cfg.max_file_size = 1;
        let mut w = SegmentWriter::new(cfg);
        // Pretend the previous segment was opened "later" than now, and that the next
        // nanosecond's name is already taken by someone else.
        w.last_opened =
            Some(DateTime::parse_from_rfc3339("2100-01-01T00:00:00.999999999Z").unwrap().to_utc());
        fs::write(dir.path().join("21000101-000001.000000000"), "").unwrap();
        w.write_record("a");
        w.write_record("b");
        let names: Vec<_> = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["21000101-000001.000000000", "21000101-000001.000000001", "21000101-000001.000000002"]
        );
        assert_eq!(all_lines(dir.path()), ["a", "b"]);
    }

    #[test]
    fn size_rotation_produces_several_complete_segments() {
        let dir = tempfile::tempdir().unwrap();
        let input = records(300);
        let mut cfg = config(dir.path(), Compression::Zstd { level: 3 });
        cfg.max_file_size = 2000;
        let writer = LogWriterHandle::start(cfg).unwrap();
        for line in &input {
            writer.write_line(line.clone());
        }
        writer.shutdown();
        let segs = list_segments(dir.path()).unwrap();
        assert!(segs.len() > 3, "only {} segments", segs.len());
        for seg in &segs {
            assert!(is_complete(seg).unwrap());
            let size: usize = read_segment_lines(seg).unwrap().iter().map(|l| l.len() + 1).sum();
            // Every segment but the last closed on the record that reached the limit.
            if seg != segs.last().unwrap() {
                assert!((2000..2000 + 100).contains(&size), "{size}");
            }
        }
        assert_eq!(all_lines(dir.path()), input);
    }

    #[test]
    fn one_record_per_segment_gets_unique_ordered_names() {
        let dir = tempfile::tempdir().unwrap();
        let input = records(200);
        let mut cfg = config(dir.path(), Compression::None);
        cfg.max_file_size = 1;
        let writer = LogWriterHandle::start(cfg).unwrap();
        for line in &input {
            writer.write_line(line.clone());
        }
        writer.shutdown();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 200);
        assert_eq!(all_lines(dir.path()), input);
    }

    #[test]
    fn age_rotation_closes_quiet_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Compression::Zstd { level: 0 });
        cfg.max_segment_duration = Duration::from_millis(200);
        let writer = LogWriterHandle::start(cfg).unwrap();
        writer.write_line("first".into());
        let first_closed = || {
            let segs = list_segments(dir.path()).unwrap();
            segs.len() == 1 && is_complete(&segs[0]).unwrap()
        };
        assert!(wait_for(Duration::from_secs(5), first_closed));
        assert_eq!(all_lines(dir.path()), ["first"]);

        // The next record opens a fresh segment.
        writer.write_line("second".into());
        assert!(wait_for(Duration::from_secs(5), || list_segments(dir.path()).unwrap().len() == 2));
        writer.shutdown();
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(read_segment_lines(&segs[1]).unwrap(), ["second"]);
    }

    #[test]
    fn shutdown_completes_files_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Compression::Zstd { level: 1 });
        cfg.max_file_size = 500;
        let writer = LogWriterHandle::start(cfg).unwrap();
        let input = records(50);
        for line in &input {
            writer.write_line(line.clone());
        }
        let clone = writer.clone();
        let t = std::thread::spawn(move || clone.shutdown());
        writer.shutdown();
        t.join().unwrap();
        writer.shutdown();

        let segs = list_segments(dir.path()).unwrap();
        for seg in &segs {
            assert!(is_complete(seg).unwrap());
            // A finished frame decodes strictly, with no truncation tolerance needed.
            zstd::decode_all(fs::File::open(seg).unwrap()).unwrap();
        }
        assert_eq!(all_lines(dir.path()), input);

        // Later writes are dropped and create no files.
        writer.write_line("late".into());
        assert_eq!(list_segments(dir.path()).unwrap(), segs);
    }

    #[test]
    fn open_segment_is_readable_before_close() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LogWriterHandle::start(config(dir.path(), Compression::Zstd { level: 0 })).unwrap();
        let input = records(100);
        for line in &input {
            writer.write_line(line.clone());
        }
        let flushed = || {
            list_segments(dir.path())
                .unwrap()
                .first()
                .is_some_and(|s| read_segment_lines(s).unwrap().len() == input.len())
        };
        assert!(wait_for(Duration::from_secs(5), flushed));
        let segs = list_segments(dir.path()).unwrap();
        assert!(!is_complete(&segs[0]).unwrap());
        assert_eq!(read_segment_lines(&segs[0]).unwrap(), input);
        writer.shutdown();
        assert!(is_complete(&segs[0]).unwrap());
    }

    #[test]
    fn leftover_writable_file_is_marked_complete_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join("20200101-000000.000000000");
        let mut enc = zstd::stream::write::Encoder::new(fs::File::create(&leftover).unwrap(), 0).unwrap();
        enc.write_all(b"{\"old\":1}\n").unwrap();
        enc.flush().unwrap(); // never finished: as if the process crashed
        drop(enc);
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!is_complete(&leftover).unwrap());

        let writer = LogWriterHandle::start(config(dir.path(), Compression::Zstd { level: 0 })).unwrap();
        assert!(is_complete(&leftover).unwrap());
        assert_eq!(fs::metadata(&leftover).unwrap().permissions().mode() & 0o777, 0o444);
        writer.write_line("{\"new\":1}".into());
        writer.shutdown();
        assert_eq!(all_lines(dir.path()), ["{\"old\":1}", "{\"new\":1}"]);
    }

    #[test]
    fn writer_survives_io_errors() {
        // Drive the writer state machine directly so the failure happens at a known point.
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("logs");
        let mut cfg = config(&log_dir, Compression::Zstd { level: 0 });
        cfg.max_file_size = 1;
        let mut w = SegmentWriter::new(cfg);
        w.write_record("a");
        assert_eq!(all_lines(&log_dir), ["a"]);

        // Replace the directory by a plain file: opening the next segment must fail.
        fs::remove_dir_all(&log_dir).unwrap();
        fs::write(&log_dir, b"not a dir").unwrap();
        w.write_record("lost");
        assert!(w.current.is_none());

        // Once the cause is gone the writer carries on with a new segment.
        fs::remove_file(&log_dir).unwrap();
        w.write_record("b");
        w.close_current();
        assert_eq!(all_lines(&log_dir), ["b"]);
    }

    /// Point the open segment at /dev/full (every write: ENOSPC); returns its real file.
    fn fill_disk(w: &mut SegmentWriter) -> File {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        std::mem::replace(w.current.as_mut().unwrap().out.spill_mut().file_mut(), full)
    }

    fn free_disk(w: &mut SegmentWriter, file: File) {
        *w.current.as_mut().unwrap().out.spill_mut().file_mut() = file;
    }

    #[test]
    fn a_full_disk_keeps_records_in_the_same_segment_until_it_has_room() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Compression::Zstd { level: 0 });
        cfg.max_file_size = 500; // would rotate several times over if the disk had room
        let mut w = SegmentWriter::new(cfg);
        let input = records(200);
        w.write_record(&input[0]);
        w.flush_current();
        let file = fill_disk(&mut w);
        for line in &input[1..] {
            w.write_record(line);
            w.flush_current();
        }
        w.tick(); // the timer's retry, still refused
        assert!(w.failing());
        assert!(w.pending_bytes() > 0);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1, "no new segment while failing");
        assert_eq!(all_lines(dir.path()), input[..1], "the file holds a clean prefix");

        free_disk(&mut w, file);
        w.tick();
        assert!(!w.failing());
        assert_eq!((w.pending_bytes(), w.dropped, w.failing_since), (0, 0, None));
        assert_eq!(all_lines(dir.path()), input, "every record kept while full is on disk, in order");
        // Rotation resumes once the disk takes writes again: the oversized segment closes on
        // its next record, the one after opens a new file.
        w.write_record("after");
        w.write_record("next");
        w.close_all();
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| is_complete(s).unwrap()));
        zstd::decode_all(fs::File::open(&segs[0]).unwrap()).unwrap();
        assert_eq!(read_segment_lines(&segs[1]).unwrap(), ["next"]);
    }

    #[test]
    fn past_the_memory_bound_new_records_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(config(dir.path(), Compression::None));
        w.pending_limit = 100;
        w.write_record("first");
        w.flush_current();
        let file = fill_disk(&mut w);
        let before = crate::metrics::metrics().log_records_dropped.load(Ordering::Relaxed);
        let input: Vec<String> = (0..50).map(|i| format!("record-{i:02}")).collect(); // 10 bytes + \n
        for line in &input {
            w.write_record(line);
            w.flush_current();
        }
        // 10 records fill the 100 bytes (110 pending); the other 40 are dropped.
        assert_eq!(w.dropped, 40);
        assert!(crate::metrics::metrics().log_records_dropped.load(Ordering::Relaxed) >= before + 40);
        free_disk(&mut w, file);
        w.tick();
        w.write_record("later");
        w.close_all();
        let mut expected = vec!["first".to_string()];
        expected.extend(input[..10].iter().cloned());
        expected.push("later".into());
        assert_eq!(all_lines(dir.path()), expected, "a gap-free prefix, then the records after");
    }

    #[test]
    fn shutdown_on_a_full_disk_gives_up_and_marks_the_segment_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(config(dir.path(), Compression::Zstd { level: 0 }));
        w.write_record("kept");
        w.flush_current();
        let _file = fill_disk(&mut w);
        w.write_record("lost");
        w.close_all();
        assert!(w.current.is_none() && w.closing.is_none());
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(is_complete(&segs[0]).unwrap(), "readers must not wait for it forever");
        assert_eq!(all_lines(dir.path()), ["kept"]);
    }

    #[test]
    fn rejects_bad_zstd_level() {
        let dir = tempfile::tempdir().unwrap();
        let err = LogWriterHandle::start(config(dir.path(), Compression::Zstd { level: 1000 })).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
