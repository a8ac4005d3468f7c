//! The LuaPolicy actor: policy threads in three lanes, each lane with its own mailbox and its own
//! `policy.pool_size` Lua states.
//!
//! Lanes exist because a mailbox is a FIFO: with one shared mailbox, a few runaway
//! `requeue_message` handlers (each holding a state for `policy.handler_timeout`, re-triggered by
//! every transient failure) occupied every state, and every SMTP reception queued behind them.
//! Now a runaway handler can only hold the states of its own lane.

use std::collections::HashSet;
use std::sync::Arc;

use crossbeam_channel::Sender;
use ferry_config::PolicySource;
use tokio::sync::oneshot;

use super::error::PolicyError;
use super::state::PolicyState;

type Job = Box<dyn FnOnce(&PolicyState) + Send>;

/// Which states run a call: pick by who waits for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A client waits on the reply: `smtp_server_message_received`, `xfer_message_received`.
    Reception,
    /// `get_queue_config`, for queue creation and refresh. Not Delivery: reception waits on it
    /// when a message opens a new queue, so it must not sit behind runaway requeue handlers.
    /// Not Reception: a runaway `get_queue_config` (refresh re-runs it for every queue) must not
    /// hold the states that serve `smtp_server_message_received` for queues that already exist.
    /// A runaway one is interrupted after handler_timeout and its failure cached, so it delays
    /// only new queues, by at most handler_timeout each.
    Config,
    /// Nobody outside waits: `requeue_message`, `rebind_message`, custom_lua delivery.
    Delivery,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Reception, Lane::Config, Lane::Delivery];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Reception => "reception",
            Lane::Config => "config",
            Lane::Delivery => "delivery",
        }
    }
}

/// Handle to the policy actor. Cheap to clone.
#[derive(Clone)]
pub struct PolicyPool {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: [Sender<Job>; 3],
    events: HashSet<String>,
    size: usize,
    source: Option<PolicySource>,
    handler_timeout: std::time::Duration,
}

impl PolicyPool {
    /// Start `size` states per lane (0 = one per core), each loading the policy. Fails with the
    /// first load error, which names the file and line.
    pub fn start(source: Option<PolicySource>, size: usize) -> Result<PolicyPool, PolicyError> {
        Self::start_with_timeout(source, size, std::time::Duration::from_secs(5))
    }

    /// Like [`start`](Self::start), with `policy.handler_timeout`.
    pub fn start_with_timeout(
        source: Option<PolicySource>,
        size: usize,
        handler_timeout: std::time::Duration,
    ) -> Result<PolicyPool, PolicyError> {
        let size = if size == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { size };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let lanes = Lane::ALL.map(|_| crossbeam_channel::unbounded::<Job>());
        // custom_lua connections load their own states later: from the text read now, so they run
        // the very policy the pool runs (and read no file per connection).
        let kept_source = match &source {
            Some(PolicySource::File(path)) => match std::fs::read_to_string(path) {
                Ok(text) => Some(PolicySource::Embedded {
                    name: Box::leak(path.display().to_string().into_boxed_str()),
                    text: Box::leak(text.into_boxed_str()),
                }),
                Err(_) => source.clone(), // the states' own load reports the error
            },
            other => other.clone(),
        };
        for (lane, (_, rx)) in Lane::ALL.into_iter().zip(&lanes) {
            for n in 0..size {
                let rx = rx.clone();
                let ready = ready_tx.clone();
                let source = source.clone();
                std::thread::Builder::new()
                    .name(format!("ferry-policy-{}-{n}", lane.name()))
                    .spawn(move || {
                        let state = match PolicyState::load_with_timeout(source.as_ref(), handler_timeout) {
                            Ok(state) => {
                                let _ = ready.send(Ok(state.registered_events()));
                                state
                            }
                            Err(e) => {
                                let _ = ready.send(Err(e));
                                return;
                            }
                        };
                        drop(ready);
                        while let Ok(job) = rx.recv() {
                            job(&state);
                        }
                    })
                    .map_err(|e| PolicyError::Load(format!("cannot start policy thread: {e}")))?;
            }
        }
        drop(ready_tx);
        let mut events = HashSet::new();
        for _ in 0..size * Lane::ALL.len() {
            match ready_rx.recv() {
                Ok(Ok(names)) => events.extend(names),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(PolicyError::Load("policy thread died while loading".into())),
            }
        }
        let lanes = lanes.map(|(tx, _)| tx);
        if events.contains("init") {
            let (tx, rx) = std::sync::mpsc::channel();
            let job: Job = Box::new(move |state| {
                let _ = tx.send(state.run_init());
            });
            lanes[Lane::Config.index()].send(job).map_err(|_| PolicyError::Stopped)?;
            rx.recv().map_err(|_| PolicyError::Load("policy thread died running init".into()))??;
        }
        let inner = Inner { lanes, events, size, source: kept_source, handler_timeout };
        Ok(PolicyPool { inner: Arc::new(inner) })
    }

    /// A state of its own, loaded on the calling thread, for work that must not hold a pool
    /// state while it waits (a custom_lua connection awaiting its webhook).
    pub fn load_state(&self) -> Result<PolicyState, PolicyError> {
        PolicyState::load_with_timeout(self.inner.source.as_ref(), self.inner.handler_timeout)
    }

    /// States per lane.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// States in all lanes.
    pub fn states(&self) -> usize {
        self.inner.size * Lane::ALL.len()
    }

    /// Does the policy handle `event`? Lets callers skip a round trip for events nobody handles.
    pub fn has_handler(&self, event: &str) -> bool {
        self.inner.events.contains(event)
    }

    /// Run `f` on a policy thread of `lane` and await its result.
    pub async fn call<R: Send + 'static>(
        &self,
        lane: Lane,
        f: impl FnOnce(&PolicyState) -> R + Send + 'static,
    ) -> Result<R, PolicyError> {
        let (tx, rx) = oneshot::channel();
        let m = crate::metrics::metrics();
        m.policy_queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let job: Job = Box::new(move |state| {
            m.policy_queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let started = std::time::Instant::now();
            let r = f(state);
            m.policy_handler.observe(started.elapsed());
            let _ = tx.send(r);
        });
        self.inner.lanes[lane.index()].send(job).map_err(|_| PolicyError::Stopped)?;
        rx.await.map_err(|_| PolicyError::Stopped)
    }
}
