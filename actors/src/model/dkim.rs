//! DKIM signing rules that do not need a key: the names policy uses for canonicalisation and
//! the over-signing header list (KumoMTA's `over_sign`, RFC 6376 §8.15).

use super::headers;

/// RFC 6376 §3.4. KumoMTA spells them "Relaxed" and "Simple"; the default is Relaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Canonicalization {
    #[default]
    Relaxed,
    Simple,
}

impl Canonicalization {
    /// Case-insensitive, so `relaxed` from a hand-written policy works too.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("relaxed") {
            Ok(Canonicalization::Relaxed)
        } else if text.eq_ignore_ascii_case("simple") {
            Ok(Canonicalization::Simple)
        } else {
            Err(format!("unknown canonicalization {text:?} (expected \"Relaxed\" or \"Simple\")"))
        }
    }
}

/// The `h=` list for one message when over-signing: each configured name as many times as the
/// message has it, plus one, so a header added later in transit breaks the signature.
pub fn over_signed_headers(data: &[u8], names: &[String]) -> Vec<String> {
    let present = headers::headers(data);
    let mut out = Vec::new();
    for name in names {
        let n = present.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
        out.extend(std::iter::repeat_n(name.clone(), n + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalization_names() {
        assert_eq!(Canonicalization::parse("Relaxed"), Ok(Canonicalization::Relaxed));
        assert_eq!(Canonicalization::parse("simple"), Ok(Canonicalization::Simple));
        assert!(Canonicalization::parse("nofws").unwrap_err().contains("nofws"));
    }

    #[test]
    fn over_signing_counts_each_name_plus_one() {
        let data = b"From: a@x\r\nTo: b@x\r\nto: c@x\r\n\r\nSubject: in the body\r\n";
        let names: Vec<String> = ["From", "To", "Subject"].map(String::from).to_vec();
        assert_eq!(over_signed_headers(data, &names), ["From", "From", "To", "To", "To", "Subject"]);
    }
}
