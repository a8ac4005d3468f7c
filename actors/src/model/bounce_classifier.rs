//! Bounce classification (KumoMTA's `configure_bounce_classifier`): rules files map a category
//! to regular expressions over a response's one-line form (`"550 5.1.1 user unknown"`), all
//! compiled into one `RegexSet`. The first rule that matches, in file order then rule order,
//! names the category; nothing matching is `Uncategorized`.

use std::sync::Arc;

use regex::{RegexSet, RegexSetBuilder};

use super::record::Response;

pub const UNCATEGORIZED: &str = "Uncategorized";

/// The rules Ferry ships, used when the policy configures none.
pub const DEFAULT_RULES: &str = include_str!("../../assets/bounce_classifier.toml");

/// Rules gathered from files, in order, before compiling.
#[derive(Debug, Default)]
pub struct Rules {
    patterns: Vec<String>,
    classes: Vec<Arc<str>>,
}

impl Rules {
    /// Add the rules of one file (`[rules] Category = ["regex", ...]`); `name` is used in errors.
    pub fn add_toml(&mut self, name: &str, text: &str) -> Result<(), String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        if let Some(key) = table.keys().find(|k| *k != "rules") {
            return Err(format!("{name}: unknown key {key:?} (expected a [rules] table)"));
        }
        let Some(rules) = table.get("rules") else { return Ok(()) };
        let rules = rules.as_table().ok_or_else(|| format!("{name}: rules must be a table"))?;
        for (class, list) in rules {
            let list = list
                .as_array()
                .ok_or_else(|| format!("{name}: rules.{class} must be an array of regular expressions"))?;
            let class: Arc<str> = Arc::from(class.as_str());
            for (i, rule) in list.iter().enumerate() {
                let rule = rule
                    .as_str()
                    .ok_or_else(|| format!("{name}: rules.{class}[{}] must be a string", i + 1))?;
                // Each rule compiled alone first, so an error names it.
                regex::Regex::new(rule).map_err(|e| format!("{name}: rules.{class}[{}]: {e}", i + 1))?;
                self.patterns.push(rule.to_string());
                self.classes.push(class.clone());
            }
        }
        Ok(())
    }

    pub fn build(self) -> Result<BounceClassifier, String> {
        let set = RegexSetBuilder::new(&self.patterns)
            .size_limit(64 << 20)
            .build()
            .map_err(|e| format!("compiling the rules: {e}"))?;
        Ok(BounceClassifier { set, classes: self.classes })
    }
}

#[derive(Debug)]
pub struct BounceClassifier {
    set: RegexSet,
    classes: Vec<Arc<str>>,
}

impl BounceClassifier {
    /// The shipped rules.
    pub fn default_rules() -> BounceClassifier {
        let mut rules = Rules::default();
        rules.add_toml("bounce_classifier.toml", DEFAULT_RULES).expect("the shipped rules parse");
        rules.build().expect("the shipped rules compile")
    }

    pub fn classify_line(&self, line: &str) -> Arc<str> {
        match self.set.matches(line).into_iter().next() {
            Some(i) => self.classes[i].clone(),
            None => Arc::from(UNCATEGORIZED),
        }
    }

    pub fn classify(&self, response: &Response) -> Arc<str> {
        self.classify_line(&response.to_single_line())
    }

    pub fn rules(&self) -> usize {
        self.classes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: u16, enhanced: Option<&str>, text: &str) -> String {
        static SHIPPED: std::sync::LazyLock<BounceClassifier> =
            std::sync::LazyLock::new(BounceClassifier::default_rules);
        SHIPPED.classify(&Response::new(code, enhanced, text)).to_string()
    }

    /// Responses as large providers and common MTAs send them (paraphrased where long).
    #[test]
    fn real_world_responses() {
        let table: &[(u16, Option<&str>, &str, &str)] = &[
            (
                550,
                Some("5.1.1"),
                "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos",
                "InvalidRecipient",
            ),
            (
                550,
                Some("5.1.1"),
                "<x@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
                "InvalidRecipient",
            ),
            (550, None, "Requested action not taken: mailbox unavailable", "InvalidRecipient"),
            (550, None, "No Such User Here", "InvalidRecipient"),
            (
                554,
                Some("5.7.1"),
                "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
                "SpamBlock",
            ),
            (
                550,
                Some("5.7.1"),
                "Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked",
                "SpamContent",
            ),
            (
                421,
                Some("4.7.0"),
                "Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited",
                "SpamBlock",
            ),
            (
                421,
                Some("4.7.28"),
                "Gmail has detected an unusual rate of mail originating from your SPF domain. To protect our users, mail has been rate limited",
                "TransientFailure",
            ),
            (451, Some("4.7.500"), "Server busy. Please try again later", "TransientFailure"),
            (
                421,
                None,
                "Too many concurrent SMTP connections from this IP address; please try again later",
                "TransientFailure",
            ),
            (452, Some("4.2.2"), "The email account that you tried to reach is over quota", "QuotaIssues"),
            (552, Some("5.2.2"), "Mailbox full", "QuotaIssues"),
            (550, Some("5.2.1"), "The email account that you tried to reach is disabled", "InactiveMailbox"),
            (554, Some("5.7.5"), "Permanent error evaluating DMARC policy", "AuthenticationFailed"),
            (
                550,
                Some("5.7.26"),
                "Unauthenticated email from example.com is not accepted due to domain's DMARC policy",
                "AuthenticationFailed",
            ),
            (554, Some("5.7.9"), "Message not accepted for policy reasons", "PolicyRelated"),
            (550, Some("5.7.1"), "Relaying denied", "RelayDenied"),
            (554, None, "5.7.1 <x@example.com>: Relay access denied", "RelayDenied"),
            (556, Some("5.1.10"), "Recipient address has a null MX", "BadDomain"),
            (550, Some("5.4.4"), "Unable to route: no MX", "RoutingErrors"),
            (552, Some("5.3.4"), "Message size exceeds fixed maximum message size", "ContentRelated"),
            (554, Some("5.7.0"), "Message rejected: virus found (Eicar-Test-Signature)", "VirusRelated"),
            (
                552,
                Some("5.7.0"),
                "This message was blocked because its content presents a potential security issue. Attachment type .exe is not allowed",
                "ProhibitedAttachment",
            ),
            (
                451,
                Some("4.4.4"),
                "KumoMTA internal: failed to resolve example.invalid: no record found",
                "DNSFailure",
            ),
            (
                451,
                Some("4.4.1"),
                "KumoMTA internal: failed to connect to any candidate hosts: Connection refused",
                "NoAnswerFromHost",
            ),
            (551, Some("5.4.7"), "Next-hop failed: message expired", "MessageExpired"),
            (500, Some("5.5.2"), "Syntax error, command unrecognized", "ProtocolErrors"),
            (452, Some("4.5.3"), "Too many recipients", "TooManyRecipients"),
            (250, None, "OK", "Uncategorized"),
        ];
        let mut wrong = Vec::new();
        for (code, enhanced, text, want) in table {
            let got = classify(*code, *enhanced, text);
            if got != *want {
                wrong.push(format!("{code} {enhanced:?} {text:?}: {got}, want {want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn first_rule_in_file_order_wins_and_errors_name_the_rule() {
        let mut rules = Rules::default();
        rules.add_toml("a.toml", "[rules]\nZeta = ['^550 ']\nAlpha = ['user unknown']\n").unwrap();
        rules.add_toml("b.toml", "[rules]\nCustom = ['^4']\n").unwrap();
        let c = rules.build().unwrap();
        assert_eq!(&*c.classify_line("550 user unknown"), "Zeta", "file order, not alphabetical");
        assert_eq!(&*c.classify_line("451 later"), "Custom");
        assert_eq!(&*c.classify_line("250 ok"), UNCATEGORIZED);
        let e = Rules::default().add_toml("bad.toml", "[rules]\nX = ['ok', '(unclosed']\n").unwrap_err();
        assert!(e.contains("bad.toml") && e.contains("rules.X[2]"), "{e}");
        let e = Rules::default().add_toml("bad.toml", "[rule]\nX = ['a']\n").unwrap_err();
        assert!(e.contains("unknown key \"rule\""), "{e}");
    }
}
