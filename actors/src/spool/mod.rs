//! The spool: one LMDB environment (heed) with databases `meta` (id -> SpoolMeta JSON) and `data`
//! (id -> raw message bytes). Reads happen anywhere through [`Spool`]; every write goes through the
//! single [`SpoolWriter`] so commits can be grouped (LMDB allows one writer at a time anyway).

mod commit;
mod writer;

use std::path::Path;

use bytes::Bytes;
use heed::types::Bytes as Raw;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use crate::model::{Message, MessageId, SpoolMeta};

pub use writer::{SpoolOp, SpoolStats, SpoolWriter};

#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {error}")]
    Open { path: String, error: String },
    #[error("spool: {0}")]
    Lmdb(String),
    #[error("spool record {id} is corrupt: {error}")]
    Corrupt { id: String, error: String },
    #[error("spool writer has stopped (shutting down)")]
    WriterStopped,
    /// The map (`spool.map_size`) has no room for this write; deliveries free it again.
    #[error("spool full: no room left in spool.map_size")]
    Full,
}

impl From<heed::Error> for SpoolError {
    fn from(e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => SpoolError::Full,
            e => SpoolError::Lmdb(e.to_string()),
        }
    }
}

type Db = Database<'static, Raw, Raw>;

/// Read access to the spool. Cheap to copy; shareable across threads.
#[derive(Clone, Copy)]
pub struct Spool {
    env: &'static Env<WithoutTls>,
    meta: Db,
    data: Db,
    /// Derived xfer ids of completed transferred messages -> `expires_unix\nprior_node\nprior_id`,
    /// so a resend after completion is acknowledged, not delivered again (SPEC §4.3 step 4, D5).
    tombstones: Db,
}

/// What start-up found in the spool.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub messages: u64,
    pub corrupt: Vec<String>,
}

impl Spool {
    /// Open (creating if needed) the spool at `path`. The environment lives for the rest of the
    /// process: heed ties databases to it, and the engine never reopens it.
    pub fn open(path: &Path, map_size: u64, fsync: bool) -> Result<Spool, SpoolError> {
        let open_err = |error: String| SpoolError::Open { path: path.display().to_string(), error };
        std::fs::create_dir_all(path).map_err(|e| open_err(e.to_string()))?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        // LMDB wants a whole number of pages; 64 KiB is one for every page size in use.
        let map_size = map_size
            .checked_next_multiple_of(1 << 16)
            .and_then(|size| usize::try_from(size).ok())
            .ok_or_else(|| open_err(format!("map size {map_size} does not fit this platform")))?;
        options.map_size(map_size).max_dbs(4).max_readers(1024);
        #[allow(unsafe_code)]
        // SAFETY: the engine opens each spool directory once per process and never changes its flags
        // afterwards; NO_SYNC is only set when the operator has asked for fsync = false.
        let env = unsafe {
            if !fsync {
                options.flags(EnvFlags::NO_SYNC);
            }
            options.open(path)
        }
        .map_err(|e| open_err(e.to_string()))?;
        let env: &'static Env<WithoutTls> = Box::leak(Box::new(env));
        // A reader left behind by a killed process would pin old pages forever.
        env.clear_stale_readers().map_err(|e| open_err(e.to_string()))?;
        let wtxn = env.write_txn().map_err(|e| open_err(e.to_string()))?;
        let (meta, data, tombstones) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
                let meta: Db = opener.create_database(wtxn, Some("meta"))?;
                let data: Db = opener.create_database(wtxn, Some("data"))?;
                let tombstones: Db = opener.create_database(wtxn, Some("xfer_tombstones"))?;
                Ok(CommitOrAbort::<_, ()>::Commit((meta, data, tombstones)))
            })
            .map_err(|e| open_err(e.to_string()))?
            .unwrap_commit();
        let spool = Spool { env, meta, data, tombstones };
        spool.purge_tombstones(chrono::Utc::now().timestamp()).map_err(|e| open_err(e.to_string()))?;
        Ok(spool)
    }

    /// Drop tombstones whose 7 days have passed.
    fn purge_tombstones(&self, now: i64) -> Result<(), heed::Error> {
        let mut wtxn = self.env.write_txn()?;
        let expired: Vec<Vec<u8>> = self
            .tombstones
            .iter(&wtxn)?
            .filter_map(|e| e.ok())
            .filter(|(_, v)| tombstone_expires(v).is_some_and(|t| t <= now))
            .map(|(k, _)| k.to_vec())
            .collect();
        for k in expired {
            self.tombstones.delete(&mut wtxn, &k)?;
        }
        wtxn.commit()
    }

    /// The `(prior_node, prior_id)` of a completed transferred message with this id, if any.
    pub fn tombstone(&self, id: &MessageId) -> Result<Option<(String, String)>, SpoolError> {
        let rtxn = self.env.read_txn()?;
        let Some(v) = self.tombstones.get(&rtxn, id.as_bytes())? else { return Ok(None) };
        let text = String::from_utf8_lossy(v);
        let mut parts = text.splitn(3, '\n').skip(1);
        Ok(Some((parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string())))
    }

    pub(crate) fn env(&self) -> &'static Env<WithoutTls> {
        self.env
    }

    pub(crate) fn databases(&self) -> (Db, Db, Db) {
        (self.meta, self.data, self.tombstones)
    }

    pub fn load_meta(&self, id: &MessageId) -> Result<Option<SpoolMeta>, SpoolError> {
        let rtxn = self.env.read_txn()?;
        match self.meta.get(&rtxn, id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => SpoolMeta::from_bytes(bytes)
                .map(Some)
                .map_err(|e| SpoolError::Corrupt { id: id.to_string(), error: e.to_string() }),
        }
    }

    pub fn load(&self, id: &MessageId) -> Result<Option<Message>, SpoolError> {
        let rtxn = self.env.read_txn()?;
        let Some(meta) = self.meta.get(&rtxn, id.as_bytes())? else {
            return Ok(None);
        };
        let meta = SpoolMeta::from_bytes(meta)
            .map_err(|e| SpoolError::Corrupt { id: id.to_string(), error: e.to_string() })?;
        let data = self.data.get(&rtxn, id.as_bytes())?.map(Bytes::copy_from_slice).unwrap_or_default();
        Ok(Some(Message::from_spool(*id, meta, data)))
    }

    pub fn count(&self) -> Result<u64, SpoolError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.meta.len(&rtxn)?)
    }

    /// Visit every stored message's meta in key order. `f` returns false to stop early.
    pub fn for_each_meta(
        &self,
        mut f: impl FnMut(MessageId, Result<SpoolMeta, SpoolError>) -> bool,
    ) -> Result<(), SpoolError> {
        self.for_each_meta_raw(|id, bytes| {
            let meta = SpoolMeta::from_bytes(bytes)
                .map_err(|e| SpoolError::Corrupt { id: id.to_string(), error: e.to_string() });
            f(id, meta)
        })
    }

    /// Visit every stored message's raw meta bytes in key order. `f` returns false to stop early.
    pub fn for_each_meta_raw(&self, mut f: impl FnMut(MessageId, &[u8]) -> bool) -> Result<(), SpoolError> {
        let rtxn = self.env.read_txn()?;
        for entry in self.meta.iter(&rtxn)? {
            let (key, value) = entry?;
            let Ok(key) = <[u8; 16]>::try_from(key) else {
                tracing::error!(key = ?key, "spool meta key is not a 16-byte id; skipped");
                continue;
            };
            if !f(MessageId::from_bytes(key), value) {
                break;
            }
        }
        Ok(())
    }

    /// Count what is stored, noting corrupt records (which stay untouched until the queues decide).
    pub fn inventory(&self) -> Result<Inventory, SpoolError> {
        let mut inv = Inventory::default();
        self.for_each_meta(|id, meta| {
            match meta {
                Ok(_) => inv.messages += 1,
                Err(_) => inv.corrupt.push(id.to_string()),
            }
            true
        })?;
        Ok(inv)
    }
}

fn tombstone_expires(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.split('\n').next()?.parse().ok()
}

#[cfg(test)]
mod full_tests;
#[cfg(test)]
mod tests;
