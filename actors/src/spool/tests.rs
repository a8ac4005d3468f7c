use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;
use crate::model::MessageIdGenerator;

fn message(g: &MessageIdGenerator, n: usize) -> Message {
    Message::new(
        g.generate(),
        "sender@example.com".into(),
        vec![format!("r{n}@example.com")],
        Bytes::from(format!("Subject: {n}\r\n\r\nbody {n}\r\n")),
    )
}

fn put(m: &Message) -> SpoolOp {
    SpoolOp::Put { id: m.id, meta: m.spool_meta().to_bytes(), data: Some(m.data.clone()) }
}

#[test]
fn written_messages_read_back_and_removal_deletes_both_parts() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 26, true).unwrap();
    let writer = SpoolWriter::start(spool);
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let a = message(&g, 1);
    let b = message(&g, 2);
    writer.commit_blocking(vec![put(&a), put(&b)]).unwrap();
    assert_eq!(spool.load(&a.id).unwrap().unwrap(), a);
    assert_eq!(spool.count().unwrap(), 2);
    writer.commit_blocking(vec![SpoolOp::Remove { id: a.id }]).unwrap();
    assert_eq!(spool.load(&a.id).unwrap(), None);
    assert_eq!(spool.inventory().unwrap().messages, 1);
    writer.shutdown();
    assert!(matches!(writer.commit_blocking(vec![put(&a)]), Err(SpoolError::WriterStopped)));
}

/// Writes that arrive while a commit is in flight share the next transaction: with many
/// concurrent callers there must be far fewer commits than requests, and every caller is answered.
#[test]
fn concurrent_writes_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 28, true).unwrap();
    let writer = SpoolWriter::start(spool);
    let g = Arc::new(MessageIdGenerator::new(&uuid::Uuid::new_v4()));
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let (writer, g) = (writer.clone(), g.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    writer.commit_blocking(vec![put(&message(&g, t * 100 + i))]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = writer.stats();
    assert_eq!(stats.requests.load(Ordering::Relaxed), 800);
    let commits = stats.commits.load(Ordering::Relaxed);
    assert!(commits < 800, "expected grouped commits, got {commits} for 800 writes");
    assert!(stats.largest_batch.load(Ordering::Relaxed) > 1);
    assert_eq!(spool.count().unwrap(), 800);
    writer.shutdown();
}

#[test]
fn shutdown_commits_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 26, true).unwrap();
    let writer = SpoolWriter::start(spool);
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let pending: Vec<_> = (0..50).map(|i| writer.submit(vec![put(&message(&g, i))])).collect();
    writer.shutdown();
    for rx in pending {
        rx.blocking_recv().unwrap().unwrap();
    }
    assert_eq!(spool.count().unwrap(), 50);
}

#[test]
fn corrupt_meta_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 26, true).unwrap();
    let writer = SpoolWriter::start(spool);
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let good = message(&g, 1);
    let bad = g.generate();
    writer
        .commit_blocking(vec![put(&good), SpoolOp::Put { id: bad, meta: b"{not json".to_vec(), data: None }])
        .unwrap();
    let inv = spool.inventory().unwrap();
    assert_eq!(inv.messages, 1);
    assert_eq!(inv.corrupt, vec![bad.to_string()]);
    assert!(matches!(spool.load(&bad), Err(SpoolError::Corrupt { .. })));
    writer.shutdown();
}
