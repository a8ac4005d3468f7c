//! Log hooks (KumoMTA's `kumo.configure_log_hook`): every record of a hooked type becomes a new
//! message, whose body is the record as JSON, offered to the policy's
//! `should_enqueue_log_record(msg, hook_name)`; the ones it keeps are spooled and queued like any
//! message (usually for a custom_lua queue that POSTs them to a webhook).
//!
//! Events must not be lost when the node dies, so an outcome does not become durable before its
//! events do: removing a delivered or bounced message from the spool, and saving a message's new
//! due time after a transient failure, first wait ([`barrier`]) until every record logged so far
//! has been turned into spooled hook messages (or dropped by the policy). With no hook configured
//! the barrier costs an atomic load.
//!
//! Records about hook messages themselves (`reception_protocol = "LogRecord"`) are not hooked
//! again, so a webhook's own deliveries cannot feed back into it.

pub mod processor;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use tokio::sync::{mpsc, watch};

use crate::logging::selection::Selection;
use crate::model::LogRecord;
use crate::model::log_hook::RecordFilter;

pub use crate::model::message::LOG_RECORD_PROTOCOL;

#[derive(Debug)]
pub struct HookSpec {
    pub name: String,
    pub selection: Selection,
    pub filter: RecordFilter,
}

/// A record taken by a hook, numbered in the order records were offered.
#[derive(Debug)]
pub struct Offered {
    pub seq: u64,
    pub hook: Arc<HookSpec>,
    pub record: LogRecord,
}

struct Registry {
    hooks: RwLock<Arc<Vec<Arc<HookSpec>>>>,
    active: AtomicBool,
    /// Records offered so far (the last one's seq).
    offered: AtomicU64,
    /// Every record up to this seq is spooled or dropped.
    done: watch::Sender<u64>,
    tx: mpsc::UnboundedSender<Offered>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Offered>>>,
    /// Serialises numbering and sending, so records reach the processor in seq order.
    send: Mutex<()>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let (tx, rx) = mpsc::unbounded_channel();
    Registry {
        hooks: RwLock::new(Arc::new(Vec::new())),
        active: AtomicBool::new(false),
        offered: AtomicU64::new(0),
        done: watch::Sender::new(0),
        tx,
        rx: Mutex::new(Some(rx)),
        send: Mutex::new(()),
    }
});

/// Add a hook (from the `init` event). A second hook of the same name replaces the first.
pub fn configure(spec: HookSpec) {
    let mut hooks = REGISTRY.hooks.write().unwrap_or_else(|e| e.into_inner());
    let mut next: Vec<Arc<HookSpec>> = hooks.iter().filter(|h| h.name != spec.name).cloned().collect();
    next.push(Arc::new(spec));
    *hooks = Arc::new(next);
    REGISTRY.active.store(true, Ordering::Release);
}

/// The hooks, if any are configured.
pub fn configured() -> Option<Arc<Vec<Arc<HookSpec>>>> {
    if !REGISTRY.active.load(Ordering::Acquire) {
        return None;
    }
    Some(REGISTRY.hooks.read().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Hand a logged record to every hook that takes its type.
pub fn offer(record: &LogRecord) {
    let Some(hooks) = configured() else { return };
    if record.reception_protocol.as_deref() == Some(LOG_RECORD_PROTOCOL) {
        return;
    }
    for (i, hook) in hooks.iter().enumerate() {
        if !hook.filter.takes(record.kind) {
            continue;
        }
        let mut copy = record.clone();
        copy.hook_fields = Vec::new();
        (copy.meta, copy.headers) = record.hook_fields.get(i).cloned().unwrap_or_default();
        let _order = REGISTRY.send.lock().unwrap_or_else(|e| e.into_inner());
        let seq = REGISTRY.offered.fetch_add(1, Ordering::AcqRel) + 1;
        if REGISTRY.tx.send(Offered { seq, hook: hook.clone(), record: copy }).is_err() {
            // No processor any more (shutting down): nothing will wait on this one.
            REGISTRY.done.send_replace(seq);
        }
    }
}

/// Wait until every record offered so far is spooled as a hook message (or dropped by policy).
pub async fn barrier() {
    if !REGISTRY.active.load(Ordering::Acquire) {
        return;
    }
    let target = REGISTRY.offered.load(Ordering::Acquire);
    let mut done = REGISTRY.done.subscribe();
    let _ = done.wait_for(|d| *d >= target).await;
}

/// The processor's end of the channel (taken once).
pub(crate) fn take_receiver() -> Option<mpsc::UnboundedReceiver<Offered>> {
    REGISTRY.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The processor has spooled (or dropped) everything up to `seq`.
pub(crate) fn mark_done(seq: u64) {
    REGISTRY.done.send_if_modified(|d| {
        let advanced = seq > *d;
        *d = (*d).max(seq);
        advanced
    });
}
