//! What an outbound connection does about TLS (an egress path's `enable_tls`, KumoMTA's values),
//! as a table: what the peer offered and the policy decide the step; a failed handshake and the
//! policy decide whether to give up or reconnect in plaintext.

use super::egress_path::EnableTls;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsStep {
    /// Go on without TLS.
    Plain,
    /// STARTTLS; `verify` = check the certificate chain and name.
    StartTls { verify: bool },
    /// Do not send on this connection: a TransientFailure with this reason.
    Refuse(String),
}

/// After EHLO: `offered` = the peer announced STARTTLS.
pub fn step(policy: EnableTls, offered: bool) -> TlsStep {
    match (policy, offered) {
        (EnableTls::Disabled, _) => TlsStep::Plain,
        (EnableTls::Opportunistic | EnableTls::Required, true) => TlsStep::StartTls { verify: true },
        (EnableTls::OpportunisticInsecure | EnableTls::RequiredInsecure, true) => {
            TlsStep::StartTls { verify: false }
        }
        (EnableTls::Opportunistic | EnableTls::OpportunisticInsecure, false) => TlsStep::Plain,
        (EnableTls::Required | EnableTls::RequiredInsecure, false) => {
            TlsStep::Refuse(format!("STARTTLS is not offered by the peer, and enable_tls = \"{policy:?}\""))
        }
    }
}

/// After a failed STARTTLS handshake: reconnect without TLS only for an opportunistic policy with
/// `opportunistic_tls_reconnect_on_failed_handshake`; never fall back on the same connection.
pub fn reconnect_plain(policy: EnableTls, reconnect_on_failed_handshake: bool) -> bool {
    reconnect_on_failed_handshake
        && matches!(policy, EnableTls::Opportunistic | EnableTls::OpportunisticInsecure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use EnableTls::*;

    #[test]
    fn the_decision_table() {
        let cases = [
            (Disabled, true, TlsStep::Plain),
            (Disabled, false, TlsStep::Plain),
            (Opportunistic, true, TlsStep::StartTls { verify: true }),
            (Opportunistic, false, TlsStep::Plain),
            (OpportunisticInsecure, true, TlsStep::StartTls { verify: false }),
            (OpportunisticInsecure, false, TlsStep::Plain),
            (Required, true, TlsStep::StartTls { verify: true }),
            (RequiredInsecure, true, TlsStep::StartTls { verify: false }),
        ];
        for (policy, offered, want) in cases {
            assert_eq!(step(policy, offered), want, "{policy:?} offered={offered}");
        }
        for policy in [Required, RequiredInsecure] {
            assert!(matches!(step(policy, false), TlsStep::Refuse(why) if why.contains("not offered")));
        }
    }

    #[test]
    fn only_opportunistic_policies_may_reconnect_in_plaintext() {
        assert!(reconnect_plain(Opportunistic, true) && reconnect_plain(OpportunisticInsecure, true));
        assert!(!reconnect_plain(Opportunistic, false));
        assert!(!reconnect_plain(Required, true) && !reconnect_plain(RequiredInsecure, true));
    }
}
