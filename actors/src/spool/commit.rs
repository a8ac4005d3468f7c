//! Applying one batch of the SpoolWriter (issue #12).
//!
//! Normally the whole batch is one transaction and one fsync. New messages are first measured
//! against the room the map has left ([`Room`]); those that would eat into the reserve are refused
//! with [`SpoolError::Full`] before LMDB sees them. If the transaction still fails, its requests
//! are tried apart: the removals together (then one by one), then every other request alone, so a
//! write that does not fit cannot fail the removal of a delivered message. A removal that finds no
//! room is handed back to the writer, which retries it until it lands.

use heed::{RoTxn, RwTxn, WithoutTls};
use tokio::sync::oneshot;

use super::{Spool, SpoolError, SpoolOp};
use crate::model::spool_room::{Room, value_pages};

pub(super) type Reply = oneshot::Sender<Result<(), SpoolError>>;

/// One caller's ops, applied atomically, and where to send the answer.
pub(super) struct Request {
    pub ops: Vec<SpoolOp>,
    pub reply: Reply,
}

impl Request {
    /// Only removals (with or without tombstone): never refused for room, retried until they land.
    fn is_removal(&self) -> bool {
        !self.ops.iter().any(|op| matches!(op, SpoolOp::Put { .. }))
    }

    /// Stores a message body: a new message (or a rewritten one), held to the room left.
    /// Meta updates and removals are small and may use the reserve.
    fn stores_body(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, SpoolOp::Put { data: Some(_), .. }))
    }

    /// Pages the request's message bodies may add.
    fn new_pages(&self, page_size: u64) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                SpoolOp::Put { meta, data: Some(data), .. } => {
                    value_pages(meta.len() as u64, page_size) + value_pages(data.len() as u64, page_size)
                }
                _ => 0,
            })
            .sum()
    }

    fn answer(self, result: Result<(), SpoolError>) {
        // A caller that stopped waiting has nothing left to hear.
        let _ = self.reply.send(result);
    }
}

/// What became of a batch. Every request is either answered already or in `stalled`.
#[derive(Default)]
pub(super) struct Outcome {
    /// Removals that found no room; the writer retries them and answers only once they land.
    pub stalled: Vec<Request>,
    /// New messages refused to keep the reserve, or because the map was full.
    pub refused: usize,
    /// The first error other than a full map, for the writer's log.
    pub error: Option<SpoolError>,
}

impl Outcome {
    /// Answer `request`, or keep it for a retry when it is a removal that found no room.
    fn settle(&mut self, request: Request, result: Result<(), heed::Error>) {
        self.settle_as(request, result.map_err(SpoolError::from));
    }

    fn settle_as(&mut self, request: Request, result: Result<(), SpoolError>) {
        match &result {
            Err(SpoolError::Full) if request.is_removal() => return self.stalled.push(request),
            Err(SpoolError::Full) => self.refused += 1,
            Err(e) => {
                self.error.get_or_insert_with(|| e.clone());
            }
            Ok(()) => {}
        }
        request.answer(result);
    }
}

/// Apply `batch`; answer every request that is settled. The normal case is one transaction.
pub(super) fn commit(spool: &Spool, batch: Vec<Request>) -> Outcome {
    let mut out = Outcome::default();
    let (admitted, result) = match spool.env().write_txn() {
        Err(e) => (batch, Err(e)),
        Ok(mut wtxn) => {
            let admitted = admit(spool, &wtxn, batch, &mut out);
            let applied = admitted.iter().try_for_each(|r| apply(spool, &mut wtxn, &r.ops));
            (admitted, applied.and_then(|()| wtxn.commit()))
        }
    };
    match result {
        Ok(()) => admitted.into_iter().for_each(|r| r.answer(Ok(()))),
        Err(e) if admitted.len() == 1 => {
            let e = SpoolError::from(e);
            admitted.into_iter().for_each(|r| out.settle_as(r, Err(e.clone())));
        }
        Err(_) => apart(spool, admitted, &mut out),
    }
    out
}

/// Refuse the new messages the room cannot take without reaching into the reserve. Costs three
/// O(1) database stats, and only for a batch that stores message bodies.
fn admit(spool: &Spool, txn: &RoTxn<WithoutTls>, batch: Vec<Request>, out: &mut Outcome) -> Vec<Request> {
    if !batch.iter().any(Request::stores_body) {
        return batch;
    }
    let Ok((mut room, page_size)) = room(spool, txn) else {
        return batch; // LMDB itself will say whether it fits.
    };
    let mut admitted = Vec::with_capacity(batch.len());
    for request in batch {
        let pages = request.new_pages(page_size);
        if !request.stores_body() || room.take(pages) {
            admitted.push(request);
        } else {
            out.refused += 1;
            request.answer(Err(SpoolError::Full));
        }
    }
    admitted
}

/// The room left in the map as the transaction sees it, and the page size.
fn room(spool: &Spool, txn: &RoTxn<WithoutTls>) -> Result<(Room, u64), heed::Error> {
    let (meta, data, tombstones) = spool.databases();
    let mut used = 0u64;
    let mut page_size = 4096u64;
    for db in [meta, data, tombstones] {
        let stat = db.stat(txn)?;
        page_size = u64::from(stat.page_size).max(1);
        used += (stat.branch_pages + stat.leaf_pages + stat.overflow_pages) as u64;
    }
    // The main database (our three names) and the two meta pages.
    let main = spool.env().unnamed_database_stat();
    used += (main.branch_pages + main.leaf_pages + main.overflow_pages) as u64 + 2;
    let map_pages = spool.env().info().map_size as u64 / page_size;
    Ok((Room::new(map_pages, used), page_size))
}

/// The batch's transaction failed: removals together (then one by one), then each other request
/// alone, in order.
fn apart(spool: &Spool, batch: Vec<Request>, out: &mut Outcome) {
    let (removals, others): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(Request::is_removal);
    if !removals.is_empty() {
        match alone(spool, &removals) {
            Ok(()) => removals.into_iter().for_each(|r| r.answer(Ok(()))),
            Err(e) if removals.len() == 1 => {
                let e = SpoolError::from(e);
                removals.into_iter().for_each(|r| out.settle_as(r, Err(e.clone())));
            }
            Err(_) => {
                for r in removals {
                    let result = alone(spool, std::slice::from_ref(&r));
                    out.settle(r, result);
                }
            }
        }
    }
    for r in others {
        let result = alone(spool, std::slice::from_ref(&r));
        out.settle(r, result);
    }
}

/// `requests` in a transaction of their own.
fn alone(spool: &Spool, requests: &[Request]) -> Result<(), heed::Error> {
    let mut wtxn = spool.env().write_txn()?;
    for r in requests {
        apply(spool, &mut wtxn, &r.ops)?;
    }
    wtxn.commit()
}

fn apply(spool: &Spool, wtxn: &mut RwTxn, ops: &[SpoolOp]) -> Result<(), heed::Error> {
    let (meta_db, data_db, tombstones) = spool.databases();
    for op in ops {
        match op {
            SpoolOp::Put { id, meta, data } => {
                meta_db.put(wtxn, id.as_bytes(), meta)?;
                if let Some(data) = data {
                    data_db.put(wtxn, id.as_bytes(), data)?;
                }
            }
            SpoolOp::Remove { id } => {
                meta_db.delete(wtxn, id.as_bytes())?;
                data_db.delete(wtxn, id.as_bytes())?;
            }
            SpoolOp::RemoveWithTombstone { id, prior_node, prior_id, expires } => {
                meta_db.delete(wtxn, id.as_bytes())?;
                data_db.delete(wtxn, id.as_bytes())?;
                let value = format!("{expires}\n{prior_node}\n{prior_id}");
                tombstones.put(wtxn, id.as_bytes(), value.as_bytes())?;
            }
        }
    }
    Ok(())
}
