//! Delivery status notifications (RFC 3464): an out-of-band bounce, parsed into what an `OOB`
//! record says: per recipient, the action, the status code and the remote server's diagnostic.

use super::record::{EnhancedCode, Response};
use super::report_mime::{self, field, typed_value};
use super::report_origin::Origin;

/// Recipients kept from one report (a DSN for a huge batch is still one bounded record set).
pub const MAX_RECIPIENTS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// `Reporting-MTA`'s name.
    pub reporting_mta: Option<String>,
    pub recipients: Vec<RecipientStatus>,
    /// The original message, as far as the returned headers tell.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// `Original-Recipient` when given, else `Final-Recipient`: the address the sender used.
    pub recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded` (lowercase).
    pub action: String,
    pub status: Option<EnhancedCode>,
    /// The `smtp` diagnostic: the remote server's reply, multi-line replies joined.
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
}

impl RecipientStatus {
    pub fn failed(&self) -> bool {
        self.action == "failed"
    }

    /// The response an `OOB` record logs: the code from the SMTP diagnostic (else 550 for a
    /// permanent status, 450 for a transient one), the enhanced code from `Status`, and the
    /// diagnostic text without the codes it repeats.
    pub fn response(&self) -> Response {
        let fallback = match self.status.map(|s| s.class) {
            Some(4) => 450,
            _ => 550,
        };
        let (code, text) = match self.diagnostic.as_deref().map(split_reply) {
            Some((Some(code), text)) => (code, text),
            Some((None, text)) => (fallback, text),
            None => (fallback, String::new()),
        };
        let mut text = text.as_str();
        if let Some(status) = self.status {
            text = text.strip_prefix(&status.to_string()).map(str::trim_start).unwrap_or(text);
        }
        Response { code, enhanced_code: self.status, content: text.to_string(), command: None }
    }
}

/// `550-5.1.1 first line 550-5.1.1 second 550 5.1.1 last` (a multi-line reply, unfolded by the
/// DSN) -> (550, `5.1.1 first line second last`).
fn split_reply(diag: &str) -> (Option<u16>, String) {
    let code = diag
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (200..600).contains(c) && matches!(diag.as_bytes().get(3), None | Some(b' ' | b'-')));
    let Some(code) = code else { return (None, diag.trim().to_string()) };
    let prefix = &diag[..3];
    let dash = format!("{prefix}-");
    let mut words = Vec::new();
    let mut tokens = diag[3..].trim_start_matches('-').split_whitespace().peekable();
    while let Some(word) = tokens.next() {
        // The line prefixes of continuation lines (`550-5.1.1`, `550 5.1.1`) carry nothing new.
        if word.starts_with(&dash) {
            continue;
        }
        if word == prefix && tokens.peek().is_some_and(|next| EnhancedCode::parse(next).is_some()) {
            tokens.next();
            continue;
        }
        words.push(word);
    }
    (Some(code), words.join(" "))
}

/// `data` as a DSN, if it is one: a `multipart/report; report-type=delivery-status` with a
/// `message/delivery-status` (or `global-delivery-status`, RFC 6533) part naming at least one
/// recipient.
pub fn parse(data: &[u8]) -> Option<DeliveryReport> {
    let parts =
        report_mime::report_parts(data, "delivery-status", &["delivery-status", "global-delivery-status"])?;
    let mut blocks = report_mime::field_blocks(&parts.report).into_iter();
    let per_message = blocks.next()?;
    let reporting_mta = field(&per_message, "Reporting-MTA").map(|v| typed_value(v).1);
    let recipients: Vec<RecipientStatus> =
        blocks.filter_map(|b| recipient(&b)).take(MAX_RECIPIENTS).collect();
    if recipients.is_empty() {
        return None;
    }
    let origin = parts.original.as_deref().map(Origin::of).unwrap_or_default();
    Some(DeliveryReport { reporting_mta, recipients, origin })
}

fn recipient(block: &[report_mime::Field]) -> Option<RecipientStatus> {
    let address = |name| field(block, name).map(|v| typed_value(v).1).filter(|a| !a.is_empty());
    let recipient = address("Original-Recipient").or_else(|| address("Final-Recipient"))?;
    let recipient = recipient.trim_start_matches('<').trim_end_matches('>').to_string();
    let action = field(block, "Action")?.split_whitespace().next()?.to_ascii_lowercase();
    // `Status: 5.1.1 (comment)`.
    let status =
        field(block, "Status").and_then(|s| s.split_whitespace().next()).and_then(EnhancedCode::parse);
    // `smtp; 550 ...`; other types (`X-Postfix; ...`) are still the best explanation there is.
    let diagnostic = field(block, "Diagnostic-Code").map(|v| typed_value(v).1);
    let remote_mta = field(block, "Remote-MTA").map(|v| typed_value(v).1);
    Some(RecipientStatus { recipient, action, status, diagnostic, remote_mta })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn only(report: &DeliveryReport) -> &RecipientStatus {
        assert_eq!(report.recipients.len(), 1, "{report:?}");
        &report.recipients[0]
    }

    #[test]
    fn a_postfix_bounce() {
        let r = parse(&fixture("dsn-postfix.eml")).unwrap();
        assert_eq!(r.reporting_mta.as_deref(), Some("mail.sender.example"));
        let rcpt = only(&r);
        assert_eq!((rcpt.recipient.as_str(), rcpt.failed()), ("nobody@receiver.example", true));
        assert_eq!(rcpt.remote_mta.as_deref(), Some("mx.receiver.example"));
        assert_eq!(
            rcpt.response().to_single_line(),
            "550 5.1.1 <nobody@receiver.example>: Recipient address rejected: User unknown in virtual mailbox table"
        );
        assert_eq!(
            r.origin.ferry_id.map(|i| i.to_string()).as_deref(),
            Some("0d2d1ee0b8a611f0a8f40242ac120002")
        );
        assert_eq!(r.origin.message_id.as_deref(), Some("20261201.1@sender.example"));
    }

    #[test]
    fn an_exchange_bounce_prefers_the_original_recipient() {
        let r = parse(&fixture("dsn-exchange.eml")).unwrap();
        let rcpt = only(&r);
        assert_eq!(rcpt.recipient, "Jane.Doe@contoso.example");
        let resp = rcpt.response();
        assert_eq!((resp.code, resp.enhanced_code.map(|e| e.to_string())), (550, Some("5.1.10".into())));
        assert!(resp.content.starts_with("RESOLVER.ADR.RecipientNotFound;"), "{}", resp.content);
        assert_eq!(r.origin.ferry_id, None, "Exchange returned no Ferry trace header");
        assert_eq!(r.origin.message_id.as_deref(), Some("abc123@sender.example"));
    }

    #[test]
    fn a_gmail_bounce_joins_its_multi_line_reply() {
        let r = parse(&fixture("dsn-gmail.eml")).unwrap();
        let rcpt = only(&r);
        assert_eq!(rcpt.recipient, "no.such.user@gmail.com");
        assert_eq!(
            rcpt.response().to_single_line(),
            "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-b6c1a1d1a1asi123 - gsmtp"
        );
        assert_eq!(
            r.origin.ferry_id.map(|i| i.to_string()).as_deref(),
            Some("1d98076abbbc11ed940250ebf67f93bd")
        );
    }

    #[test]
    fn delays_and_missing_diagnostics_still_parse() {
        let rcpt = RecipientStatus {
            recipient: "a@b".into(),
            action: "delayed".into(),
            status: EnhancedCode::parse("4.4.7"),
            diagnostic: None,
            remote_mta: None,
        };
        assert!(!rcpt.failed());
        assert_eq!(rcpt.response().to_single_line(), "450 4.4.7 ");
        assert_eq!(split_reply("no code here"), (None, "no code here".into()));
        assert_eq!(split_reply("421 busy"), (Some(421), "busy".into()));
    }

    #[test]
    fn ordinary_mail_and_reports_without_recipients_are_not_bounces() {
        assert_eq!(parse(b"Subject: hi\r\n\r\nhello\r\n"), None);
        assert_eq!(parse(&fixture("arf-abuse.eml")), None, "a feedback report is not a DSN");
        let empty = "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n--b--\r\n";
        assert_eq!(parse(empty.as_bytes()), None);
    }
}
