//! Reading and editing the header block of a raw RFC 5322 message. Only what the engine needs:
//! iterate headers with unfolded values, find one by name, add or remove one. The body is never
//! touched, so data stays byte-for-byte intact.

/// Byte length of the header block including the blank line that ends it (or the whole input
/// when there is no body).
pub fn header_block_len(data: &[u8]) -> usize {
    let mut pos = 0;
    while pos < data.len() {
        let end = memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return end;
        }
        pos = end;
    }
    data.len()
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

/// A header: its name as written and its value unfolded (folding whitespace kept as one space
/// run, leading/trailing whitespace trimmed), lossily decoded as UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
    /// Byte range of the whole header (all of its lines) in the message.
    pub range: std::ops::Range<usize>,
}

/// All headers in order.
pub fn headers(data: &[u8]) -> Vec<Header> {
    let block = &data[..header_block_len(data)];
    let mut out: Vec<Header> = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let end = memchr(b'\n', &block[pos..]).map_or(block.len(), |i| pos + i + 1);
        let line = &block[pos..end];
        let text = String::from_utf8_lossy(line);
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if trimmed.starts_with([' ', '\t']) {
            if let Some(h) = out.last_mut() {
                h.value.push_str(trimmed);
                h.range.end = end;
            }
        } else if let Some((name, value)) = trimmed.split_once(':') {
            out.push(Header { name: name.trim().to_string(), value: value.to_string(), range: pos..end });
        }
        pos = end;
    }
    for h in &mut out {
        h.value = h.value.trim().to_string();
    }
    out
}

/// The value of the first header named `name` (case-insensitive).
pub fn first_named(data: &[u8], name: &str) -> Option<String> {
    headers(data).into_iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// The values of every header named `name` (case-insensitive), in order.
pub fn all_named(data: &[u8], name: &str) -> Vec<String> {
    headers(data).into_iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect()
}

/// `X-Whatever`: the prefix KumoMTA's `remove_x_headers` and `import_x_headers` look for.
pub fn is_x_header(name: &str) -> bool {
    name.len() > 2 && name[..2].eq_ignore_ascii_case("x-")
}

/// A header value with RFC 2047 encoded words decoded to UTF-8.
pub fn decode_value(value: &str) -> String {
    // Parsed as a Subject: mail-parser's stock parser for unstructured text.
    let raw = format!("Subject: {value}\r\n\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(raw.as_bytes());
    match parsed.as_ref().and_then(|m| m.header("Subject")) {
        Some(mail_parser::HeaderValue::Text(t)) => t.to_string(),
        _ => value.to_string(),
    }
}

/// Remove every header named `name`.
pub fn remove_all(data: &[u8], name: &str) -> Vec<u8> {
    remove_where(data, |n| n.eq_ignore_ascii_case(name))
}

/// Remove every header whose name `unwanted` picks.
pub fn remove_where(data: &[u8], unwanted: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut last = 0;
    for h in headers(data).into_iter().filter(|h| unwanted(&h.name)) {
        out.extend_from_slice(&data[last..h.range.start]);
        last = h.range.end;
    }
    out.extend_from_slice(&data[last..]);
    out
}

/// `Name: value\r\n` placed before the first header.
pub fn prepend(data: &[u8], name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + name.len() + value.len() + 4);
    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    out.extend_from_slice(data);
    out
}

/// `Name: value\r\n` placed after the last header, before the blank line.
pub fn append(data: &[u8], name: &str, value: &str) -> Vec<u8> {
    let block = header_block_len(data);
    let body_sep = data[..block].ends_with(b"\r\n\r\n") || data[..block].ends_with(b"\n\n") || block == 2;
    let insert_at =
        if body_sep { block - if data[..block].ends_with(b"\r\n") { 2 } else { 1 } } else { block };
    let mut out = Vec::with_capacity(data.len() + name.len() + value.len() + 4);
    out.extend_from_slice(&data[..insert_at]);
    if insert_at > 0 && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    out.extend_from_slice(&data[insert_at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"Subject: Hello\r\nX-Tenant: a\r\n\tb\r\nx-tenant: second\r\n\r\nbody: not a header\r\n";

    #[test]
    fn iterates_and_unfolds() {
        let h = headers(MSG);
        let names: Vec<_> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Subject", "X-Tenant", "x-tenant"]);
        assert_eq!(h[1].value, "a\tb");
        assert_eq!(first_named(MSG, "X-TENANT").as_deref(), Some("a\tb"));
        assert_eq!(first_named(MSG, "body"), None);
    }

    #[test]
    fn removes_all_of_a_name_and_keeps_body() {
        let out = remove_all(MSG, "x-tenant");
        assert_eq!(out, b"Subject: Hello\r\n\r\nbody: not a header\r\n");
    }

    #[test]
    fn all_named_and_x_header_removal() {
        assert_eq!(all_named(MSG, "X-TENANT"), ["a\tb", "second"]);
        assert!(all_named(MSG, "Missing").is_empty());
        assert!(is_x_header("x-Mailer") && !is_x_header("X-") && !is_x_header("Xylophone"));
        let out = remove_where(MSG, is_x_header);
        assert_eq!(out, b"Subject: Hello\r\n\r\nbody: not a header\r\n");
    }

    #[test]
    fn encoded_words_are_decoded() {
        assert_eq!(decode_value("=?utf-8?q?caf=C3=A9?= time"), "café time");
        assert_eq!(decode_value("plain text"), "plain text");
    }

    #[test]
    fn append_goes_before_the_blank_line() {
        let out = append(MSG, "X-Rebound", "woot");
        assert!(out.starts_with(b"Subject: Hello\r\n"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("x-tenant: second\r\nX-Rebound: woot\r\n\r\nbody"), "{text}");
        let out = prepend(b"A: 1\r\n\r\nb", "Received", "x");
        assert_eq!(out, b"Received: x\r\nA: 1\r\n\r\nb");
    }

    #[test]
    fn headers_only_message() {
        assert_eq!(header_block_len(b"A: 1\r\n"), 6);
        assert_eq!(append(b"A: 1\r\n", "B", "2"), b"A: 1\r\nB: 2\r\n");
    }
}
