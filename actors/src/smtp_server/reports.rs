//! Reports sent to a report mailbox (`get_listener_domain` with `log_arf` / `log_oob`): after
//! DATA the message is checked for the kinds its domain logs, and becomes a `Feedback` record or
//! `OOB` records, then is relayed or consumed as the domain says (KumoMTA's `LogThenRelay` /
//! `LogThenDrop`). Ordinary mail to such a domain is refused unless the client may relay.

use super::reception::{Connection, Dispositions, Part, Reception, Reply};
use crate::model::arf::FeedbackReport;
use crate::model::dsn::DeliveryReport;
use crate::model::inbound_report::{self, InboundReport};
use crate::model::listener_domain::AfterData;
use crate::model::record::{PeerAddress, Recipients};
use crate::model::report_origin::Origin;
use crate::model::{LogRecord, RecordType};

/// Decide one part: find the report it is (off the async threads: MIME parsing of up to a few
/// MiB), and whether it is queued, consumed, or refused (`550 5.7.1`).
pub(super) async fn route_report(part: &mut Part, dispositions: &Dispositions) -> Result<(), Reply> {
    let domain = part
        .msg
        .recipients
        .first()
        .and_then(|r| r.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    // Without an answer for the domain (no get_listener_domain handler), RCPT already decided.
    let Some(disposition) = dispositions.get(&domain).copied() else { return Ok(()) };
    let wanted = disposition.wanted();
    let report = if wanted.is_empty() {
        None
    } else {
        let data = part.msg.data.clone();
        tokio::task::spawn_blocking(move || inbound_report::detect(&wanted, &data)).await.unwrap_or(None)
    };
    match disposition.after_data(report.as_ref().map(InboundReport::kind)) {
        AfterData::Queue => part.keep = true,
        AfterData::Drop => part.keep = false,
        AfterData::RefuseRelaying => return Err(Reply::new(550, "5.7.1", "relaying not permitted")),
    }
    part.report = report;
    Ok(())
}

impl Reception {
    /// The `Feedback` record of a part: the report message's own record, with the parsed report
    /// and the message it complains about.
    pub(super) fn feedback_record(
        &self,
        conn: &Connection,
        part: &Part,
        report: &FeedbackReport,
    ) -> LogRecord {
        let mut record = self.logger.record(RecordType::Feedback, &part.msg, &part.queue);
        record.peer_address = Some(PeerAddress { name: conn.ehlo.clone(), addr: conn.peer.ip().to_string() });
        record.feedback_report = Some(report.report.clone());
        name_original(&mut record, &report.origin);
        record
    }

    /// One `OOB` record per failed recipient of a bounce: the bounced address, the remote
    /// server's response, and (as the bounce is addressed to the original's envelope sender)
    /// that sender.
    pub(super) fn oob_records(
        &self,
        conn: &Connection,
        part: &Part,
        report: &DeliveryReport,
    ) -> Vec<LogRecord> {
        let original_sender = part.msg.recipients.first().cloned().unwrap_or_default();
        report
            .recipients
            .iter()
            .filter(|r| r.failed())
            .map(|rcpt| {
                let mut record = self.logger.record(RecordType::Oob, &part.msg, &part.queue);
                record.sender = original_sender.clone();
                record.recipient = Recipients::One(rcpt.recipient.clone());
                record.response = rcpt.response();
                record.size = 0;
                record.peer_address = Some(PeerAddress {
                    name: report.reporting_mta.clone().unwrap_or_else(|| conn.ehlo.clone()),
                    addr: conn.peer.ip().to_string(),
                });
                name_original(&mut record, &report.origin);
                record
            })
            .collect()
    }
}

fn name_original(record: &mut LogRecord, origin: &Origin) {
    record.original_id = origin.ferry_id.map(|id| id.to_string());
    record.original_message_id = origin.message_id.clone();
}
