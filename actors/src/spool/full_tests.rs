//! A full spool (issue #12): new messages are refused with `Full`, removals never fail because
//! inserts do, and a removal that finds no room waits in the writer until it lands.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::commit::{self, Request};
use super::*;
use crate::model::MessageIdGenerator;

/// The smallest map the config allows.
const MAP: u64 = 1 << 20;

fn message(g: &MessageIdGenerator, body: usize) -> Message {
    let data = Bytes::from(format!("Subject: x\r\n\r\n{}\r\n", "x".repeat(body)));
    Message::new(g.generate(), "s@example.com".into(), vec!["r@example.com".into()], data)
}

fn put(m: &Message) -> SpoolOp {
    SpoolOp::Put { id: m.id, meta: m.spool_meta().to_bytes(), data: Some(m.data.clone()) }
}

/// Store 8 KiB messages until the spool refuses one; returns the stored ones.
fn fill(writer: &SpoolWriter, g: &MessageIdGenerator) -> Vec<Message> {
    let mut stored = Vec::new();
    loop {
        let m = message(g, 8 << 10);
        match writer.commit_blocking(vec![put(&m)]) {
            Ok(()) => stored.push(m),
            Err(SpoolError::Full) => return stored,
            Err(e) => panic!("expected Full, got {e}"),
        }
        assert!(stored.len() < 1000, "a 1 MiB map never filled");
    }
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn full_spool_refuses_new_messages_and_takes_them_again_after_removals() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), MAP, true).unwrap();
    let writer = SpoolWriter::start(spool);
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let stored = fill(&writer, &g);
    assert!(stored.len() > 20, "only {} messages fit", stored.len());
    // Meta updates of stored messages still fit: they may use the reserve.
    let meta_only =
        stored.iter().map(|m| SpoolOp::Put { id: m.id, meta: m.spool_meta().to_bytes(), data: None });
    writer.commit_blocking(meta_only.collect()).unwrap();
    let removals = stored[..10].iter().map(|m| SpoolOp::Remove { id: m.id }).collect();
    writer.commit_blocking(removals).unwrap();
    assert_eq!(spool.count().unwrap(), stored.len() as u64 - 10);
    // Removals only become free pages two commits later (LMDB keeps the last snapshot).
    writer.commit_blocking(vec![SpoolOp::Remove { id: stored[10].id }]).unwrap();
    let again = message(&g, 8 << 10);
    writer.commit_blocking(vec![put(&again)]).unwrap();
    assert_eq!(spool.load(&again.id).unwrap().unwrap(), again);
    writer.shutdown();
}

/// One request that does not fit in the batch's transaction must not fail the others: the
/// removal lands and the write is refused alone.
#[test]
fn a_write_that_does_not_fit_cannot_fail_the_removals_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), MAP, true).unwrap();
    let writer = SpoolWriter::start(spool);
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let (kept, gone) = (message(&g, 100), message(&g, 100));
    writer.commit_blocking(vec![put(&kept), put(&gone)]).unwrap();
    writer.shutdown();
    let request = |ops| {
        let (reply, rx) = oneshot::channel();
        (Request { ops, reply }, rx)
    };
    // A meta update is not held to the reserve, so LMDB itself finds it too large.
    let (huge, huge_rx) = request(vec![SpoolOp::Put { id: kept.id, meta: vec![b' '; 2 << 20], data: None }]);
    let (remove, remove_rx) = request(vec![SpoolOp::Remove { id: gone.id }]);
    let (update, update_rx) = request(vec![SpoolOp::Put { id: kept.id, meta: b"{}".to_vec(), data: None }]);
    let outcome = commit::commit(&spool, vec![huge, remove, update]);
    assert!(outcome.stalled.is_empty());
    assert_eq!(outcome.refused, 1);
    assert!(matches!(huge_rx.blocking_recv().unwrap(), Err(SpoolError::Full)));
    remove_rx.blocking_recv().unwrap().unwrap();
    update_rx.blocking_recv().unwrap().unwrap();
    assert_eq!(spool.load_meta(&gone.id).unwrap(), None);
    assert_eq!(spool.count().unwrap(), 1);
}

/// Removals whose freed pages a reader pins eventually find no room at all; they wait in the
/// writer, unanswered, and land by themselves once room appears.
#[test]
fn a_removal_without_room_is_retried_until_it_lands() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), MAP, true).unwrap();
    let writer = SpoolWriter::start(spool);
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let stored = fill(&writer, &g);
    // A reader keeps every page freed from now on out of reach, so each removal eats the reserve.
    let reader = spool.env().read_txn().unwrap();
    let mut waiting = None;
    for m in &stored {
        let before = writer.stats().commits.load(Ordering::Relaxed);
        let mut rx = writer.submit(vec![SpoolOp::Remove { id: m.id }]);
        // Answered, or tried twice (the first attempt and a retry) without an answer: held.
        let answer = wait_for("the removal to be answered or retried", || {
            let commits = writer.stats().commits.load(Ordering::Relaxed);
            match rx.try_recv() {
                Ok(result) => Some(Some(result)),
                Err(oneshot::error::TryRecvError::Empty) => (commits >= before + 2).then_some(None),
                Err(e) => panic!("{e}"),
            }
        });
        match answer {
            Some(result) => result.unwrap(),
            None => {
                waiting = Some((m.id, rx));
                break;
            }
        }
    }
    let (id, rx) = waiting.expect("the reserve ran out before the spool was empty");
    assert!(spool.load_meta(&id).unwrap().is_some());
    drop(reader);
    rx.blocking_recv().unwrap().unwrap();
    assert_eq!(spool.load_meta(&id).unwrap(), None);
    writer.shutdown();
}

#[test]
fn a_map_size_of_no_whole_number_of_pages_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1_500_000, true).unwrap();
    assert!(spool.env().info().map_size >= 1_500_000);
}
