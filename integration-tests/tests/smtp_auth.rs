//! SMTP AUTH (issue #14 item 4), driven by a real client (Python's smtplib): offered only after
//! STARTTLS, decided by the policy's `smtp_server_auth_plain`, wrong passwords get 535 (slowly),
//! success relays whatever `relay_hosts` says, `auth_required` refuses MAIL before AUTH, and the
//! identity lands in the meta and the `Received:` header (`ESMTPSA`).

use std::process::Command;

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::{FerryNode, RawSmtp, requires};

fn policy(sink: &SmtpSink) -> String {
    format!(
        r#"
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  return authc == 'scott' and password == 'tiger' and conn_meta.received_from ~= nil
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    )
}

const CLIENT: &str = r#"
import smtplib, ssl, sys
port, mechanism = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP('127.0.0.1', port, timeout=20)
s.ehlo()
print('PLAIN-AUTH-OFFERED' if s.has_extn('auth') else 'NO-AUTH-IN-CLEAR')
try:
    s.sendmail('x@example.com', ['r@example.com'], 'Subject: x\r\n\r\nx\r\n')
    print('RELAYED-UNAUTHENTICATED')
except smtplib.SMTPRecipientsRefused as e:
    print('REFUSED', list(e.recipients.values())[0][0])
s.starttls(context=ssl._create_unverified_context())
s.ehlo()
print('AUTH', s.esmtp_features.get('auth', '').strip())
try:
    s.login('scott', 'wrong')
    print('WRONG-ACCEPTED')
except smtplib.SMTPAuthenticationError as e:
    print('WRONG', e.smtp_code)
s.user, s.password = 'scott', 'tiger'
code, _ = s.auth(mechanism, getattr(s, 'auth_' + mechanism.lower()), initial_response_ok=False)
print('LOGIN', code)
s.sendmail('scott@example.com', ['r@example.com'], 'Subject: auth\r\n\r\nhello\r\n')
print('SENT')
s.quit()
"#;

fn run_client(node: &FerryNode, mechanism: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", CLIENT, &node.smtp.port().to_string(), mechanism])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn smtplib_authenticates_over_starttls_and_then_may_relay() {
    let sink = SmtpSink::start();
    let node =
        FerryNode::start("[smtp]\nrelay_hosts = []\n[logs]\nmeta = [\"authn_id\"]\n", Some(&policy(&sink)));
    for (mechanism, delivered) in [("PLAIN", 1), ("LOGIN", 2)] {
        let out = run_client(&node, mechanism);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            ["NO-AUTH-IN-CLEAR", "REFUSED 550", "AUTH PLAIN LOGIN", "WRONG 535", "LOGIN 235", "SENT"],
            "{mechanism}"
        );
        let messages = sink.wait_messages(delivered);
        let data = &messages[delivered - 1].data;
        assert!(data.contains("with ESMTPSA id"), "{data}");
    }
    let receptions = node.wait_records("Reception", 2);
    assert!(receptions.iter().all(|r| r["meta"]["authn_id"] == "scott"), "{receptions:?}");
}

#[test]
fn auth_required_refuses_mail_before_auth() {
    let node = FerryNode::start(
        "[smtp]\nauth_required = true\n",
        Some("kumo.on('smtp_server_auth_plain', function() return false end)"),
    );
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let r = c.cmd("MAIL FROM:<s@example.com>");
    assert_eq!((r.code, r.text.contains("5.7.0")), (530, true), "{r:?}");
    // AUTH in clear is refused outright: the password would cross unencrypted.
    let r = c.cmd("AUTH PLAIN AHNjb3R0AHRpZ2Vy");
    assert_eq!(r.code, 538, "{r:?}");
}

/// swaks with the Perl TLS modules its `--tls` needs, or a failure naming the missing package.
fn swaks() -> &'static str {
    let what = "the submission test (swaks --tls)";
    requires::command(what, "swaks", "swaks");
    requires::perl_module(what, "IO::Socket::SSL", "libio-socket-ssl-perl");
    requires::perl_module(what, "Net::SSLeay", "libnet-ssleay-perl");
    "swaks"
}

/// swaks, a client operators use to check a submission port: STARTTLS, then AUTH LOGIN, then a
/// message that relays only because it authenticated (`relay_hosts` is empty).
#[test]
fn swaks_submits_over_starttls_with_auth() {
    let sink = SmtpSink::start();
    let node =
        FerryNode::start("[smtp]\nrelay_hosts = []\n[logs]\nmeta = [\"authn_id\"]\n", Some(&policy(&sink)));
    let port = node.smtp.port().to_string();
    let out = Command::new(swaks())
        .args(["--server", "127.0.0.1", "--port", &port, "--tls", "--auth", "LOGIN"])
        .args(["--auth-user", "scott", "--auth-password", "tiger", "--helo", "client.test"])
        .args(["--from", "scott@example.com", "--to", "r@example.com", "--body", "via swaks"])
        .args(["--timeout", "20"])
        .output()
        .expect("run swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(transcript.contains("TLS started"), "{transcript}");
    assert!(transcript.contains("235 "), "authenticated: {transcript}");
    let message = sink.wait_messages(1).remove(0);
    let text = &message.data;
    assert!(text.contains("via swaks") && text.contains("ESMTPSA"), "{text}");
    let reception = node.wait_records("Reception", 1).remove(0);
    assert_eq!(reception["meta"]["authn_id"], "scott", "{reception}");
    assert!(reception["tls_protocol_version"].is_string(), "{reception}");
}
