//! Start-up (SPEC §2.9): every spooled message goes back to its queue with `[Enumerated]`,
//! keeping its stored due time and attempts (D1). Runs on its own thread, parses only what
//! scheduling needs, and hands queues their messages in batches with a bounded number in flight,
//! so a million-message spool is scheduled in seconds without a memory spike.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::oneshot;

use super::manager::{InsertEnumerated, Waiting};
use super::services::Services;
use crate::model::message::SchedulingMeta;
use crate::model::{RecordType, Response};
use crate::spool::SpoolOp;

/// Messages parsed before the batches collected so far are sent.
const BATCH: usize = 10_000;

/// Start the load; it logs a summary line when every spooled message has been handed over.
pub fn enumerate(services: &Services) {
    let services = services.clone();
    let spawned = std::thread::Builder::new().name("ferry-spool-load".into()).spawn(move || run(&services));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start spool enumeration; spooled messages wait for the next start");
    }
}

fn run(services: &Services) {
    let started = Instant::now();
    let mut loaded = 0u64;
    let mut batches: HashMap<String, Vec<Waiting>> = HashMap::new();
    let mut pending = 0usize;
    let mut in_flight: Option<oneshot::Receiver<()>> = None;
    let mut unroutable = Vec::new();
    let result = services.spool.for_each_meta_raw(|id, bytes| {
        match SchedulingMeta::from_bytes(bytes) {
            Ok(meta) => match meta.queue_name() {
                Ok(queue) => {
                    loaded += 1;
                    pending += 1;
                    batches.entry(queue).or_default().push(Waiting {
                        id,
                        due: meta.due,
                        schedule: meta.schedule,
                    });
                    if pending >= BATCH {
                        flush(services, &mut batches, &mut in_flight);
                        pending = 0;
                    }
                }
                Err(e) => unroutable.push((id, e.to_string())),
            },
            // Kept in place for an operator to look at; reported at every start.
            Err(e) => tracing::warn!(%id, error = %e, "corrupt spool record skipped"),
        }
        true
    });
    flush(services, &mut batches, &mut in_flight);
    if let Err(e) = result {
        tracing::error!(error = %e, "spool enumeration stopped early; the rest is picked up at next start");
    }
    for (id, error) in unroutable {
        // SPEC §2.9: an uncomputable queue name expires the message.
        if let Ok(Some(msg)) = services.spool.load(&id) {
            let mut r = services.logger.record(RecordType::Expiration, &msg, "");
            r.response = Response::new(551, Some("5.1.3"), format!("Failed to compute queue name: {error}"));
            services.logger.log(&r);
            let _ = services.writer.commit_blocking(vec![SpoolOp::Remove { id }]);
        }
    }
    tracing::info!(
        messages = loaded,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "spooled messages scheduled"
    );
}

/// Send one batch per queue; wait for the previous round so at most two are in flight.
fn flush(
    services: &Services,
    batches: &mut HashMap<String, Vec<Waiting>>,
    in_flight: &mut Option<oneshot::Receiver<()>>,
) {
    let (tx, rx) = oneshot::channel();
    let mut tx = Some(tx);
    let count = batches.len();
    for (i, (queue, entries)) in batches.drain().enumerate() {
        let reply = if i + 1 == count { tx.take() } else { None };
        services.queues.do_send(InsertEnumerated { queue, entries, reply });
    }
    if count == 0 {
        return;
    }
    if let Some(previous) = in_flight.replace(rx) {
        let _ = previous.blocking_recv();
    }
}
