//! The body of `POST /api/inject/v1`, in KumoMTA's shape, and the checks that run before anything
//! is rendered: a request that fails them is refused whole (400) and nothing of it is spooled.
//!
//! Every refusal names the JSON field at fault (`recipients[3].email`, `content.headers["X-A"]`),
//! because the caller is usually a program whose author reads the message once.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::model::address;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectV1Request {
    pub envelope_sender: String,
    pub recipients: Vec<Recipient>,
    pub content: Content,
    /// Template variables for every recipient; a recipient's own take precedence.
    #[serde(default)]
    pub substitutions: Map<String, Value>,
    #[serde(default)]
    pub template_dialect: TemplateDialect,
    /// KumoMTA options Ferry does not offer; accepted when false so KumoMTA clients that send
    /// the defaults work, refused when true (see [`check`]).
    #[serde(default)]
    pub deferred_spool: bool,
    #[serde(default)]
    pub deferred_generation: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub substitutions: Map<String, Value>,
    /// Stored on the message as meta `extra` (KumoMTA's per-recipient metadata).
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TemplateDialect {
    #[default]
    Jinja,
    /// No expansion: the content is used as given.
    Static,
}

/// A complete RFC 5322 message, or the parts to build one from.
#[derive(Debug)]
pub enum Content {
    Raw(String),
    Builder(Box<Builder>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub from: Option<Mailbox>,
    #[serde(default)]
    pub reply_to: Option<Mailbox>,
    /// Extra header name -> value (a template).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub text_body: Option<String>,
    #[serde(default)]
    pub html_body: Option<String>,
    #[serde(default)]
    pub amp_html_body: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// UTF-8 text, or base64 when `base64` is true.
    pub data: String,
    pub content_type: String,
    #[serde(default)]
    pub file_name: Option<String>,
    /// Makes the part inline, inside a multipart/related with the bodies that refer to it.
    #[serde(default)]
    pub content_id: Option<String>,
    #[serde(default)]
    pub base64: bool,
}

/// KumoMTA's answer: how many messages were made and which recipients failed, and why.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectV1Response {
    pub success_count: usize,
    pub fail_count: usize,
    pub failed_recipients: Vec<String>,
    pub errors: Vec<String>,
}

/// A refusal of the whole request (HTTP 400), naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest(message.into())
}

/// `content` is either a string or an object; serde's untagged enums would hide which field of
/// the object was wrong, so the object form is read by its own strict deserializer.
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 5322 message as a string, or an object with subject, text_body, …")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Raw(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Raw(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Content, A::Error> {
                Builder::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|b| Content::Builder(Box::new(b)))
            }
        }
        d.deserialize_any(ContentVisitor)
    }
}

/// Parse the body; an error names the JSON path (`recipients[2].emial: unknown field …`).
pub fn parse(body: &[u8]) -> Result<InjectV1Request, BadRequest> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let request: InjectV1Request = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            bad(format!("invalid JSON body: {inner}"))
        } else {
            bad(format!("invalid JSON body at {path}: {inner}"))
        }
    })?;
    de.end().map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    Ok(request)
}

/// A header field name (RFC 5322 §2.2: printable US-ASCII but colon).
pub fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Text that will land in a header must not carry a line break or other control character:
/// that is how a header (or a whole message) is smuggled in.
pub fn check_header_text(field: &str, text: &str) -> Result<(), BadRequest> {
    match text.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => {
            Err(bad(format!("{field}: contains the control character {c:?}; header text must be one line")))
        }
        None => Ok(()),
    }
}

fn check_mailbox(field: &str, m: &Mailbox) -> Result<(), BadRequest> {
    address::check_mailbox(&m.email)
        .map_err(|e| bad(format!("{field}.email {:?}: {}", m.email, e.reason())))?;
    if let Some(name) = &m.name {
        check_header_text(&format!("{field}.name"), name)?;
    }
    Ok(())
}

/// Headers the builder writes itself; a caller's copy would make a second, conflicting one.
const BUILT_HEADERS: [&str; 4] =
    ["content-type", "content-transfer-encoding", "mime-version", "content-disposition"];

/// The whole-request checks (everything but template syntax, which [`super::template`] reports).
pub fn check(request: &InjectV1Request, max_recipients: usize) -> Result<(), BadRequest> {
    if request.deferred_spool || request.deferred_generation {
        let field = if request.deferred_spool { "deferred_spool" } else { "deferred_generation" };
        return Err(bad(format!(
            "{field}: not supported by Ferry; every message is spooled before the reply"
        )));
    }
    address::check_sender(&request.envelope_sender)
        .map_err(|e| bad(format!("envelope_sender {:?}: {}", request.envelope_sender, e.reason())))?;
    if request.recipients.is_empty() {
        return Err(bad("recipients: at least one recipient is needed"));
    }
    if request.recipients.len() > max_recipients {
        return Err(bad(format!(
            "recipients: {} recipients, more than http.max_inject_recipients ({max_recipients})",
            request.recipients.len()
        )));
    }
    for (n, r) in request.recipients.iter().enumerate() {
        address::check_mailbox(&r.email)
            .map_err(|e| bad(format!("recipients[{n}].email {:?}: {}", r.email, e.reason())))?;
        if let Some(name) = &r.name {
            check_header_text(&format!("recipients[{n}].name"), name)?;
        }
    }
    let Content::Builder(b) = &request.content else { return Ok(()) };
    if b.text_body.is_none() && b.html_body.is_none() {
        return Err(bad("content: give text_body or html_body (or both)"));
    }
    if let Some(subject) = &b.subject {
        check_header_text("content.subject", subject)?;
    }
    if let Some(from) = &b.from {
        check_mailbox("content.from", from)?;
    }
    if let Some(reply_to) = &b.reply_to {
        check_mailbox("content.reply_to", reply_to)?;
    }
    for (name, value) in &b.headers {
        if !is_field_name(name) {
            return Err(bad(format!("content.headers[{name:?}]: not a valid header name")));
        }
        if BUILT_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(bad(format!(
                "content.headers[{name:?}]: this header is made from the content; leave it out"
            )));
        }
        check_header_text(&format!("content.headers[{name:?}]"), value)?;
    }
    for (n, a) in b.attachments.iter().enumerate() {
        let field = format!("content.attachments[{n}]");
        let (kind, sub) =
            a.content_type.split(';').next().unwrap_or("").trim().split_once('/').unwrap_or(("", ""));
        if kind.is_empty() || sub.is_empty() {
            return Err(bad(format!("{field}.content_type {:?}: expected type/subtype", a.content_type)));
        }
        check_header_text(&format!("{field}.content_type"), &a.content_type)?;
        for (key, value) in [("file_name", &a.file_name), ("content_id", &a.content_id)] {
            if let Some(v) = value {
                check_header_text(&format!("{field}.{key}"), v)?;
                if key == "content_id" && v.contains(['<', '>']) {
                    return Err(bad(format!("{field}.content_id: give the id without < >")));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<InjectV1Request, BadRequest> {
        let r = parse(json.as_bytes())?;
        check(&r, 100)?;
        Ok(r)
    }

    const RAW: &str = r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],"content":"Subject: hi\n\nhello"}"#;

    #[test]
    fn kumomta_examples_parse_in_both_content_forms() {
        let r = request(RAW).unwrap();
        assert!(matches!(r.content, Content::Raw(ref s) if s.starts_with("Subject: hi")));
        assert_eq!(r.template_dialect, TemplateDialect::Jinja);
        let r = request(
            r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","name":"A","substitutions":{"n":1}}],
               "content":{"subject":"hi {{ name }}","from":{"email":"f@example.com","name":"F"},"text_body":"t",
               "headers":{"X-Campaign":"c"},"attachments":[{"data":"aGk=","base64":true,"content_type":"text/plain","file_name":"a.txt"}]},
               "substitutions":{"g":"x"},"template_dialect":"Static","deferred_spool":false}"#,
        )
        .unwrap();
        let Content::Builder(b) = r.content else { panic!("builder") };
        assert_eq!(b.subject.as_deref(), Some("hi {{ name }}"));
        assert_eq!(b.attachments.len(), 1);
        assert_eq!(r.template_dialect, TemplateDialect::Static);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let e = request(&RAW.replace("\"email\"", "\"emial\"")).unwrap_err();
        assert!(e.0.contains("recipients[0]") && e.0.contains("emial"), "{e}");
        let e = request(&RAW.replace(
            "\"content\":\"Subject: hi\\n\\nhello\"",
            "\"content\":{\"text_body\":\"x\",\"colour\":1}",
        ))
        .unwrap_err();
        assert!(e.0.contains("content") && e.0.contains("colour"), "{e}");
        let e = request(&RAW.replace("{\"envelope", "{\"tracking\":1,\"envelope")).unwrap_err();
        assert!(e.0.contains("tracking"), "{e}");
        let e = request("{\"envelope_sender\": ").unwrap_err();
        assert!(e.0.starts_with("invalid JSON body"), "{e}");
    }

    #[test]
    fn addresses_are_checked_and_the_bad_one_named() {
        let e = request(&RAW.replace("a@example.com", "not-an-address")).unwrap_err();
        assert!(e.0.contains("recipients[0].email") && e.0.contains("not-an-address"), "{e}");
        let e = request(&RAW.replace("s@example.com", "s@exa mple.com")).unwrap_err();
        assert!(e.0.contains("envelope_sender"), "{e}");
        let e = request(&RAW.replace("a@example.com", "a@example.com\\r\\nBcc: x@evil.example")).unwrap_err();
        assert!(e.0.contains("recipients[0].email"), "{e}");
        // The null sender is allowed, as over SMTP.
        request(&RAW.replace("s@example.com", "")).unwrap();
    }

    #[test]
    fn line_breaks_in_header_text_are_refused() {
        let base = r#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com"}],"content":{"text_body":"t",FIELD}}"#;
        for (field, named) in [
            (r#""subject":"hi\r\nBcc: x@evil.example""#, "content.subject"),
            (r#""from":{"email":"f@example.com","name":"F\nBcc: x"}"#, "content.from.name"),
            (r#""headers":{"X-A":"1\r\nX-B: 2"}"#, "content.headers[\"X-A\"]"),
            (r#""headers":{"X A":"1"}"#, "content.headers[\"X A\"]"),
            (r#""headers":{"Content-Type":"text/evil"}"#, "content.headers[\"Content-Type\"]"),
        ] {
            let e = request(&base.replace("FIELD", field)).unwrap_err();
            assert!(e.0.contains(named), "{field}: {e}");
        }
        let e = request(
            &RAW.replace("\"email\":\"a@example.com\"", "\"email\":\"a@example.com\",\"name\":\"A\\nB\""),
        )
        .unwrap_err();
        assert!(e.0.contains("recipients[0].name"), "{e}");
    }

    #[test]
    fn limits_and_unsupported_options() {
        let many: Vec<String> = (0..101).map(|n| format!("{{\"email\":\"r{n}@example.com\"}}")).collect();
        let body = RAW.replace("[{\"email\":\"a@example.com\"}]", &format!("[{}]", many.join(",")));
        let e = request(&body).unwrap_err();
        assert!(e.0.contains("http.max_inject_recipients"), "{e}");
        let e = request(&RAW.replace("\"recipients\":[{\"email\":\"a@example.com\"}]", "\"recipients\":[]"))
            .unwrap_err();
        assert!(e.0.starts_with("recipients:"), "{e}");
        let e = request(&RAW.replace("{\"envelope", "{\"deferred_generation\":true,\"envelope")).unwrap_err();
        assert!(e.0.contains("deferred_generation"), "{e}");
        let e = request(&RAW.replace("\"Subject: hi\\n\\nhello\"", "{\"subject\":\"no body\"}")).unwrap_err();
        assert!(e.0.contains("text_body"), "{e}");
        let e = request(&RAW.replace("{\"envelope", "{\"template_dialect\":\"Handlebars\",\"envelope"))
            .unwrap_err();
        assert!(e.0.contains("template_dialect"), "{e}");
    }
}
