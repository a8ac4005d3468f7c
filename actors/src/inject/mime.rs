//! One recipient's message bytes: built with mail-builder from the structured form, or the
//! rendered raw form completed. Either way the result has CRLF line ends and a Message-ID, a Date
//! and a MIME-Version header.
//!
//! The structured form's body tree: the text, AMP and HTML bodies as multipart/alternative (in
//! that order, least to most preferred); inside a multipart/related when there are inline parts
//! (attachments with a `content_id`); inside a multipart/mixed when there are attachments.

use std::borrow::Cow;

use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};

use super::request::{BadRequest, Builder, Mailbox, Recipient};
use super::template::{Field, Rendered};
use crate::model::{headers, line_endings};

/// An attachment decoded once per request and shared by every recipient's message.
#[derive(Debug)]
pub struct Part {
    content_type: String,
    file_name: Option<String>,
    content_id: Option<String>,
    data: Vec<u8>,
}

/// Decode the request's attachments; bad base64 refuses the request, naming the attachment.
pub fn decode_attachments(b: &Builder) -> Result<Vec<Part>, BadRequest> {
    b.attachments
        .iter()
        .enumerate()
        .map(|(n, a)| {
            let data = if a.base64 {
                // Line-wrapped base64 is common; whitespace is not data.
                let compact: Vec<u8> = a.data.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
                base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| {
                    BadRequest(format!("content.attachments[{n}].data: not valid base64: {e}"))
                })?
            } else {
                a.data.as_bytes().to_vec()
            };
            Ok(Part {
                content_type: a.content_type.trim().to_string(),
                file_name: a.file_name.clone(),
                content_id: a.content_id.clone(),
                data,
            })
        })
        .collect()
}

fn address<'a>(m: Option<&'a str>, email: &'a str) -> Address<'a> {
    Address::new_address(m, email)
}

/// A rendered header value must still be one line: a substitution must not add headers.
fn one_line<'a>(field: &str, text: &'a str) -> Result<&'a str, String> {
    match text.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!("{field}: the rendered value contains the control character {c:?}")),
        None => Ok(text),
    }
}

/// Build the structured form for one recipient. `message_id` is without angle brackets.
pub fn build(
    b: &Builder,
    rendered: &Rendered<'_>,
    parts: &[Part],
    to: &Recipient,
    message_id: &str,
) -> Result<Vec<u8>, String> {
    let mut m = MessageBuilder::new().message_id(MessageId::new(message_id));
    if let Some(Mailbox { email, name }) = &b.from {
        m = m.from(address(name.as_deref(), email));
    }
    // A caller-given To header replaces the generated one (KumoMTA since 2026.03).
    if !rendered.headers().any(|(name, _)| name.eq_ignore_ascii_case("to")) {
        m = m.to(address(to.name.as_deref(), &to.email));
    }
    if let Some(Mailbox { email, name }) = &b.reply_to {
        m = m.reply_to(address(name.as_deref(), email));
    }
    if let Some(subject) = rendered.get(Field::Subject) {
        m = m.subject(Text::new(one_line("content.subject", subject)?));
    }
    for (name, value) in rendered.headers() {
        let value = one_line(&Field::Header(name).name(), value)?;
        // mail-builder adds its own Message-ID/Date/MIME-Version unless it sees these spellings.
        let name = ["Message-ID", "Date", "MIME-Version"]
            .into_iter()
            .find(|c| c.eq_ignore_ascii_case(name))
            .unwrap_or(name);
        m = m.header(name, Text::new(value));
    }

    let bodies: Vec<MimePart> =
        [(Field::Text, "text/plain"), (Field::AmpHtml, "text/x-amp-html"), (Field::Html, "text/html")]
            .into_iter()
            .filter_map(|(f, ct)| {
                rendered.get(f).map(|s| MimePart::new(ct, BodyPart::Text(Cow::Borrowed(s))))
            })
            .collect();
    let mut tree = single_or("multipart/alternative", bodies);
    let inline: Vec<MimePart> = parts
        .iter()
        .filter_map(|p| {
            let cid = p.content_id.as_deref()?;
            // One Content-Disposition: inline, with the file name when there is one.
            let disposition = match &p.file_name {
                Some(f) => ContentType::new("inline").attribute("filename", f.as_str()),
                None => ContentType::new("inline"),
            };
            Some(binary(p).header("Content-Disposition", disposition).cid(cid))
        })
        .collect();
    if !inline.is_empty() {
        tree = MimePart::new("multipart/related", std::iter::once(tree).chain(inline).collect::<Vec<_>>());
    }
    let attached: Vec<MimePart> = parts
        .iter()
        .filter(|p| p.content_id.is_none())
        .map(|p| binary(p).attachment(p.file_name.as_deref().unwrap_or("attachment")))
        .collect();
    if !attached.is_empty() {
        tree = MimePart::new("multipart/mixed", std::iter::once(tree).chain(attached).collect::<Vec<_>>());
    }
    m.body(tree).write_to_vec().map_err(|e| format!("building the message: {e}"))
}

fn binary(p: &Part) -> MimePart<'_> {
    MimePart::new(p.content_type.as_str(), BodyPart::Binary(Cow::Borrowed(&p.data[..])))
}

fn single_or<'a>(multipart: &str, mut parts: Vec<MimePart<'a>>) -> MimePart<'a> {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        MimePart::new(multipart.to_string(), parts)
    }
}

/// The rendered raw form, completed: CRLF line ends, and the Message-ID, Date and MIME-Version
/// headers it lacks (placed first, before its own).
pub fn complete_raw(text: &str, message_id: &str, date: &str) -> Vec<u8> {
    let mut data = line_endings::to_crlf(text.as_bytes()).into_owned();
    for (name, value) in [("MIME-Version", "1.0"), ("Date", date), ("Message-ID", &format!("<{message_id}>"))]
    {
        if headers::first_named(&data, name).is_none() {
            data = headers::prepend(&data, name, value);
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::request::{Content, InjectV1Request, parse};
    use crate::inject::template::{Templates, context, environment};
    use mail_parser::{MessageParser, MimeHeaders, PartType};

    fn request(content: &str) -> InjectV1Request {
        parse(format!(r#"{{"envelope_sender":"s@example.com","recipients":[{{"email":"a@example.com","name":"Ann Example"}}],"content":{content}}}"#).as_bytes())
            .unwrap()
    }

    fn built(r: &InjectV1Request) -> Vec<u8> {
        let Content::Builder(b) = &r.content else { panic!("builder") };
        let env = environment();
        let t = Templates::compile(&env, r, 1 << 20).unwrap();
        let rendered = t.render(&context(&r.substitutions, &r.recipients[0])).unwrap();
        build(b, &rendered, &decode_attachments(b).unwrap(), &r.recipients[0], "id1@ferry.test").unwrap()
    }

    #[test]
    fn a_structured_message_parses_back_with_its_parts() {
        let r = request(
            r#"{"subject":"Hello {{ name }} ✓","from":{"email":"f@example.com","name":"Föö"},"reply_to":{"email":"r@example.com"},
                "headers":{"X-Campaign":"c1"},"text_body":"text {{ email }}","html_body":"<p>html</p><img src=\"cid:logo\">",
                "amp_html_body":"<html amp4email>amp</html>",
                "attachments":[{"data":"aGVsbG8=","base64":true,"content_type":"application/octet-stream","file_name":"h.bin"},
                               {"data":"R0lGODlhAQABAAAAACw=","base64":true,"content_type":"image/gif","content_id":"logo"}]}"#,
        );
        let data = built(&r);
        assert!(line_endings::find_bare(&data).is_none());
        let msg = MessageParser::default().parse(&data).unwrap();
        assert_eq!(msg.subject(), Some("Hello Ann Example ✓"));
        assert_eq!(msg.message_id(), Some("id1@ferry.test"));
        assert!(msg.date().is_some());
        let to = msg.to().unwrap().first().unwrap();
        assert_eq!((to.name(), to.address()), (Some("Ann Example"), Some("a@example.com")));
        assert_eq!(msg.from().unwrap().first().unwrap().name(), Some("Föö"));
        assert_eq!(msg.reply_to().unwrap().first().unwrap().address(), Some("r@example.com"));
        assert_eq!(msg.header("X-Campaign").and_then(|h| h.as_text()), Some("c1"));
        assert_eq!(msg.body_text(0).as_deref(), Some("text a@example.com"));
        assert!(msg.body_html(0).unwrap().contains("<p>html</p>"));
        let amp =
            msg.parts.iter().find(|p| p.content_type().is_some_and(|c| c.subtype() == Some("x-amp-html")));
        assert!(amp.is_some(), "an AMP part");
        let att = msg.attachments().find(|a| a.attachment_name() == Some("h.bin")).expect("the attachment");
        assert_eq!(att.contents(), b"hello");
        let gif = msg.parts.iter().find(|p| p.content_id() == Some("logo")).expect("the inline part");
        assert!(matches!(gif.body, PartType::InlineBinary(_) | PartType::Binary(_)));
        assert_eq!(gif.content_disposition().map(|d| d.ctype()), Some("inline"));
        assert_eq!(data.windows(20).filter(|w| w == b"Content-Disposition:").count(), 2, "one per file part");
        assert_eq!(&gif.contents()[..3], b"GIF");
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));
    }

    #[test]
    fn a_single_text_body_is_the_whole_body() {
        let data = built(&request(r#"{"text_body":"just text"}"#));
        let msg = MessageParser::default().parse(&data).unwrap();
        assert_eq!(msg.content_type().unwrap().subtype(), Some("plain"));
        assert_eq!(msg.body_text(0).as_deref(), Some("just text"));
    }

    #[test]
    fn a_caller_to_header_replaces_the_generated_one() {
        let data = built(&request(r#"{"text_body":"t","headers":{"To":"list@example.com"}}"#));
        let text = String::from_utf8(data).unwrap();
        assert_eq!(text.matches("\r\nTo: ").count() + usize::from(text.starts_with("To: ")), 1, "{text}");
        assert!(text.contains("list@example.com") && !text.contains("a@example.com"), "{text}");
    }

    #[test]
    fn a_substitution_cannot_add_a_header() {
        let r = parse(
            br#"{"envelope_sender":"s@example.com","recipients":[{"email":"a@example.com","substitutions":{"v":"x\r\nBcc: evil@example.com"}}],
                "content":{"subject":"S {{ v }}","text_body":"t"}}"#,
        )
        .unwrap();
        let Content::Builder(b) = &r.content else { panic!() };
        let env = environment();
        let t = Templates::compile(&env, &r, 1 << 20).unwrap();
        let rendered = t.render(&context(&r.substitutions, &r.recipients[0])).unwrap();
        let e = build(b, &rendered, &[], &r.recipients[0], "x@y").unwrap_err();
        assert!(e.starts_with("content.subject"), "{e}");
    }

    #[test]
    fn raw_content_gets_crlf_and_the_headers_it_lacks() {
        let data = complete_raw("Subject: hi\n\nbody\n", "m1@ferry.test", "Tue, 1 Dec 2026 10:00:00 +0000");
        let text = String::from_utf8(data).unwrap();
        assert!(text.starts_with("Message-ID: <m1@ferry.test>\r\nDate: Tue, 1 Dec 2026"), "{text}");
        assert!(text.ends_with("MIME-Version: 1.0\r\nSubject: hi\r\n\r\nbody\r\n"), "{text}");
        let kept = complete_raw("Message-Id: <own@x>\r\nDate: x\r\nMIME-Version: 1.0\r\n\r\nb", "m2@y", "d");
        assert_eq!(kept, b"Message-Id: <own@x>\r\nDate: x\r\nMIME-Version: 1.0\r\n\r\nb");
    }
}
