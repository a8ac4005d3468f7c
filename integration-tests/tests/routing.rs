//! Correct routing (issue #13 item 1): a transaction becomes one message per recipient domain
//! (or per recipient), so each domain's MX gets only its own recipients.

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_ids;
use ferry_integration_tests::{FerryNode, RawSmtp};

/// A policy that sends each of the three domains to its own sink.
fn three_domain_policy(sinks: &[SmtpSink; 3]) -> String {
    format!(
        r#"
local ports = {{ ['x.example'] = {}, ['y.example'] = {}, ['z.example'] = {} }}
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:' .. ports[domain] }} }} }} }}
end)
"#,
        sinks[0].port(),
        sinks[1].port(),
        sinks[2].port()
    )
}

const RCPTS: [&str; 5] = ["a@x.example", "b@Y.example", "c@x.example", "d@z.example", "e@y.example"];

#[test]
fn each_domain_gets_its_own_message_and_only_its_recipients() {
    let sinks = [SmtpSink::start(), SmtpSink::start(), SmtpSink::start()];
    let node = FerryNode::start("", Some(&three_domain_policy(&sinks)));
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("s@example.com", &RCPTS, "Subject: three domains\r\n\r\nhello\r\n");
    assert_eq!(r.code, 250, "{r:?}");
    let ids = queued_ids(&r);
    assert_eq!(ids.len(), 3, "one message per domain: {r:?}");
    // Each id has its own Reception and Delivery, in its own queue.
    let mut queues = Vec::new();
    for id in &ids {
        let records = node.wait_sequence(id, &["Reception", "Delivery"]);
        queues.push(records[0]["queue"].as_str().unwrap().to_string());
    }
    assert_eq!(queues, ["x.example", "y.example", "z.example"]);
    let got: Vec<Vec<String>> = sinks
        .iter()
        .map(|s| {
            let m = s.wait_messages(1);
            assert_eq!(m.len(), 1);
            m[0].rcpt_to.clone()
        })
        .collect();
    assert_eq!(
        got,
        [vec!["a@x.example", "c@x.example"], vec!["b@Y.example", "e@y.example"], vec!["d@z.example"]]
    );
    // Each part carries the body and its own Received header, naming its own id.
    for (sink, id) in sinks.iter().zip(&ids) {
        let data = &sink.messages()[0].data;
        assert!(data.contains(&format!("id {id}")) && data.ends_with("hello\r\n"), "{data}");
    }
}

#[test]
fn bifurcate_always_gives_one_message_per_recipient() {
    let sinks = [SmtpSink::start(), SmtpSink::start(), SmtpSink::start()];
    let node = FerryNode::start(
        "[smtp]\nbatch_handling = \"BifurcateAlways\"\n",
        Some(&three_domain_policy(&sinks)),
    );
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("s@example.com", &RCPTS, "Subject: five\r\n\r\nhello\r\n");
    let ids = queued_ids(&r);
    assert_eq!(ids.len(), 5, "{r:?}");
    let counts: Vec<usize> = sinks.iter().zip([2, 2, 1]).map(|(s, n)| s.wait_messages(n).len()).collect();
    assert_eq!(counts, [2, 2, 1]);
    assert!(sinks.iter().flat_map(|s| s.messages()).all(|m| m.rcpt_to.len() == 1));
    assert_eq!(node.wait_records("Reception", 5).len(), 5);
}

#[test]
fn a_policy_refusal_of_one_part_refuses_the_transaction_and_spools_nothing() {
    let policy = "kumo.on('smtp_server_message_received', function(msg)\n  if msg:recipient().domain == 'z.example' then kumo.reject(550, '5.7.1 not for z') end\nend)";
    let node = FerryNode::start("", Some(policy));
    let mut c = RawSmtp::connect(node.smtp);
    let r = c.send_message("s@example.com", &RCPTS, "Subject: x\r\n\r\nx\r\n");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(node.spool_ids().is_empty());
    assert!(!node.records().iter().any(|r| r["type"] == "Reception"));
}
