//! Ferry's batch transfer form (docs/xfer-protocol.md), the fallback to single-message requests,
//! `ferry xfer --wait`, the shared bearer token, and AdminRebind records asked for outside
//! `requeue_message`.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use ferry_integration_tests::http::{get, post};
use ferry_integration_tests::peer::StubPeer;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::{Value, json};

const LOGS: &str = "[logs]\nmeta = [\"*\"]\n";
const SOURCE_NODE: &str = "557f3ad4-2c8c-11ee-976e-782d7e12e173";
const TOKEN: &str = "s3cret-token-for-tests-0123456789";

/// Every queue delivers to a loopback port where nothing listens: messages wait after one TF.
const DEAD_MX: &str = r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '[127.0.0.1]:1' } } } }
end)
"#;

fn maildir_policy(dir: &std::path::Path) -> String {
    format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ protocol = {{ maildir_path = '{}' }} }} end)",
        dir.display()
    )
}

/// A node holding `n` messages for example.com, each waiting after one failed attempt.
fn holding(n: usize, extra: &str) -> (FerryNode, Vec<String>) {
    let node = FerryNode::start(&format!("{LOGS}{extra}"), Some(DEAD_MX));
    let mut c = RawSmtp::connect(node.smtp);
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let body = format!("Subject: {i}\r\n\r\nbody\r\n");
            queued_id(&c.send_message("sender@example.com", &["rcpt@example.com"], &body))
        })
        .collect();
    let held = ferry_integration_tests::wait::try_wait_until(Duration::from_secs(20), || {
        let tf = node.records().iter().filter(|r| r["type"] == "TransientFailure").count();
        (tf >= n).then_some(())
    });
    if held.is_none() {
        let kinds: Vec<String> =
            node.records().iter().map(|r| format!("{} {}", r["type"], r["id"])).collect();
        panic!("{n} messages did not all fail once: {kinds:#?}\n{}", node.stderr());
    }
    (node, ids)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// One framed batch item: JSON line with `size`, then the bytes.
fn item(id: &str, prior_node: &str, data: &str) -> Vec<u8> {
    let line = json!({"id": id, "sender": "s@example.com", "recipient": ["r@example.com"],
        "meta": {"xfer_prior_id": id, "xfer_prior_node": prior_node}, "size": data.len()});
    format!("{line}\n{data}").into_bytes()
}

fn inject_batch(node: &FerryNode, body: &[u8], extra: &[(&str, &str)]) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/x-ferry-xfer-batch"), ("Content-Encoding", "gzip")];
    headers.extend_from_slice(extra);
    let (status, text) = post(node.http, "/api/xfer/inject-batch/v1", &headers, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn the_batch_endpoint_answers_each_message_and_refuses_bad_framing_whole() {
    let maildir = tempfile::tempdir().unwrap();
    let node = FerryNode::start(LOGS, Some(&maildir_policy(maildir.path())));
    let (one, two) = ("1d98076abbbc11ed940250ebf67f93bd", "2d98076abbbc11ed940250ebf67f93bd");
    let body = gzip(
        &[
            item(one, SOURCE_NODE, "Subject: one\r\n\r\n1\r\n"),
            item("3d98076abbbc11ed940250ebf67f93bd", &node.nodeid, "Subject: loop\r\n\r\nx\r\n"),
            item(one, SOURCE_NODE, "Subject: one\r\n\r\n1\r\n"),
            item(two, SOURCE_NODE, "Subject: two\r\n\r\n2\r\n"),
        ]
        .concat(),
    );
    let (status, reply) = inject_batch(&node, &body, &[]);
    assert_eq!(status, 200, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "one answer per message, in order: {reply}");
    let first = results[0]["id"].as_str().unwrap();
    assert_eq!(results[1]["status"], 400);
    assert!(results[1]["error"].as_str().unwrap().contains("cannot xfer to myself"), "{reply}");
    assert_eq!(results[2]["id"], first, "a message repeated in one batch is stored once");
    let second = results[3]["id"].as_str().unwrap();
    assert_ne!(first, second);
    let xferin = node.wait_records("XferIn", 2);
    assert_eq!(xferin.len(), 2);

    // The same batch again (the sender timed out): the same ids, nothing new stored.
    let (status, again) = inject_batch(&node, &body, &[]);
    assert_eq!(status, 200);
    assert_eq!(again["results"][0]["id"], first);
    assert_eq!(again["results"][3]["id"], second);

    // Bad framing anywhere refuses the whole request, and nothing of it is stored.
    let fresh = "4d98076abbbc11ed940250ebf67f93bd";
    let mut short =
        [item(fresh, SOURCE_NODE, "Subject: ok\r\n\r\nfine\r\n"), item(two, SOURCE_NODE, "abc")].concat();
    short.truncate(short.len() - 2);
    let (status, reply) = inject_batch(&node, &gzip(&short), &[]);
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("message 2 of the batch"), "{reply}");
    let no_size = format!("{}\nbody", json!({"id": fresh, "sender": "s@x", "recipient": ["r@x"]}));
    let (status, reply) = inject_batch(&node, &gzip(no_size.as_bytes()), &[]);
    assert_eq!(
        (status, reply["error"].as_str().unwrap().contains("size is missing")),
        (400, true),
        "{reply}"
    );
    let (status, _) = inject_batch(&node, b"not gzip at all", &[]);
    assert_eq!(status, 400);
    let (status, reply) = post(
        node.http,
        "/api/xfer/inject-batch/v1",
        &[("Content-Type", "application/octet-stream"), ("Content-Encoding", "gzip")],
        &body,
    );
    assert_eq!(status, 415, "the single form's content type is not a batch: {reply}");
    let delivered = wait_until("two deliveries", Duration::from_secs(20), || {
        let n = node.records().iter().filter(|r| r["type"] == "Delivery").count();
        (n >= 2).then_some(n)
    });
    assert_eq!(delivered, 2);
    assert_eq!(node.records().iter().filter(|r| r["type"] == "XferIn").count(), 2, "nothing else was stored");
}

#[test]
fn a_peer_that_takes_batches_gets_them_and_one_that_does_not_gets_single_requests() {
    for batch in [true, false] {
        let peer = StubPeer::start(batch);
        let (a, ids) = holding(6, "");
        a.cli(&["xfer", "--domain", "example.com", "--reason", "drain", "--target", &peer.url()]);
        a.wait_records("XferOut", ids.len());
        let requests = peer.requests();
        let carried =
            |path: &str| -> usize { requests.iter().filter(|r| r.path == path).map(|r| r.messages).sum() };
        if batch {
            assert_eq!(carried("/api/xfer/inject-batch/v1"), 6, "{requests:?}");
            assert!(requests.iter().all(|r| r.path == "/api/xfer/inject-batch/v1"), "{requests:?}");
        } else {
            assert_eq!(carried("/api/xfer/inject/v1"), 6, "{requests:?}");
            let probes = requests.iter().filter(|r| r.path == "/api/xfer/inject-batch/v1").count();
            assert_eq!(probes, 1, "one refused batch switches the peer to single requests: {requests:?}");
        }
        assert!(requests.iter().all(|r| r.authorization.is_none()), "no token configured, none sent");
        wait_until("the source spool to empty", Duration::from_secs(20), || {
            a.spool_ids().is_empty().then_some(())
        });
        assert_eq!(
            a.records().iter().filter(|r| r["type"] == "TransientFailure").count(),
            6,
            "no xfer failed"
        );
    }
}

#[test]
fn xfer_wait_follows_the_transfer_to_the_end() {
    let maildir = tempfile::tempdir().unwrap();
    let (a, ids) = holding(200, "");
    let b = FerryNode::start(LOGS, Some(&maildir_policy(maildir.path())));
    let target = format!("http://{}", b.http);
    let out = a.cli_output(&[
        "xfer",
        "--everything",
        "--reason",
        "drain",
        "--target",
        &target,
        "--wait",
        "--wait-timeout",
        "120s",
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("xfer to {target}: 200 of 200 messages moved")), "{stdout}");
    assert!(stdout.contains("0 left behind"), "{stdout}");
    // Without a terminal the progress is a line now and then, and always the last state.
    assert!(stderr.contains("xfer: 200/200 200 moved, 0 remaining, 0 failing, 0 left behind"), "{stderr}");
    assert_eq!(a.records().iter().filter(|r| r["type"] == "XferOut").count(), ids.len());
    // They keep their due time (a retry some minutes away), so they wait on B.
    assert_eq!(b.wait_records("XferIn", ids.len()).len(), ids.len());
}

#[test]
fn xfer_wait_exits_non_zero_when_messages_are_left_behind_or_time_runs_out() {
    let (a, _) = holding(3, "");
    // Nothing listens on port 1: every transfer fails and the messages wait in the xfer queue.
    let out = a.cli_output(&[
        "xfer",
        "--everything",
        "--reason",
        "r",
        "--target",
        "http://127.0.0.1:1",
        "--wait",
        "--wait-timeout",
        "2s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("gave up waiting after 2s: 3 of 3 messages are still on this node"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "the last error is shown: {stderr}");

    // Follow a second sweep (to another dead target) and cancel it under the follower's feet.
    let child = a
        .cli_command(&[
            "xfer",
            "--everything",
            "--reason",
            "r",
            "--target",
            "http://127.0.0.1:2",
            "--wait",
            "--wait-timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let xferq = "http://127.0.0.1:2/.xfer.kumomta.internal";
    wait_until("the sweep to capture 3 messages", Duration::from_secs(20), || {
        let (status, text) = get(a.http, "/api/admin/xfer/status/v1", &[]);
        let list: Value = serde_json::from_str(&text).ok()?;
        let sweep = list.as_array()?.iter().find(|s| s["xfer_queue"] == xferq)?.clone();
        (status == 200 && sweep["total"] == 3 && !sweep["sweeping"].as_bool()? && sweep["failing"] == 3)
            .then_some(())
    });
    a.cli(&["xfer-cancel", xferq, "--reason", "target retired"]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("3 messages were left behind"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 of 3 messages moved"));
}

#[test]
fn a_shared_bearer_token_admits_peers_and_operators_from_untrusted_addresses() {
    let maildir = tempfile::tempdir().unwrap();
    let token_section = format!("[http]\nbearer_token = \"{TOKEN}\"\n");
    // B trusts no address: only the token gets in.
    let b = FerryNode::start(
        &format!("{LOGS}[http]\ntrusted_hosts = [\"192.0.2.0/24\"]\nbearer_token = \"{TOKEN}\"\n"),
        Some(&maildir_policy(maildir.path())),
    );
    let (a, ids) = holding(2, &token_section);
    let target = format!("http://{}", b.http);

    // Nothing gets in without the token, or with a wrong one.
    let body = gzip(&item("1d98076abbbc11ed940250ebf67f93bd", SOURCE_NODE, "Subject: x\r\n\r\ny\r\n"));
    let (status, _) = inject_batch(&b, &body, &[]);
    assert_eq!(status, 401);
    let (status, _) = inject_batch(&b, &body, &[("Authorization", "Bearer wrong-token-0123456789")]);
    assert_eq!(status, 401);
    let denied = b.cli_output(&["suspend-list"]);
    assert!(String::from_utf8_lossy(&denied.stderr).contains("403"), "admin without the token is refused");
    let allowed = b.cli_output(&["--token", TOKEN, "suspend-list"]);
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    assert_eq!(b.records().iter().filter(|r| r["type"] == "XferIn").count(), 0, "nothing was stored");

    // A sends the token with its transfers.
    a.cli(&["xfer", "--domain", "example.com", "--reason", "drain", "--target", &target]);
    let arrived = b.wait_records("XferIn", ids.len());
    assert_eq!(arrived.len(), ids.len());
    assert!(arrived.iter().all(|r| r["meta"]["xfer_auth"] == "bearer_token"), "{arrived:?}");
    let peer = StubPeer::start(true);
    let (c, _) = holding(1, &token_section);
    c.cli(&["xfer", "--everything", "--reason", "r", "--target", &peer.url()]);
    c.wait_records("XferOut", 1);
    assert_eq!(peer.requests()[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
}

#[test]
fn kumo_xfer_xfer_at_reception_logs_the_admin_rebind_it_asks_for() {
    let maildir = tempfile::tempdir().unwrap();
    let b = FerryNode::start(LOGS, Some(&maildir_policy(maildir.path())));
    let policy = format!(
        "{DEAD_MX}\nkumo.on('smtp_server_message_received', function(msg)\n  kumo.xfer.xfer(msg, 'http://{}', 'straight to the backup tier')\nend)\n",
        b.http
    );
    let a = FerryNode::start(LOGS, Some(&policy));
    let mut c = RawSmtp::connect(a.smtp);
    let id = queued_id(&c.send_message("s@example.com", &["r@example.com"], "Subject: x\r\n\r\nbody\r\n"));
    let records = a.wait_sequence(&id, &["Reception", "AdminRebind", "XferOut"]);
    let xferq = format!("http://{}/.xfer.kumomta.internal", b.http);
    assert_eq!(
        records[1]["response"]["content"],
        format!("Rebound from example.com to {xferq}: straight to the backup tier")
    );
    assert_eq!(records[1]["queue"], xferq.as_str());
    b.wait_records("Delivery", 1);
}
