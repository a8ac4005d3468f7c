//! How one SMTP transaction becomes messages (`[smtp] batch_handling`, KumoMTA's listener option
//! of that name). A message belongs to one scheduled queue, named after its first recipient's
//! domain, so recipients at different domains must not share a message: each domain's MX must
//! get only its own recipients.

use ferry_config::BatchHandling;

/// The recipient groups, one per message, in the order their first recipient was given.
/// Domains compare case-insensitively (DNS names do); a recipient without `@` is its own domain.
pub fn split(recipients: Vec<String>, mode: BatchHandling) -> Vec<Vec<String>> {
    match mode {
        BatchHandling::BifurcateAlways => recipients.into_iter().map(|r| vec![r]).collect(),
        BatchHandling::BatchByDomain => {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for rcpt in recipients {
                let domain = rcpt.rsplit_once('@').map_or(rcpt.as_str(), |(_, d)| d).to_ascii_lowercase();
                match groups.iter_mut().find(|(d, _)| *d == domain) {
                    Some((_, group)) => group.push(rcpt),
                    None => groups.push((domain, vec![rcpt])),
                }
            }
            groups.into_iter().map(|(_, g)| g).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn by_domain_keeps_first_appearance_order_and_ignores_case() {
        let rcpts = v(&["a@x.example", "b@Y.example", "c@X.EXAMPLE", "d@z.example", "e@y.example"]);
        assert_eq!(
            split(rcpts, BatchHandling::BatchByDomain),
            vec![v(&["a@x.example", "c@X.EXAMPLE"]), v(&["b@Y.example", "e@y.example"]), v(&["d@z.example"])]
        );
        assert_eq!(split(v(&["one@x"]), BatchHandling::BatchByDomain), vec![v(&["one@x"])]);
    }

    #[test]
    fn bifurcate_gives_one_message_per_recipient() {
        let rcpts = v(&["a@x", "b@x", "c@y"]);
        assert_eq!(split(rcpts, BatchHandling::BifurcateAlways), vec![v(&["a@x"]), v(&["b@x"]), v(&["c@y"])]);
    }
}
