//! Builds log records (SPEC §6) from messages and hands them, serialised, to the segment writer.

use std::sync::Arc;

use chrono::SecondsFormat;
use serde_json::{Map, Value};

use super::segment_writer::LogWriterHandle;
use super::selection::Selection;
use crate::model::bounce_classifier::UNCATEGORIZED;
use crate::model::record::{PeerAddress, Recipients};
use crate::model::{LogRecord, Message, RecordType, Response, event_time};

/// Cheap to clone; shared by every actor that logs.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

struct Inner {
    writer: LogWriterHandle,
    nodeid: String,
    selection: Selection,
}

impl Logger {
    pub fn new(writer: LogWriterHandle, nodeid: String, meta: &[String], headers: &[String]) -> Self {
        Self { inner: Arc::new(Inner { writer, nodeid, selection: Selection::new(meta, headers) }) }
    }

    pub fn writer(&self) -> &LogWriterHandle {
        &self.inner.writer
    }

    /// A record about `msg` with every field at its usual value; callers adjust what differs.
    pub fn record(&self, kind: RecordType, msg: &Message, queue: &str) -> LogRecord {
        let mut r =
            self.blank(kind, msg.id.to_string(), &msg.sender, Recipients::from(msg.recipients.as_slice()));
        let created = msg.created();
        r.queue = queue.to_string();
        r.size = msg.data.len() as u64;
        r.created = created.timestamp();
        r.created_time = created.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        r.num_attempts = msg.num_attempts;
        r.meta = self.inner.selection.meta(&msg.meta);
        r.headers = self.inner.selection.headers(&msg.data);
        r.reception_protocol = msg.meta.get("reception_protocol").and_then(Value::as_str).map(str::to_string);
        if let Some(hooks) = crate::log_hooks::configured() {
            r.hook_fields =
                hooks.iter().map(|h| (h.selection.meta(&msg.meta), h.selection.headers(&msg.data))).collect();
        }
        r
    }

    /// A `Rejection` record: the SMTP listener refused something before a message existed.
    pub fn rejection(
        &self,
        sender: &str,
        recipient: &str,
        response: Response,
        peer: PeerAddress,
    ) -> LogRecord {
        let mut r =
            self.blank(RecordType::Rejection, String::new(), sender, Recipients::One(recipient.to_string()));
        r.response = response;
        r.peer_address = Some(peer);
        r.reception_protocol = Some("ESMTP".into());
        r
    }

    fn blank(&self, kind: RecordType, id: String, sender: &str, recipient: Recipients) -> LogRecord {
        let now = event_time::next();
        LogRecord {
            kind,
            id,
            sender: sender.to_string(),
            recipient,
            queue: String::new(),
            site: String::new(),
            size: 0,
            response: Response::new(250, None, ""),
            peer_address: None,
            timestamp: now.timestamp(),
            event_time: now.to_rfc3339_opts(SecondsFormat::Nanos, true),
            created: now.timestamp(),
            created_time: now.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            num_attempts: 0,
            bounce_classification: UNCATEGORIZED.into(),
            egress_pool: None,
            egress_source: None,
            source_address: None,
            feedback_report: None,
            meta: Map::new(),
            headers: Map::new(),
            delivery_protocol: None,
            reception_protocol: None,
            nodeid: self.inner.nodeid.clone(),
            tls_cipher: None,
            tls_protocol_version: None,
            tls_peer_subject_name: None,
            provider_name: None,
            hook_fields: Vec::new(),
            session_id: None,
            original_id: None,
            original_message_id: None,
        }
    }

    /// An `AdminRebind` record: "Rebound from <from> to <to>: <reason>" (D7: the operator's reason).
    pub fn rebind(&self, msg: &Message, from: &str, to: &str, reason: &str) {
        let mut r = self.record(RecordType::AdminRebind, msg, to);
        r.response = crate::model::Response::new(250, None, format!("Rebound from {from} to {to}: {reason}"));
        self.log(&r);
    }

    pub fn log(&self, record: &LogRecord) {
        // Failures say why (a category), unless the code that made the record already did.
        if matches!(record.kind, RecordType::Bounce | RecordType::TransientFailure)
            && record.bounce_classification == UNCATEGORIZED
        {
            let mut classified = record.clone();
            classified.bounce_classification = super::classify::classify(&record.response).to_string();
            return self.write(&classified);
        }
        self.write(record)
    }

    fn write(&self, record: &LogRecord) {
        let m = crate::metrics::metrics();
        m.record_logged(record.kind);
        match serde_json::to_string(record) {
            Ok(line) => {
                m.record_line(&line);
                self.inner.writer.write_line(line)
            }
            Err(e) => tracing::error!(id = %record.id, error = %e, "cannot serialise log record"),
        }
        crate::log_hooks::offer(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{Compression, SegmentConfig, list_segments, read_segment_lines};
    use crate::model::MessageIdGenerator;
    use bytes::Bytes;
    use serde_json::json;

    #[test]
    fn records_carry_filtered_meta_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LogWriterHandle::start(SegmentConfig {
            dir: dir.path().to_path_buf(),
            max_segment_duration: std::time::Duration::from_secs(60),
            max_file_size: 1 << 30,
            compression: Compression::Zstd { level: 0 },
        })
        .unwrap();
        let logger = Logger::new(
            writer.clone(),
            "node-1".into(),
            &["xfer*".into(), "tenant".into()],
            &["X-*".into(), "subject".into()],
        );
        let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        let mut msg = Message::new(
            g.generate(),
            "s@example.com".into(),
            vec!["r@example.com".into()],
            Bytes::from_static(b"Subject: Hi\r\nX-A: 1\r\nx-a: 2\r\nY-B: no\r\n\r\nX-Body: no\r\n"),
        );
        msg.set_meta("xfer_from", json!("1.2.3.4"));
        msg.set_meta("tenant", json!("t"));
        msg.set_meta("campaign", json!("c"));
        msg.set_meta("reception_protocol", json!("ESMTP"));
        let r = logger.record(RecordType::Reception, &msg, "t@example.com");
        logger.log(&r);
        writer.shutdown();
        let lines = read_segment_lines(&list_segments(dir.path()).unwrap()[0]).unwrap();
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["type"], "Reception");
        assert_eq!(v["id"], msg.id.to_string());
        assert_eq!(v["recipient"], "r@example.com");
        assert_eq!(v["queue"], "t@example.com");
        assert_eq!(v["meta"], json!({"xfer_from":"1.2.3.4","tenant":"t"}));
        assert_eq!(v["headers"], json!({"Subject":"Hi","X-A":["1","2"]}));
        assert_eq!(v["reception_protocol"], "ESMTP");
        assert_eq!(v["nodeid"], "node-1");
        assert_eq!(v["bounce_classification"], "Uncategorized");
        assert_eq!(v["response"], json!({"code":250,"enhanced_code":null,"content":"","command":null}));
        assert!(v.get("tls_cipher").is_none(), "empty optional fields are omitted");
        assert_eq!(v["created"], msg.created().timestamp());
        assert!(v["event_time"].as_str().unwrap().ends_with('Z'));
    }
}
