//! Is an incoming message a report its recipient domain wants logged? ARF is looked for first,
//! as KumoMTA does; a message is at most one kind of report.

use super::arf::{self, FeedbackReport};
use super::dsn::{self, DeliveryReport};
use super::listener_domain::ReportKind;

#[derive(Debug, Clone, PartialEq)]
pub enum InboundReport {
    Feedback(FeedbackReport),
    Oob(DeliveryReport),
}

impl InboundReport {
    pub fn kind(&self) -> ReportKind {
        match self {
            Self::Feedback(_) => ReportKind::Arf,
            Self::Oob(_) => ReportKind::Oob,
        }
    }
}

/// The first of the `wanted` kinds that `data` is.
pub fn detect(wanted: &[ReportKind], data: &[u8]) -> Option<InboundReport> {
    wanted.iter().find_map(|kind| match kind {
        ReportKind::Arf => arf::parse(data).map(InboundReport::Feedback),
        ReportKind::Oob => dsn::parse(data).map(InboundReport::Oob),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn only_the_wanted_kinds_are_detected() {
        let (arf, dsn) = (fixture("arf-abuse.eml"), fixture("dsn-postfix.eml"));
        let both = [ReportKind::Arf, ReportKind::Oob];
        assert_eq!(detect(&both, &arf).map(|r| r.kind()), Some(ReportKind::Arf));
        assert_eq!(detect(&both, &dsn).map(|r| r.kind()), Some(ReportKind::Oob));
        assert_eq!(detect(&[ReportKind::Oob], &arf), None);
        assert_eq!(detect(&[ReportKind::Arf], &dsn), None);
        assert_eq!(detect(&[], &dsn), None);
    }
}
