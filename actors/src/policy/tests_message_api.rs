//! The message API KumoMTA policies use (issue 15 item 3) and DKIM signing from Lua: one scenario
//! per function, run through a real policy state.

use bytes::Bytes;
use ferry_config::PolicySource;

use super::*;
use crate::dkim::KeyKind;
use crate::dkim::tests::{KeyRecords, make_key, verify};
use crate::model::{Message, MessageIdGenerator};

fn policy(text: &str) -> PolicyState {
    let text: &'static str = Box::leak(text.to_string().into_boxed_str());
    PolicyState::load(Some(&PolicySource::Embedded { name: "test.lua", text })).unwrap()
}

const DATA: &str = "From: \"Alice A.\" <alice@example.com>\r\nTo: bob@example.net, Carol <carol@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nX-Campaign-ID: 12345\r\nX-Mailer: foobar\r\nx-mailer: second\r\nReply-To: Team: r1@example.com, r2@example.com;\r\n\r\nThe body\r\n";

/// Run `body` as an smtp_server_message_received handler over DATA; the message and the outcome.
fn run(body: &str) -> (Message, Result<(), PolicyError>) {
    let state = policy(&format!("kumo.on('smtp_server_message_received', function(msg)\n{body}\nend)"));
    let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let msg = Message::new(
        g.generate(),
        "sender@example.com".into(),
        vec!["rcpt@example.net".into()],
        Bytes::from_static(DATA.as_bytes()),
    );
    state.run_message_chain("smtp_server_message_received", msg, |_| Ok(mlua::MultiValue::new()))
}

fn data(msg: &Message) -> String {
    String::from_utf8_lossy(&msg.data).into_owned()
}

#[test]
fn remove_x_headers_without_names_removes_every_x_header() {
    let (msg, r) = run("msg:remove_x_headers()");
    r.unwrap();
    assert!(data(&msg).starts_with("From: ") && !data(&msg).to_lowercase().contains("x-"), "{}", data(&msg));
    assert!(data(&msg).ends_with("r2@example.com;\r\n\r\nThe body\r\n"));
}

#[test]
fn remove_x_headers_with_names_removes_only_those() {
    let (msg, r) = run("msg:remove_x_headers { 'x-campaign-id' }");
    r.unwrap();
    assert!(
        !data(&msg).contains("X-Campaign-ID") && data(&msg).contains("X-Mailer: foobar\r\nx-mailer: second")
    );
}

#[test]
fn remove_all_named_headers_removes_every_instance() {
    let (msg, r) = run("msg:remove_all_named_headers('X-MAILER')");
    r.unwrap();
    assert!(!data(&msg).to_lowercase().contains("x-mailer") && data(&msg).contains("X-Campaign-ID: 12345"));
}

#[test]
fn get_all_headers_is_a_list_of_name_value_pairs_decoded() {
    let (_, r) = run("local h = msg:get_all_headers()\n\
         assert(#h == 7, #h)\n\
         assert(h[1][1] == 'From' and h[1][2] == '\"Alice A.\" <alice@example.com>', h[1][2])\n\
         assert(h[3][1] == 'Subject' and h[3][2] == 'café', h[3][2])");
    r.unwrap();
}

#[test]
fn named_header_values_first_and_all() {
    let (_, r) = run("local all = msg:get_all_named_header_values('x-mailer')\n\
         assert(#all == 2 and all[1] == 'foobar' and all[2] == 'second')\n\
         assert(#msg:get_all_named_header_values('Nope') == 0)\n\
         assert(msg:get_first_named_header_value('subject') == 'café')\n\
         assert(msg:get_first_named_header_value('Nope') == nil)");
    r.unwrap();
}

#[test]
fn from_header_gives_the_single_mailbox() {
    let (_, r) = run("local f = msg:from_header()\n\
         assert(f.email == 'alice@example.com' and f.user == 'alice' and f.domain == 'example.com')\n\
         assert(f.name == 'Alice A.', f.name)\n\
         assert(tostring(f) == '[{\"name\":\"Alice A.\",\"address\":\"alice@example.com\"}]', tostring(f))");
    r.unwrap();
}

#[test]
fn to_header_with_two_mailboxes_needs_list() {
    let (_, r) = run("local t = msg:to_header()\n\
         assert(#t.list == 2 and t.list[1].email == 'bob@example.net' and t.list[1].name == nil)\n\
         assert(t.list[2].name == 'Carol' and t.list[2].domain == 'example.org')\n\
         local ok, err = pcall(function() return t.email end)\n\
         assert(not ok and tostring(err):find('2 addresses'), tostring(err))");
    r.unwrap();
}

#[test]
fn get_address_header_flattens_groups_and_is_nil_when_absent() {
    let (_, r) = run("local r = msg:get_address_header('reply-to')\n\
         assert(#r.list == 2 and r.list[2].email == 'r2@example.com')\n\
         assert(msg:get_address_header('Cc') == nil)");
    r.unwrap();
}

#[test]
fn set_recipient_and_recipient_on_a_single_recipient_message() {
    let (msg, r) = run("assert(tostring(msg:recipient()) == 'rcpt@example.net')\n\
         msg:set_recipient('other@example.org')\n\
         assert(msg:recipient().domain == 'example.org' and msg:recipient().user == 'other')");
    r.unwrap();
    assert_eq!(msg.recipients, ["other@example.org"]);
}

#[test]
fn memoize_calls_the_function_once_per_distinct_arguments() {
    let (msg, r) = run("local calls = 0\n\
         local lookup = kumo.memoize(function(a, b) calls = calls + 1 return a .. b, { n = calls } end,\n\
           { name = 'tests_message_api', ttl = '5 minutes', capacity = 10 })\n\
         local x, t = lookup('a', 'b')\n\
         local y = lookup('a', 'b')\n\
         lookup('a', 'c')\n\
         assert(x == 'ab' and y == 'ab' and t.n == 1)\n\
         msg:set_meta('calls', calls)");
    r.unwrap();
    assert_eq!(msg.get_meta("calls"), Some(&serde_json::json!(2)));
    let (_, r) = run("kumo.memoize(function() end, { name = 'x', ttl = '1s' })");
    assert!(format!("{r:?}").contains("capacity is required"), "{r:?}");
}

#[test]
fn secrets_load_from_key_data_and_file_and_a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw.txt");
    std::fs::write(&path, "tiger").unwrap();
    let missing = dir.path().join("missing.txt");
    let (_, r) = run(&format!(
        "assert(kumo.secrets.load {{ key_data = 'scott' }} == 'scott')\n\
         assert(kumo.secrets.load('{p}') == 'tiger')\n\
         assert(kumo.secrets.load {{ file = '{p}' }} == 'tiger')\n\
         kumo.secrets.load('{m}')",
        p = path.display(),
        m = missing.display()
    ));
    let Err(PolicyError::Lua(text)) = r else { panic!("a missing file must fail: {r:?}") };
    assert!(text.contains(&missing.display().to_string()) && text.contains("test.lua:5"), "{text}");
}

#[test]
fn dkim_sign_from_policy_with_two_signers_both_verify() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = make_key(dir.path(), KeyKind::RsaSha256, true);
    let ed = make_key(dir.path(), KeyKind::Ed25519, false);
    let records = KeyRecords::default();
    records.publish("example.com", "rsa", &rsa);
    records.publish("esp.example", "ed", &ed);
    let (msg, r) = run(&format!(
        "msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{ domain = msg:from_header().domain, selector = 'rsa',\n\
           headers = {{ 'From', 'To', 'Subject' }}, key = '{}' }})\n\
         msg:dkim_sign(kumo.dkim.ed25519_signer {{ domain = 'esp.example', selector = 'ed',\n\
           headers = {{ 'From', 'Subject' }}, key = {{ key_data = [[{}]] }}, over_sign = true,\n\
           header_canonicalization = 'Simple', expiration = 3600 }})",
        rsa.path.display(),
        std::fs::read_to_string(&ed.path).unwrap()
    ));
    r.unwrap();
    let text = data(&msg);
    assert!(text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256"), "{text}");
    assert_eq!(text.matches("DKIM-Signature:").count(), 2);
    assert_eq!(verify(&msg.data, &records), [mail_auth::DkimResult::Pass, mail_auth::DkimResult::Pass]);
}

#[test]
fn a_missing_dkim_key_fails_the_event_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-key.pem");
    let (msg, r) = run(&format!(
        "msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{ domain = 'example.com', selector = 's',\n\
           headers = {{ 'From' }}, key = '{}' }})",
        missing.display()
    ));
    let Err(PolicyError::Lua(text)) = r else { panic!("expected a Lua error: {r:?}") };
    assert!(text.contains(&missing.display().to_string()) && text.contains("rsa_sha256_signer"), "{text}");
    assert!(!data(&msg).contains("DKIM-Signature"));
}

#[test]
fn signer_parameters_are_checked() {
    let (_, r) = run(
        "kumo.dkim.ed25519_signer { domain = 'x', selector = 's', headers = { 'From' }, key = { key_data = 'k' }, colour = 'red' }",
    );
    assert!(format!("{r:?}").contains("unknown parameter \\\"colour\\\""), "{r:?}");
    let (_, r) = run(
        "kumo.dkim.ed25519_signer { domain = 'x', selector = 's', headers = { 'From' }, key = { key_data = 'k' }, body_canonicalization = 'loose' }",
    );
    assert!(format!("{r:?}").contains("body_canonicalization"), "{r:?}");
    let (_, r) = run(
        "kumo.dkim.ed25519_signer { domain = 'x', selector = 's', headers = { 'From' }, key = { key_data = 'not a key' } }",
    );
    let text = format!("{r:?}");
    assert!(
        text.contains("key_data is not a usable ed25519 private key") && !text.contains("not a key:"),
        "{text}"
    );
}
