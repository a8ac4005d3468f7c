//! Address headers (From, To, Cc, Reply-To …) as policy sees them: KumoMTA's AddressHeader, a
//! flat list of mailboxes (groups are flattened) with a display name and an address each.
//! Parsing, including RFC 2047 display names and groups, is mail-parser's.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Option<String>,
}

impl Mailbox {
    /// The local part, unquoted (`"a b"@x` gives `a b`).
    pub fn user(&self) -> Option<String> {
        let address = self.address.as_deref()?;
        let local = address.rsplit_once('@').map_or(address, |(u, _)| u);
        let unquoted = local.strip_prefix('"').and_then(|l| l.strip_suffix('"'));
        Some(unquoted.map_or_else(|| local.to_string(), |l| l.replace("\\\"", "\"").replace("\\\\", "\\")))
    }

    pub fn domain(&self) -> Option<String> {
        self.address.as_deref()?.rsplit_once('@').map(|(_, d)| d.to_string())
    }
}

/// The mailboxes in a header value; empty when it holds none.
pub fn parse(value: &str) -> Vec<Mailbox> {
    let raw = format!("To: {value}\r\n\r\n");
    let parsed = mail_parser::MessageParser::new().with_address_headers().parse_headers(raw.as_bytes());
    let Some(mail_parser::HeaderValue::Address(list)) = parsed.as_ref().and_then(|m| m.header("To")) else {
        return Vec::new();
    };
    list.clone()
        .into_list()
        .into_iter()
        .map(|a| Mailbox { name: a.name.map(|n| n.into_owned()), address: a.address.map(|a| a.into_owned()) })
        .collect()
}

/// The single mailbox the convenience accessors (`.email`, `.domain` …) need, or why not.
pub fn single(list: &[Mailbox]) -> Result<&Mailbox, String> {
    match list {
        [one] => Ok(one),
        [] => Err("the address header holds no address".into()),
        many => Err(format!("the address header holds {} addresses; use .list to read them", many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbox(name: Option<&str>, address: &str) -> Mailbox {
        Mailbox { name: name.map(String::from), address: Some(address.into()) }
    }

    #[test]
    fn a_named_mailbox_and_a_bare_one() {
        assert_eq!(
            parse("John Smith <john.smith@example.com>"),
            [mbox(Some("John Smith"), "john.smith@example.com")]
        );
        let m = &parse("user@Example.com")[0];
        assert_eq!(m, &mbox(None, "user@Example.com"));
        assert_eq!((m.user().as_deref(), m.domain().as_deref()), (Some("user"), Some("Example.com")));
    }

    #[test]
    fn lists_groups_and_encoded_names() {
        let list = parse("a@x.example, \"B, Jr\" <b@y.example>, Team: c@z.example, d@z.example;");
        let emails: Vec<_> = list.iter().map(|m| m.address.clone().unwrap()).collect();
        assert_eq!(emails, ["a@x.example", "b@y.example", "c@z.example", "d@z.example"]);
        assert_eq!(list[1].name.as_deref(), Some("B, Jr"));
        assert_eq!(parse("=?utf-8?q?Ren=C3=A9?= <r@x.example>")[0].name.as_deref(), Some("René"));
        assert!(single(&list).unwrap_err().contains("4 addresses"));
        assert!(parse("").is_empty());
    }

    #[test]
    fn quoted_local_part_is_unquoted() {
        assert_eq!(mbox(None, "\"a b\"@x.example").user().as_deref(), Some("a b"));
    }
}
