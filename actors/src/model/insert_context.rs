//! Why a message is (re)inserted into a queue (SPEC §2.5): an ordered list of reasons.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InsertReason {
    Received,
    Enumerated,
    ScheduledForLater,
    ReadyQueueWasSuspended,
    MessageRateThrottle,
    ThrottledByThrottleInsertReadyQueue,
    ReadyQueueWasFull,
    FailedToInsertIntoReadyQueue,
    MessageGetQueueNameFailed,
    AdminRebind,
    DueTimeWasReached,
    MaxReadyWasReducedByConfigUpdate,
    ReadyQueueWasDelayedDueToLowMemory,
    FailedDueToNullMx,
    MxResolvedToZeroHosts,
    MxWasProhibited,
    MxWasSkipped,
    TooManyConnectionFailures,
    TooManyRecipients,
    ConnectionRateThrottle,
    LoggedTransientFailure,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertContext(pub Vec<InsertReason>);

impl InsertContext {
    pub fn new(reason: InsertReason) -> Self {
        Self(vec![reason])
    }

    /// Append a reason; appending the current last reason again is a no-op.
    pub fn push(&mut self, reason: InsertReason) {
        if self.0.last() != Some(&reason) {
            self.0.push(reason);
        }
    }

    pub fn with(mut self, reason: InsertReason) -> Self {
        self.push(reason);
        self
    }

    pub fn contains(&self, reason: InsertReason) -> bool {
        self.0.contains(&reason)
    }

    pub fn is_exactly(&self, reason: InsertReason) -> bool {
        self.0 == [reason]
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|r| format!("{r:?}")).collect()
    }
}

impl fmt::Display for InsertContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_the_last_reason_again_is_a_no_op() {
        let mut ctx = InsertContext::new(InsertReason::Received);
        ctx.push(InsertReason::Received);
        ctx.push(InsertReason::ScheduledForLater);
        ctx.push(InsertReason::Received);
        assert_eq!(ctx.to_string(), "Received, ScheduledForLater, Received");
        assert_eq!(
            serde_json::to_value(&ctx).unwrap(),
            serde_json::json!(["Received", "ScheduledForLater", "Received"])
        );
    }
}
