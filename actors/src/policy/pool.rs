//! The LuaPolicy actor: a pool of policy threads sharing one mailbox.

use std::collections::HashSet;
use std::sync::Arc;

use crossbeam_channel::Sender;
use ferry_config::PolicySource;
use tokio::sync::oneshot;

use super::error::PolicyError;
use super::state::PolicyState;

type Job = Box<dyn FnOnce(&PolicyState) + Send>;

/// Handle to the policy actor. Cheap to clone.
#[derive(Clone)]
pub struct PolicyPool {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Job>,
    events: HashSet<String>,
    size: usize,
}

impl PolicyPool {
    /// Start `size` states (0 = one per core), each loading the policy. Fails with the first
    /// load error, which names the file and line.
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
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for n in 0..size {
            let rx = rx.clone();
            let ready = ready_tx.clone();
            let source = source.clone();
            std::thread::Builder::new()
                .name(format!("ferry-policy-{n}"))
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
        drop(ready_tx);
        let mut events = HashSet::new();
        for _ in 0..size {
            match ready_rx.recv() {
                Ok(Ok(names)) => events.extend(names),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(PolicyError::Load("policy thread died while loading".into())),
            }
        }
        Ok(PolicyPool { inner: Arc::new(Inner { tx, events, size }) })
    }

    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Does the policy handle `event`? Lets callers skip a round trip for events nobody handles.
    pub fn has_handler(&self, event: &str) -> bool {
        self.inner.events.contains(event)
    }

    /// Run `f` on a policy thread and await its result.
    pub async fn call<R: Send + 'static>(
        &self,
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
        self.inner.tx.send(job).map_err(|_| PolicyError::Stopped)?;
        rx.await.map_err(|_| PolicyError::Stopped)
    }
}
