//! Envelope addresses: what the SMTP listener (MAIL FROM / RCPT TO) and the xfer receiver accept.
//! One rule for both, so a message that could not have come in over SMTP cannot come in over
//! xfer either, and nothing that would break an SMTP command line later (CR, LF, NUL, `<`, `>`)
//! reaches the spool.

/// Why an address is refused; `reason` is the text both callers put in their reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    Control,
    AngleBracket,
    NoDomain,
    BadLocalPart,
    BadDomain,
}

impl AddressError {
    pub fn reason(self) -> &'static str {
        match self {
            AddressError::Control => "the address contains a control character (CR, LF, NUL, …)",
            AddressError::AngleBracket => "the address contains < or >",
            AddressError::NoDomain => "the address needs a domain (user@domain)",
            AddressError::BadLocalPart => "bad local part",
            AddressError::BadDomain => "bad domain",
        }
    }
}

/// A mailbox `local@domain`: a dot-atom-ish or quoted local part, and a domain of non-empty
/// labels (letters, digits, `-`, `_`; internationalised letters too) or an address literal.
pub fn check_mailbox(address: &str) -> Result<(), AddressError> {
    if address.chars().any(char::is_control) {
        return Err(AddressError::Control);
    }
    if address.contains(['<', '>']) {
        return Err(AddressError::AngleBracket);
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(AddressError::NoDomain);
    };
    let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
    if local.is_empty() || (!quoted && local.contains([' ', '(', ')', ',', ';', '\\', '"'])) {
        return Err(AddressError::BadLocalPart);
    }
    let literal = domain.starts_with('[') && domain.ends_with(']');
    let valid_domain = !domain.is_empty()
        && (literal
            || domain.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
            }));
    if !valid_domain {
        return Err(AddressError::BadDomain);
    }
    Ok(())
}

/// An envelope sender: a mailbox, or empty for the null reverse-path (`MAIL FROM:<>`, as used
/// by bounces). The literal text `<>` is not the null sender; it is refused.
pub fn check_sender(address: &str) -> Result<(), AddressError> {
    if address.is_empty() { Ok(()) } else { check_mailbox(address) }
}

/// A whole envelope; the error names the field (`sender`, `recipient[i]`), the address and why.
pub fn check_envelope(sender: &str, recipients: &[String]) -> Result<(), String> {
    check_sender(sender).map_err(|e| format!("sender {sender:?}: {}", e.reason()))?;
    if recipients.is_empty() {
        return Err("recipient: at least one is required".into());
    }
    for (i, r) in recipients.iter().enumerate() {
        check_mailbox(r).map_err(|e| format!("recipient[{i}] {r:?}: {}", e.reason()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_that_are_accepted() {
        for ok in [
            "user@example.com",
            "first.last+tag@sub.example.co.uk",
            "user@[127.0.0.1]",
            "\"odd user\"@example.com",
            "ünïcode@bücher.example",
            "a_b@my_host.example",
        ] {
            assert_eq!(check_mailbox(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn each_refusal_has_its_reason() {
        use AddressError::*;
        let cases = [
            ("a\r\nRCPT TO:<x@y.z>@example.com", Control),
            ("user@example.com\r\n", Control),
            ("us\0er@example.com", Control),
            ("user@exam\nple.com", Control),
            ("us\ter@example.com", Control),
            ("<user@example.com>", AngleBracket),
            ("\"a<b\"@example.com", AngleBracket),
            ("user@example.com>", AngleBracket),
            ("nodomain", NoDomain),
            ("", NoDomain),
            ("@example.com", BadLocalPart),
            ("a b@example.com", BadLocalPart),
            ("a\"b@example.com", BadLocalPart),
            ("user@", BadDomain),
            ("user@a..b", BadDomain),
            ("user@exa mple.com", BadDomain),
            ("user@example.com.", BadDomain),
        ];
        for (address, want) in cases {
            assert_eq!(check_mailbox(address), Err(want), "{address:?}");
        }
    }

    #[test]
    fn the_null_sender_is_empty_not_angle_brackets() {
        assert_eq!(check_sender(""), Ok(()));
        assert_eq!(check_sender("bounce@example.com"), Ok(()));
        assert_eq!(check_sender("<>"), Err(AddressError::AngleBracket));
        assert_eq!(check_sender(" "), Err(AddressError::NoDomain));
    }

    #[test]
    fn an_envelope_error_names_the_field() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_envelope("", &r(&["a@b.c", "d@e.f"])), Ok(()));
        let e = check_envelope("s\n@b.c", &r(&["a@b.c"])).unwrap_err();
        assert!(e.starts_with("sender \"s\\n@b.c\": ") && e.contains("control"), "{e}");
        let e = check_envelope("s@b.c", &r(&["a@b.c", "nodomain"])).unwrap_err();
        assert!(e.starts_with("recipient[1] \"nodomain\": ") && e.contains("domain"), "{e}");
        assert!(check_envelope("s@b.c", &[]).unwrap_err().starts_with("recipient:"));
    }
}
