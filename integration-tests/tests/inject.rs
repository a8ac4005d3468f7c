//! HTTP injection (issue #15 item 2): `POST /api/inject/v1` with KumoMTA's body, against a real
//! node delivering to a real sink. The oracles are what arrives at the sink (parsed back with
//! mail-parser), the node's log records and its spool.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use ferry_integration_tests::FerryNode;
use ferry_integration_tests::dkim::{dkimpy_verdicts_each, make_key};
use ferry_integration_tests::http::post;
use ferry_integration_tests::sink::SmtpSink;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};

/// Every domain goes to `sink`.
fn route_to(sink: &SmtpSink) -> String {
    format!(
        "kumo.on('get_queue_config', function(domain)\n  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}\nend)\n",
        sink.port()
    )
}

fn inject(node: &FerryNode, body: &Value) -> (u16, Value) {
    let (status, text) = post(
        node.http,
        "/api/inject/v1",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    (status, serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })))
}

fn parse(data: &str) -> mail_parser::Message<'_> {
    MessageParser::default().parse(data.as_bytes()).expect("the delivered message parses")
}

#[test]
fn a_hundred_recipients_each_get_their_own_rendering_dkim_signed() {
    let sink = SmtpSink::start();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = make_key(keys.path(), "ed25519", &["genpkey", "-algorithm", "ed25519"]);
    // The injection event signs, as smtp_server_message_received would.
    let signing = format!(
        "kumo.on('http_message_generated', function(msg)\n  msg:dkim_sign(kumo.dkim.ed25519_signer {{ domain = 'sender.example', selector = 'news', headers = {{ 'From', 'To', 'Subject' }}, key = '{}' }})\nend)\n",
        key.display()
    );
    let node = FerryNode::start("", Some(&format!("{}{signing}", route_to(&sink))));
    let recipients: Vec<Value> = (0..100)
        .map(|n| json!({"email": format!("r{n}@example.com"), "name": format!("Reader {n}"), "substitutions": {"code": format!("C-{n:03}")}}))
        .collect();
    let body = json!({
        "envelope_sender": "bulk@sender.example",
        "recipients": recipients,
        "substitutions": {"brand": "Ferry"},
        "content": {
            "from": {"email": "news@sender.example", "name": "News"},
            "subject": "{{ brand }} code for {{ name }}: {{ code }}",
            "text_body": "Hello {{ name }}, your code is {{ code }}.",
            "html_body": "<p>Hello <b>{{ name }}</b>, your code is <i>{{ code }}</i> ({{ email }}).</p>",
        },
    });
    let (status, answer) = inject(&node, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"success_count": 100, "fail_count": 0, "failed_recipients": [], "errors": []}));

    let delivered = sink.wait_messages(100);
    assert_eq!(delivered.len(), 100);
    let mut seen = HashMap::new();
    for m in &delivered {
        assert_eq!(m.rcpt_to.len(), 1, "one recipient per message");
        assert_eq!(m.mail_from, "bulk@sender.example");
        let rcpt = &m.rcpt_to[0];
        let n: usize = rcpt.trim_start_matches('r').trim_end_matches("@example.com").parse().unwrap();
        let msg = parse(&m.data);
        assert_eq!(msg.subject(), Some(format!("Ferry code for Reader {n}: C-{n:03}").as_str()), "{rcpt}");
        assert_eq!(
            msg.body_html(0).as_deref(),
            Some(format!("<p>Hello <b>Reader {n}</b>, your code is <i>C-{n:03}</i> ({rcpt}).</p>").as_str())
        );
        assert_eq!(
            msg.body_text(0).as_deref(),
            Some(format!("Hello Reader {n}, your code is C-{n:03}.").as_str())
        );
        let to = msg.to().and_then(|a| a.first()).unwrap();
        assert_eq!((to.name(), to.address()), (Some(format!("Reader {n}").as_str()), Some(rcpt.as_str())));
        let message_id = msg.message_id().expect("a Message-ID").to_string();
        assert!(msg.date().is_some());
        assert!(seen.insert(n, message_id).is_none(), "{rcpt} delivered twice");
    }
    let ids: std::collections::HashSet<&String> = seen.values().collect();
    assert_eq!(ids.len(), 100, "each message has its own Message-ID");
    // Every rendering carries its own signature, which an independent verifier accepts.
    let texts: Vec<&str> = delivered.iter().map(|m| m.data.as_str()).collect();
    let verdicts = dkimpy_verdicts_each(&texts, &[("news._domainkey.sender.example", public.as_path())]);
    assert!(verdicts.iter().all(|v| v == &["PASS"]), "{verdicts:?}");
    let tampered = texts[0].replacen("your code is", "your code was", 1);
    assert_eq!(
        dkimpy_verdicts_each(&[&tampered], &[("news._domainkey.sender.example", public.as_path())]),
        [["FAIL"]]
    );

    // One Reception record per message, marked as HTTP, naming the injecting peer.
    let receptions = node.wait_records("Reception", 100);
    assert_eq!(receptions.len(), 100);
    for r in &receptions {
        assert_eq!(r["reception_protocol"], "HTTP", "{r}");
        assert_eq!(r["peer_address"]["addr"], "127.0.0.1", "{r}");
        assert_eq!(r["queue"], "example.com");
    }
}

#[test]
fn the_structured_form_with_attachments_parses_back_into_the_same_parts() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&route_to(&sink)));
    let pdf = b"%PDF-1.4 not really a pdf \x00\x01\x02\xff";
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,";
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let body = json!({
        "envelope_sender": "s@sender.example",
        "recipients": [{"email": "a@example.com", "name": "Ann"}],
        "content": {
            "subject": "Invoice",
            "from": {"email": "billing@sender.example", "name": "Billing"},
            "reply_to": {"email": "help@sender.example"},
            "headers": {"X-Campaign": "invoices-{{ email }}"},
            "text_body": "See the attachment.",
            "html_body": "<p>See the attachment.</p><img src=\"cid:logo@sender\">",
            "attachments": [
                {"data": b64(pdf), "base64": true, "content_type": "application/pdf", "file_name": "invoice.pdf"},
                {"data": b64(gif), "base64": true, "content_type": "image/gif", "content_id": "logo@sender", "file_name": "logo.gif"},
                {"data": "plain notes", "content_type": "text/plain", "file_name": "notes.txt"},
            ],
        },
    });
    let (status, answer) = inject(&node, &body);
    assert_eq!((status, &answer["success_count"]), (200, &json!(1)), "{answer}");
    let m = &sink.wait_messages(1)[0];
    let msg = parse(&m.data);
    assert_eq!(msg.subject(), Some("Invoice"));
    assert_eq!(msg.from().and_then(|a| a.first()).and_then(|a| a.name()), Some("Billing"));
    assert_eq!(msg.reply_to().and_then(|a| a.first()).and_then(|a| a.address()), Some("help@sender.example"));
    assert_eq!(msg.header("X-Campaign").and_then(|h| h.as_text()), Some("invoices-a@example.com"));
    assert_eq!(msg.body_text(0).as_deref(), Some("See the attachment."));
    assert!(msg.body_html(0).unwrap().contains("cid:logo@sender"));
    let ct = msg.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));
    let named = |name: &str| {
        msg.parts.iter().find(|p| p.attachment_name() == Some(name)).unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(named("invoice.pdf").contents(), pdf);
    assert_eq!(named("invoice.pdf").content_type().unwrap().subtype(), Some("pdf"));
    assert_eq!(named("notes.txt").contents(), b"plain notes");
    let logo = msg.parts.iter().find(|p| p.content_id() == Some("logo@sender")).expect("the inline image");
    assert_eq!(logo.contents(), gif);
    assert_eq!(logo.content_disposition().map(|d| d.ctype()), Some("inline"));
    // The inline image sits with the HTML in a multipart/related.
    assert!(msg.parts.iter().any(|p| p.content_type().is_some_and(|c| c.subtype() == Some("related"))));
}

/// A request refused whole: 400 naming what is wrong, no record, nothing in the spool.
fn assert_refused_whole(node: &FerryNode, body: Value, names: &[&str]) {
    let (status, answer) = inject(node, &body);
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    for name in names {
        assert!(error.contains(name), "{name:?} not named in {error:?}");
    }
}

#[test]
fn a_template_error_an_unknown_field_or_a_bad_address_refuses_the_whole_request() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&route_to(&sink)));
    let good = json!({"email": "ok@example.com"});
    let base = |recipients: Value, content: Value| json!({"envelope_sender": "s@sender.example", "recipients": recipients, "content": content});
    assert_refused_whole(
        &node,
        base(json!([good]), json!({"text_body": "fine", "html_body": "<p>{% if name %}unclosed</p>"})),
        &["content.html_body", "template"],
    );
    assert_refused_whole(
        &node,
        base(json!([good, {"email": "x@example.com", "nmae": "typo"}]), json!({"text_body": "t"})),
        &["recipients[1]", "nmae"],
    );
    assert_refused_whole(
        &node,
        base(json!([good]), json!({"text_body": "t", "colour": "red"})),
        &["content", "colour"],
    );
    assert_refused_whole(
        &node,
        base(json!([good, {"email": "no-at-sign.example.com"}]), json!("Subject: x\r\n\r\nbody")),
        &["recipients[1].email", "no-at-sign.example.com"],
    );
    assert_refused_whole(
        &node,
        base(json!([good]), json!({"subject": "hi\r\nBcc: victim@example.com", "text_body": "t"})),
        &["content.subject"],
    );
    let (status, _) =
        post(node.http, "/api/inject/v1", &[("Content-Type", "application/json")], b"{\"envelope_sender\":");
    assert_eq!(status, 400);

    // Nothing of any of them was made: no record, nothing spooled, nothing delivered.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(node.records().iter().all(|r| r["type"] != "Reception"), "{:?}", node.records());
    assert!(node.spool_ids().is_empty());
    assert_eq!(sink.count(), 0);
}

#[test]
fn a_body_over_max_inject_size_gets_413() {
    let node = FerryNode::start("[http]\nmax_inject_size = \"1MiB\"\n", None);
    let big = "x".repeat(10 << 20);
    let body = json!({"envelope_sender": "s@sender.example", "recipients": [{"email": "a@example.com"}],
                      "content": {"text_body": big}});
    let (status, text) = post(
        node.http,
        "/api/inject/v1",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("http.max_inject_size"), "{text}");
    // A request under the limit is fine on the same node.
    let small = json!({"envelope_sender": "s@sender.example", "recipients": [{"email": "a@example.com"}],
                       "content": "Subject: small\r\n\r\nsmall\r\n"});
    assert_eq!(inject(&node, &small).0, 200);
}

#[test]
fn http_message_generated_can_change_a_message_and_reject_one_recipient() {
    let sink = SmtpSink::start();
    let policy = format!(
        "{}\nkumo.on('http_message_generated', function(msg, auth)\n  if msg:recipient().email == 'blocked@example.com' then kumo.reject(550, 'blocked by policy') end\n  msg:set_meta('campaign', 'spring')\n  msg:append_header('X-Injected', msg:get_meta('reception_protocol') .. ' ' .. auth.method)\nend)\n",
        route_to(&sink)
    );
    let node = FerryNode::start("[logs]\nmeta = [\"campaign\", \"http_auth\"]\n", Some(&policy));
    let body = json!({
        "envelope_sender": "s@sender.example",
        "recipients": [{"email": "one@example.com"}, {"email": "blocked@example.com"}, {"email": "two@example.com"}],
        "content": "Subject: hello {{ email }}\r\n\r\nhi\r\n",
    });
    let (status, answer) = inject(&node, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!((&answer["success_count"], &answer["fail_count"]), (&json!(2), &json!(1)), "{answer}");
    assert_eq!(answer["failed_recipients"], json!(["blocked@example.com"]));
    assert!(answer["errors"][0].as_str().unwrap().contains("blocked by policy"), "{answer}");

    let delivered = sink.wait_messages(2);
    let mut rcpts: Vec<&str> = delivered.iter().map(|m| m.rcpt_to[0].as_str()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["one@example.com", "two@example.com"]);
    for m in &delivered {
        let msg = parse(&m.data);
        assert_eq!(msg.header("X-Injected").and_then(|h| h.as_text()), Some("HTTP trusted_hosts"));
        assert_eq!(msg.subject(), Some(format!("hello {}", m.rcpt_to[0]).as_str()));
    }
    // The meta the handler set is the message's: the Reception record carries it (the campaign is
    // also part of the queue name).
    let receptions = node.wait_records("Reception", 2);
    for r in &receptions {
        assert_eq!(r["meta"]["campaign"], "spring", "{r}");
        assert_eq!(r["meta"]["http_auth"], "trusted_hosts", "{r}");
        assert_eq!(r["queue"], "spring:@example.com", "{r}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.records().iter().filter(|r| r["type"] == "Reception").count(), 2);
}

const TOKEN: &str = "inject-token-0123456789";

#[test]
fn an_untrusted_caller_without_the_token_is_refused() {
    let sink = SmtpSink::start();
    let node = FerryNode::start(
        &format!("[http]\ntrusted_hosts = [\"192.0.2.0/24\"]\nbearer_token = \"{TOKEN}\"\n"),
        Some(&route_to(&sink)),
    );
    let body = json!({"envelope_sender": "s@sender.example", "recipients": [{"email": "a@example.com"}],
                      "content": "Subject: t\r\n\r\nt\r\n"})
    .to_string();
    let (status, text) =
        post(node.http, "/api/inject/v1", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(status, 403, "{text}");
    let bad = "Bearer wrong-token-0123456789";
    let (status, _) = post(
        node.http,
        "/api/inject/v1",
        &[("Content-Type", "application/json"), ("Authorization", bad)],
        body.as_bytes(),
    );
    assert_eq!(status, 403);
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.spool_ids().is_empty());

    let good = format!("Bearer {TOKEN}");
    let (status, text) = post(
        node.http,
        "/api/inject/v1",
        &[("Content-Type", "application/json"), ("Authorization", &good)],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(sink.wait_messages(1).len(), 1);
}

#[test]
fn ferry_inject_sends_a_built_or_a_raw_message() {
    let sink = SmtpSink::start();
    let node = FerryNode::start("", Some(&route_to(&sink)));
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("body.txt");
    std::fs::write(&text, "Hello {{ email }} from {{ team }}.\n").unwrap();
    let html = dir.path().join("body.html");
    std::fs::write(&html, "<p>Hello {{ email }}</p>\n").unwrap();
    let attachment = dir.path().join("report.csv");
    std::fs::write(&attachment, "a,b\n1,2\n").unwrap();
    let out = node.cli(&[
        "inject",
        "--from",
        "ops@sender.example",
        "--to",
        "x@example.com",
        "--to",
        "y@example.com",
        "--subject",
        "Report for {{ email }}",
        "--text-file",
        text.to_str().unwrap(),
        "--html-file",
        html.to_str().unwrap(),
        "--attach",
        &format!("{}:text/csv", attachment.display()),
        "--subst",
        "team=ops",
    ]);
    assert!(out.contains("injected 2 message(s), 0 failed"), "{out}");
    let delivered = sink.wait_messages(2);
    for m in &delivered {
        let msg = parse(&m.data);
        let rcpt = &m.rcpt_to[0];
        assert_eq!(msg.subject(), Some(format!("Report for {rcpt}").as_str()));
        assert_eq!(msg.body_text(0).as_deref(), Some(format!("Hello {rcpt} from ops.\r\n").as_str()));
        let csv =
            msg.attachments().find(|a| a.attachment_name() == Some("report.csv")).expect("the attachment");
        assert_eq!(csv.contents(), b"a,b\n1,2\n");
    }

    let eml = dir.path().join("msg.eml");
    std::fs::write(&eml, "From: ops@sender.example\nSubject: raw {{ email }}\n\nraw body\n").unwrap();
    let out = node.cli(&[
        "--json",
        "inject",
        "--from",
        "ops@sender.example",
        "--to",
        "z@example.com",
        "--raw-file",
        eml.to_str().unwrap(),
    ]);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["success_count"], 1, "{out}");
    let raw = sink.wait_messages(3).into_iter().find(|m| m.rcpt_to == ["z@example.com"]).unwrap();
    assert!(
        raw.data.contains("Subject: raw z@example.com\r\n") && raw.data.ends_with("\r\n\r\nraw body\r\n"),
        "{}",
        raw.data
    );

    // A refused request is an error exit with the node's reason.
    let failed = node.cli_output(&[
        "inject",
        "--from",
        "ops@sender.example",
        "--to",
        "not-an-address",
        "--raw-file",
        eml.to_str().unwrap(),
    ]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("recipients[0].email"));
}

#[test]
fn a_request_is_one_spool_write_and_a_render_failure_fails_only_its_recipient() {
    // Messages are held in their queues, so the only spool writes are the injection's.
    let policy = "kumo.on('http_message_generated', function(msg) msg:set_due('2099-01-01T00:00:00Z') end)\n";
    let node = FerryNode::start("[http]\nmax_inject_size = \"1MiB\"\n", Some(policy));
    let writes = || {
        let (_, text) = ferry_integration_tests::http::get(node.http, "/api/admin/actors/v1", &[]);
        serde_json::from_str::<Value>(&text).unwrap()["spool_writer"]["requests"].as_u64().unwrap()
    };
    let recipients: Vec<Value> = (0..20)
        .map(|n| match n {
            // Renders past max_inject_size.
            3 => json!({"email": "big@example.com", "substitutions": {"n": 2_000_000}}),
            // A substitution that would add a header.
            7 => json!({"email": "sneaky@example.com", "substitutions": {"tag": "x\r\nBcc: victim@example.com"}}),
            n => json!({"email": format!("r{n}@example.com")}),
        })
        .collect();
    let body = json!({
        "envelope_sender": "s@sender.example",
        "recipients": recipients,
        "substitutions": {"n": 1, "tag": "friend"},
        "content": {"subject": "Hi {{ tag }}", "text_body": "{{ 'x' * n }} ok"},
    });
    let before = writes();
    let (status, answer) = inject(&node, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!((&answer["success_count"], &answer["fail_count"]), (&json!(18), &json!(2)), "{answer}");
    assert_eq!(answer["failed_recipients"], json!(["big@example.com", "sneaky@example.com"]));
    let errors = answer["errors"].to_string();
    assert!(errors.contains("content.text_body") && errors.contains("content.subject"), "{errors}");
    assert_eq!(writes() - before, 1, "the 18 messages are one spool write");
    assert_eq!(node.spool_ids().len(), 18);
}
