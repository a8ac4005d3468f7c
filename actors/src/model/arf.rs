//! Feedback reports (ARF, RFC 5965): a complaint about a message, parsed into KumoMTA's
//! `feedback_report` object. The report part is a block of header fields; mail-parser finds it
//! and parses its dates. (mail-auth's ARF parser sits behind its `report` feature, which would
//! bring zip and quick-xml along, and it keeps one `Original-Rcpt-To` and no unknown fields,
//! both of which the record needs.)

use std::net::IpAddr;

use chrono::{TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::report_mime::{self, field, typed_value};
use super::report_origin::Origin;

/// A parsed report: the record's `feedback_report`, and what it says about the original.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackReport {
    pub report: Value,
    pub origin: Origin,
}

/// Fields with a place of their own in `feedback_report` (RFC 5965 §3.5 and RFC 6591).
const KNOWN: &[&str] = &[
    "feedback-type",
    "user-agent",
    "version",
    "arrival-date",
    "received-date",
    "incidents",
    "original-envelope-id",
    "original-mail-from",
    "original-rcpt-to",
    "reporting-mta",
    "source-ip",
    "authentication-results",
    "reported-domain",
    "reported-uri",
];

/// RFC 5965 §7.3's registry (with RFC 6650's `auth-failure`): any other type is not a report.
const FEEDBACK_TYPES: &[&str] = &["abuse", "auth-failure", "fraud", "not-spam", "other", "virus"];

/// Keys of `extensions` kept (an abusive report cannot grow the record without bound).
const MAX_EXTENSIONS: usize = 50;

/// `data` as a feedback report, if it is one: a `multipart/report; report-type=feedback-report`
/// with a `message/feedback-report` part of a known `Feedback-Type`.
pub fn parse(data: &[u8]) -> Option<FeedbackReport> {
    let parts = report_mime::report_parts(data, "feedback-report", &["feedback-report"])?;
    let fields: Vec<_> = report_mime::field_blocks(&parts.report).into_iter().flatten().collect();
    let feedback_type = field(&fields, "Feedback-Type")?.to_ascii_lowercase();
    if !FEEDBACK_TYPES.contains(&feedback_type.as_str()) {
        return None;
    }
    let all = |name: &str| -> Vec<Value> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| Value::from(v.as_str()))
            .collect()
    };
    let text = |name: &str| field(&fields, name).map(str::to_string);

    let mut extensions: Map<String, Value> = Map::new();
    for (name, value) in &fields {
        let key = name.to_ascii_lowercase();
        if KNOWN.contains(&key.as_str())
            || (extensions.len() >= MAX_EXTENSIONS && !extensions.contains_key(&key))
        {
            continue;
        }
        if let Value::Array(values) = extensions.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            values.push(Value::from(value.as_str()));
        }
    }
    let reporting_mta = text("Reporting-MTA").map(|v| {
        let (mta_type, name) = typed_value(&v);
        json!({ "mta_type": mta_type.unwrap_or_else(|| "dns".into()), "name": name })
    });
    let arrival_date = field(&fields, "Arrival-Date")
        .or_else(|| field(&fields, "Received-Date"))
        .and_then(mail_parser::DateTime::parse_rfc822)
        .and_then(|t| Utc.timestamp_opt(t.to_timestamp(), 0).single())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    // `Source-IP: 192.0.2.1` (some add a comment after the address).
    let source_ip = field(&fields, "Source-IP")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<IpAddr>().ok())
        .map(|ip| ip.to_string());
    let original_message = parts.original.as_deref().map(|o| String::from_utf8_lossy(o).into_owned());
    let origin = parts.original.as_deref().map(Origin::of).unwrap_or_default();

    let report = json!({
        "feedback_type": feedback_type,
        "user_agent": text("User-Agent").unwrap_or_default(),
        "version": text("Version").unwrap_or_default(),
        "arrival_date": arrival_date,
        "incidents": text("Incidents").and_then(|v| v.parse::<u32>().ok()),
        "original_envelope_id": text("Original-Envelope-Id"),
        "original_mail_from": text("Original-Mail-From"),
        "reporting_mta": reporting_mta,
        "source_ip": source_ip,
        "authentication_results": all("Authentication-Results"),
        // sic: KumoMTA's field name.
        "original_rcpto_to": all("Original-Rcpt-To"),
        "reported_domain": all("Reported-Domain"),
        "reported_uri": all("Reported-URI"),
        "extensions": extensions,
        "original_message": original_message,
        "supplemental_trace": origin.ferry_id.map(|id| json!({ "id": id.to_string() })),
    });
    Some(FeedbackReport { report, origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn an_abuse_report_becomes_kumomtas_feedback_report() {
        let parsed = parse(&fixture("arf-abuse.eml")).unwrap();
        let r = &parsed.report;
        assert_eq!(r["feedback_type"], "abuse");
        assert_eq!(r["user_agent"], "SomeGenerator/1.0");
        assert_eq!(r["version"], "1");
        assert_eq!(r["arrival_date"], "2026-12-01T18:00:00Z");
        assert_eq!(r["reporting_mta"], json!({"mta_type": "dns", "name": "mail.example.com"}));
        assert_eq!(r["source_ip"], "192.0.2.1");
        assert_eq!(r["original_mail_from"], "<somesender@example.net>");
        assert_eq!(r["original_rcpto_to"], json!(["<user@example.com>", "<other@example.com>"]));
        assert_eq!(r["reported_domain"], json!(["example.net"]));
        assert_eq!(
            r["reported_uri"],
            json!(["http://example.net/earn_money.html", "mailto:user@example.com"])
        );
        assert_eq!(r["extensions"], json!({"removal-recipient": ["user@example.com"]}));
        assert!(r["original_message"].as_str().unwrap().contains("Subject: Earn money"));
        assert_eq!(r["supplemental_trace"], json!({"id": "0d2d1ee0b8a611f0a8f40242ac120002"}));
        assert_eq!(parsed.origin.message_id.as_deref(), Some("8787KJKJ3K4J3K4J3K4J3.mail@example.net"));
    }

    #[test]
    fn dsns_plain_mail_and_unknown_feedback_types_are_not_feedback() {
        assert_eq!(parse(&fixture("dsn-postfix.eml")), None);
        assert_eq!(parse(b"Subject: spam?\r\n\r\nno\r\n"), None);
        let text = String::from_utf8(fixture("arf-abuse.eml"))
            .unwrap()
            .replace("Feedback-Type: abuse", "Feedback-Type: nonsense");
        assert_eq!(parse(text.as_bytes()), None);
    }
}
