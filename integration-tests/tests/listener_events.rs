//! The per-command listener events KumoMTA policies use to vet a client as it talks:
//! `smtp_server_ehlo(domain, conn_meta)`, `smtp_server_mail_from(sender, conn_meta)` and
//! `smtp_server_rcpt_to(recipient, conn_meta)`; `kumo.reject` in a handler is the reply.

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp};

fn node(sink: &SmtpSink) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('smtp_server_ehlo', function(domain, conn_meta)
  if domain == 'bad.actor' then kumo.reject(420, 'go away') end
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if sender.domain == 'bad.domain' then kumo.reject(550, 'not from ' .. sender.domain) end
  if conn_meta.received_from == nil then error('conn_meta has no peer') end
end)
kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if recipient.user == 'nobody' then kumo.reject(550, '5.1.1 no mailbox for ' .. tostring(recipient)) end
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    );
    FerryNode::start("", Some(&policy))
}

#[test]
fn handlers_refuse_ehlo_mail_and_rcpt_and_let_the_rest_through() {
    let sink = SmtpSink::start();
    let node = node(&sink);
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.cmd("EHLO bad.actor");
    assert_eq!((r.code, r.text.contains("go away")), (420, true), "{r:?}");
    assert_eq!(c.cmd("EHLO good.client").code, 250);
    let r = c.cmd("MAIL FROM:<x@bad.domain>");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.contains("not from bad.domain"), "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<x@good.domain>").code, 250);
    let r = c.cmd("RCPT TO:<nobody@example.com>");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.contains("no mailbox for nobody@example.com"), "{r:?}");
    assert_eq!(c.cmd("RCPT TO:<somebody@example.com>").code, 250);
    assert_eq!(c.cmd("RSET").code, 250);
    let id =
        queued_id(&c.transaction("x@good.domain", &["somebody@example.com"], "Subject: ok\r\n\r\nx\r\n"));
    node.wait_sequence(&id, &["Reception", "Delivery"]);
    let rejections: Vec<_> = node.records().into_iter().filter(|r| r["type"] == "Rejection").collect();
    assert_eq!(rejections.len(), 2, "MAIL and RCPT refusals are logged: {rejections:?}");
    assert_eq!(sink.wait_messages(1)[0].rcpt_to, ["somebody@example.com"]);
}
