//! The MIME shape shared by feedback reports (RFC 5965) and delivery status notifications
//! (RFC 3464): a `multipart/report` whose `report-type` names a machine-readable part of header
//! fields, usually followed by the original message or its headers (RFC 6522).
//!
//! Reports arrive from anyone, so everything here is bounded: a message over
//! [`MAX_REPORT_SIZE`] is not looked at, and field blocks keep at most [`MAX_FIELDS`] fields of
//! at most [`MAX_FIELD_LEN`] characters each. mail-parser never panics on malformed MIME.

use mail_parser::{MessageParser, MimeHeaders};

/// Larger messages are treated as ordinary mail, never parsed as reports.
pub const MAX_REPORT_SIZE: usize = 4 * 1024 * 1024;
/// Fields kept from one machine-readable part (over all its blocks).
pub const MAX_FIELDS: usize = 500;
/// Octets kept of one field value (cut at a character boundary).
pub const MAX_FIELD_LEN: usize = 1000;
/// Octets kept of the original message a report carries.
pub const MAX_ORIGINAL_LEN: usize = 64 * 1024;

/// The parts of a report that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportParts {
    /// The decoded machine-readable part (`message/feedback-report`, `message/delivery-status`).
    pub report: Vec<u8>,
    /// The returned original message or its headers, if the report carries one.
    pub original: Option<Vec<u8>>,
}

/// The parts of `data` if it is a `multipart/report; report-type=<report_type>` holding a
/// `message/<subtype>` part for one of `subtypes`.
pub fn report_parts(data: &[u8], report_type: &str, subtypes: &[&str]) -> Option<ReportParts> {
    if data.len() > MAX_REPORT_SIZE {
        return None;
    }
    let message = MessageParser::new().parse(data)?;
    let root = message.root_part().content_type()?;
    let is_report = root.ctype().eq_ignore_ascii_case("multipart")
        && root.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        && root.attribute("report-type").is_some_and(|t| t.eq_ignore_ascii_case(report_type));
    if !is_report {
        return None;
    }
    let mut report = None;
    let mut original = None;
    for part in message.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else { continue };
        let (ctype, subtype) =
            (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase());
        match (ctype.as_str(), subtype.as_str()) {
            ("message", s) if report.is_none() && subtypes.contains(&s) => {
                report = Some(part.contents().to_vec());
            }
            ("message", "rfc822" | "global" | "global-headers") | ("text", "rfc822-headers")
                if original.is_none() =>
            {
                let bytes = part.contents();
                original = Some(bytes[..bytes.len().min(MAX_ORIGINAL_LEN)].to_vec());
            }
            _ => {}
        }
    }
    Some(ReportParts { report: report?, original })
}

/// One `Name: value` field, the name as written, the value unfolded and trimmed.
pub type Field = (String, String);

/// The blocks of header fields a machine-readable part consists of (blank-line separated:
/// RFC 3464 has a per-message block, then one per recipient). Lines that are not fields are
/// skipped; values are cut to [`MAX_FIELD_LEN`] octets and control characters are removed.
pub fn field_blocks(text: &[u8]) -> Vec<Vec<Field>> {
    let text = String::from_utf8_lossy(text);
    let mut blocks: Vec<Vec<Field>> = Vec::new();
    let mut current: Vec<Field> = Vec::new();
    let mut total = 0;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                append(value, line.trim());
            }
            continue;
        }
        if total >= MAX_FIELDS {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            continue;
        }
        let mut kept = String::new();
        append(&mut kept, value.trim());
        current.push((name.to_string(), kept));
        total += 1;
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// Append `more` (a value or a continuation line) to `value`, one space between, without control
/// characters and within [`MAX_FIELD_LEN`]; constant time once full, however many lines follow.
fn append(value: &mut String, more: &str) {
    if value.len() >= MAX_FIELD_LEN {
        return;
    }
    if !value.is_empty() && !more.is_empty() {
        value.push(' ');
    }
    for c in more.chars().filter(|c| !c.is_control()) {
        if value.len() + c.len_utf8() > MAX_FIELD_LEN {
            return;
        }
        value.push(c);
    }
}

/// The value of the first field called `name` (case-insensitive).
pub fn field<'a>(block: &'a [Field], name: &str) -> Option<&'a str> {
    block.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// `type; value` fields (`Reporting-MTA: dns; mx.example`): the type (lowercase) and the value.
pub fn typed_value(v: &str) -> (Option<String>, String) {
    match v.split_once(';') {
        Some((t, rest)) => (Some(t.trim().to_ascii_lowercase()), rest.trim().to_string()),
        None => (None, v.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "From: a@b\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhuman\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; x@y\r\nAction: failed\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <m@x>\r\n--b1--\r\n";

    #[test]
    fn the_machine_readable_part_and_the_original_are_found() {
        let parts = report_parts(REPORT.as_bytes(), "delivery-status", &["delivery-status"]).unwrap();
        assert!(String::from_utf8_lossy(&parts.report).starts_with("Reporting-MTA: dns; mx.example"));
        assert!(String::from_utf8_lossy(parts.original.as_deref().unwrap()).contains("Message-ID: <m@x>"));
        assert_eq!(report_parts(REPORT.as_bytes(), "feedback-report", &["feedback-report"]), None);
        assert_eq!(
            report_parts(b"Subject: hi\r\n\r\nplain\r\n", "delivery-status", &["delivery-status"]),
            None
        );
    }

    #[test]
    fn malformed_or_huge_input_is_not_a_report_and_never_panics() {
        for junk in [
            &b""[..],
            b"\r\n\r\n",
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n",
            b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary",
            &[0xff, 0xfe, b':', b'\n', 0x80][..],
        ] {
            let _ = report_parts(junk, "delivery-status", &["delivery-status"]);
        }
        let mut big = REPORT.as_bytes().to_vec();
        big.resize(MAX_REPORT_SIZE + 1, b'x');
        assert_eq!(report_parts(&big, "delivery-status", &["delivery-status"]), None);
    }

    #[test]
    fn field_blocks_unfold_and_stay_bounded() {
        let blocks = field_blocks(b"A: 1\r\n continued\r\nnot a field\r\n\r\n\r\nB : two\x07\r\n");
        assert_eq!(blocks, vec![vec![("A".into(), "1 continued".into())], vec![("B".into(), "two".into())]]);
        let long = format!("X: {}\n", "y".repeat(5000));
        assert_eq!(field_blocks(long.as_bytes())[0][0].1.len(), MAX_FIELD_LEN);
        let many = "F: v\n".repeat(MAX_FIELDS * 2);
        assert_eq!(field_blocks(many.as_bytes())[0].len(), MAX_FIELDS);
        assert_eq!(typed_value("DNS; mx.example"), (Some("dns".into()), "mx.example".into()));
    }
}
