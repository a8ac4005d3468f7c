//! ESMTP command parsing (RFC 5321 §4.1): pure functions over one command line (without CRLF).

use crate::model::address;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    MailFrom {
        address: String,
        size: Option<u64>,
    },
    RcptTo {
        address: String,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// `AUTH <mechanism> [initial-response]` (RFC 4954).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

/// Why a line is not a usable command; each maps to one SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// 500 5.5.1
    Unrecognized,
    /// 501 5.5.4 / 5.1.x with a reason
    Syntax(&'static str),
    /// 555 5.5.4: MAIL/RCPT parameter we do not support
    UnsupportedParameter(String),
}

impl CommandError {
    pub fn reply(&self) -> String {
        match self {
            CommandError::Unrecognized => "500 5.5.1 Command unrecognized".into(),
            CommandError::Syntax(why) => format!("501 5.5.4 Syntax error: {why}"),
            CommandError::UnsupportedParameter(p) => {
                format!("555 5.5.4 Parameter not supported: {p}")
            }
        }
    }
}

pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Unrecognized)?;
    if line.bytes().any(|b| b == 0 || (b < 0x20 && b != b'\t')) {
        return Err(CommandError::Unrecognized);
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line.trim_end(), ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |cmd: Command| {
        if rest.is_empty() { Ok(cmd) } else { Err(CommandError::Syntax("this command takes no arguments")) }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let domain = rest.split_whitespace().next().unwrap_or("");
            if domain.is_empty() {
                return Err(CommandError::Syntax("a domain or address literal is required"));
            }
            let domain = domain.to_string();
            Ok(if verb == "EHLO" { Command::Ehlo(domain) } else { Command::Helo(domain) })
        }
        "MAIL" => {
            let (address, params) = path_after(rest, "FROM:")?;
            if !address.is_empty() {
                check_mailbox(&address)?;
            }
            let mut size = None;
            for p in params {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                match key.to_ascii_uppercase().as_str() {
                    "SIZE" => {
                        size = Some(value.parse().map_err(|_| CommandError::Syntax("SIZE= needs a number"))?)
                    }
                    "BODY"
                        if value.eq_ignore_ascii_case("8BITMIME") || value.eq_ignore_ascii_case("7BIT") => {}
                    _ => return Err(CommandError::UnsupportedParameter(p.to_string())),
                }
            }
            Ok(Command::MailFrom { address, size })
        }
        "RCPT" => {
            let (address, params) = path_after(rest, "TO:")?;
            if let Some(p) = params.first() {
                return Err(CommandError::UnsupportedParameter(p.to_string()));
            }
            if address.is_empty() {
                return Err(CommandError::Syntax("a recipient address is required"));
            }
            check_mailbox(&address)?;
            Ok(Command::RcptTo { address })
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "NOOP" => Ok(Command::Noop),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut words = rest.split_whitespace();
            let mechanism = words.next().ok_or(CommandError::Syntax("AUTH needs a mechanism"))?;
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial: words.next().map(str::to_string),
            })
        }
        _ => Err(CommandError::Unrecognized),
    }
}

/// Split `FROM:<path> params…`; tolerates a space after the colon (common client quirk).
fn path_after<'a>(rest: &'a str, keyword: &str) -> Result<(String, Vec<&'a str>), CommandError> {
    let head = rest.get(..keyword.len()).unwrap_or("");
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(CommandError::Syntax(if keyword == "FROM:" {
            "expected MAIL FROM:<address>"
        } else {
            "expected RCPT TO:<address>"
        }));
    }
    let rest = rest[keyword.len()..].trim_start();
    let Some(inner) = rest.strip_prefix('<') else {
        return Err(CommandError::Syntax("the address must be enclosed in <>"));
    };
    let close = inner.find('>').ok_or(CommandError::Syntax("missing closing >"))?;
    let mut address = &inner[..close];
    // Obsolete source route `@a,@b:user@domain` (RFC 5321 §4.1.2): keep the mailbox.
    if address.starts_with('@') {
        address = address.split_once(':').map_or("", |(_, mbox)| mbox);
    }
    let params = inner[close + 1..].split_whitespace().collect();
    Ok((address.to_string(), params))
}

/// The shared address rule (`model::address`), as this listener's 501 reply.
fn check_mailbox(address: &str) -> Result<(), CommandError> {
    address::check_mailbox(address).map_err(|e| CommandError::Syntax(e.reason()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse(b"ehlo client.example"), Ok(Command::Ehlo("client.example".into())));
        assert_eq!(parse(b"HeLo x"), Ok(Command::Helo("x".into())));
        assert_eq!(parse(b"data"), Ok(Command::Data));
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"NOOP anything"), Ok(Command::Noop));
        assert_eq!(parse(b"VRFY someone"), Ok(Command::Vrfy));
    }

    #[test]
    fn mail_from_with_parameters() {
        assert_eq!(
            parse(b"MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME"),
            Ok(Command::MailFrom { address: "a@example.com".into(), size: Some(1000) })
        );
        assert_eq!(parse(b"mail from: <>"), Ok(Command::MailFrom { address: String::new(), size: None }));
        assert_eq!(
            parse(b"MAIL FROM:<@relay.example:a@example.com>"),
            Ok(Command::MailFrom { address: "a@example.com".into(), size: None })
        );
        assert!(matches!(
            parse(b"MAIL FROM:<a@example.com> SMTPUTF8"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert!(matches!(parse(b"MAIL FROM:<a@example.com> SIZE=big"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse(b"MAIL FROM:a@example.com"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse(b"MAIL TO:<a@example.com>"), Err(CommandError::Syntax(_))));
    }

    #[test]
    fn rcpt_to_validates_the_mailbox() {
        assert_eq!(
            parse(b"RCPT TO:<user@[127.0.0.1]>"),
            Ok(Command::RcptTo { address: "user@[127.0.0.1]".into() })
        );
        assert_eq!(
            parse(b"RCPT TO:<\"odd user\"@example.com>"),
            Ok(Command::RcptTo { address: "\"odd user\"@example.com".into() })
        );
        for bad in [&b"RCPT TO:<>"[..], b"RCPT TO:<nodomain>", b"RCPT TO:<a@b..c>", b"RCPT TO:<a b@c.d>"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn garbage_is_unrecognized() {
        assert_eq!(parse(b"\x00\x01\xff\xfe"), Err(CommandError::Unrecognized));
        assert_eq!(parse(b"HELLO"), Err(CommandError::Unrecognized));
        assert_eq!(parse(b"NO\x00OP"), Err(CommandError::Unrecognized));
        assert_eq!(parse(b""), Err(CommandError::Unrecognized));
        assert!(parse(b"EHLO").unwrap_err().reply().starts_with("501 "));
    }
}
