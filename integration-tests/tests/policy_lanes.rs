//! Policy lanes and recovery (issue #12 items 5 and 6): a runaway handler on the delivery path
//! cannot stall SMTP reception, and a queue whose config failed at start-up is retried at run time.

use std::time::{Duration, Instant};

use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};

fn body(n: usize) -> String {
    format!("Subject: lanes {n}\r\n\r\nbody\r\n")
}

/// Send `n` messages to `rcpt` on one connection; the time each took to be accepted.
fn timed_sends(node: &FerryNode, rcpt: &str, n: usize) -> Vec<Duration> {
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    (0..n)
        .map(|i| {
            let started = Instant::now();
            let r = c.transaction("sender@example.com", &[rcpt], &body(i));
            assert_eq!(r.code, 250, "message {i}: {r:?}");
            started.elapsed()
        })
        .collect()
}

fn p99(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[(times.len() * 99).div_ceil(100) - 1]
}

/// Runaway `requeue_message` handlers hold every delivery state (2) for handler_timeout (5 s);
/// 100 SMTP messages, each run through `smtp_server_message_received`, are still each accepted
/// well inside a second. Before the lanes, each waited behind the runaway handlers (~5 s).
#[test]
fn a_runaway_requeue_handler_does_not_stall_reception() {
    let sink = SmtpSink::start();
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('seen', true) end)
kumo.on('requeue_message', function(msg)
  kumo.log_warn('RUNAWAY-STARTED')
  while true do end
end)
"#,
        sink.port()
    );
    let node = FerryNode::start("[policy]\npool_size = 2\n", Some(&policy));
    // Four transient failures: two hold the delivery states, two wait in the delivery lane.
    let mut c = RawSmtp::connect(node.smtp);
    for i in 0..4 {
        let r = c.send_message("sender@example.com", &["tempfail@example.com"], &body(i));
        assert_eq!(r.code, 250, "{r:?}");
    }
    wait_until("both delivery states to be running a runaway handler", Duration::from_secs(20), || {
        (node.stderr().matches("RUNAWAY-STARTED").count() >= 2).then_some(())
    });
    let times = timed_sends(&node, "ok@example.com", 100);
    let stderr = node.stderr();
    assert!(
        stderr.matches("time limit").count() < 4,
        "the runaway handlers must still be holding the delivery lane while we sent:\n{stderr}"
    );
    let (p99, slowest) = (p99(times.clone()), times.iter().max().copied().unwrap());
    eprintln!("reception with runaway handlers: p99 {p99:?}, slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "slowest acceptance {slowest:?}");
    // Every runaway handler is interrupted (handler_timeout), and the 100 are delivered.
    wait_until("the four runaway handlers to be interrupted", Duration::from_secs(30), || {
        (node.stderr().matches("handler exceeded its time limit").count() >= 4).then_some(())
    });
    sink.wait_messages(100);
}

/// A runaway `get_queue_config` for one new domain holds the config lane for handler_timeout
/// (one state here), and the message that needs it is refused with a 451 once interrupted;
/// meanwhile messages for a queue that already exists are accepted at once.
#[test]
fn a_runaway_get_queue_config_does_not_stall_reception_for_existing_queues() {
    let sink = SmtpSink::start();
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'stuck.example' then
    kumo.log_warn('CONFIG-RUNAWAY-STARTED')
    while true do end
  end
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('seen', true) end)
"#,
        sink.port()
    );
    let node = FerryNode::start("[policy]\npool_size = 1\nhandler_timeout = \"4s\"\n", Some(&policy));
    // example.com's queue exists before the runaway starts.
    timed_sends(&node, "ok@example.com", 1);
    let smtp = node.smtp;
    let stuck = std::thread::spawn(move || {
        let mut c = RawSmtp::connect(smtp);
        let started = Instant::now();
        let r = c.send_message("sender@example.com", &["r@stuck.example"], &body(0));
        (r, started.elapsed())
    });
    wait_until("the runaway get_queue_config to start", Duration::from_secs(10), || {
        node.stderr().contains("CONFIG-RUNAWAY-STARTED").then_some(())
    });
    let times = timed_sends(&node, "ok@example.com", 20);
    let (r, waited) = stuck.join().unwrap();
    assert!(waited >= Duration::from_secs(3), "the stuck message waited {waited:?}; the test raced");
    let slowest = times.iter().max().copied().unwrap();
    assert!(slowest < Duration::from_secs(1), "slowest acceptance {slowest:?}");
    assert_eq!(r.code, 451, "the message whose queue has no config is refused: {r:?}");
    sink.wait_messages(21);
}

/// Item 6: `get_queue_config` reads where example.com goes from a file, or fails while the file
/// says `down`. Three messages are spooled (their first attempt at a dead port failed; retry in 2 s), the
/// node restarts while the config is down, so start-up cannot place them. Each retry (every
/// `queue_config_retry_interval` = 1 s) is logged once, for all three; once the file names the
/// sink, they are delivered without another restart, each exactly once, alongside a new arrival.
#[test]
fn a_get_queue_config_fixed_at_runtime_delivers_the_stranded_mail_without_a_restart() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let route = dir.path().join("route");
    std::fs::write(&route, "[127.0.0.1]:1").unwrap();
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local f = assert(io.open('{}'))
  local mx = f:read('l')
  f:close()
  if mx == 'down' then
    kumo.log_warn('CONFIG-DOWN ' .. domain)
    error('the config store is down')
  end
  return kumo.make_queue_config {{ retry_interval = '2s', protocol = {{ smtp = {{ mx_list = {{ mx }} }} }} }}
end)
"#,
        route.display()
    );
    let mut node = FerryNode::start(
        "[policy]
queue_config_retry_interval = \"1s\"\n",
        Some(&policy),
    );
    let mut c = RawSmtp::connect(node.smtp);
    let mut ids: Vec<String> = (0..3)
        .map(|i| {
            let r = c.send_message("sender@example.com", &["r@example.com"], &body(i));
            assert_eq!(r.code, 250, "{r:?}");
            queued_id(&r)
        })
        .collect();
    node.wait_records("TransientFailure", 3);
    node.stop();
    std::fs::write(&route, "down").unwrap();
    node.restart();
    wait_until("two runtime retries of the failed queue config", Duration::from_secs(20), || {
        let stderr = node.stderr();
        let retries: Vec<&str> =
            stderr.lines().filter(|l| l.contains("retrying get_queue_config for spooled messages")).collect();
        (retries.len() >= 2).then_some(retries.iter().map(|l| l.to_string()).collect::<Vec<_>>())
    })
    .iter()
    .for_each(|line| {
        assert!(line.contains("example.com") && line.contains("messages=3"), "one line per retry: {line}")
    });
    assert_eq!(sink.count(), 0);
    std::fs::write(&route, format!("[127.0.0.1]:{}", sink.port())).unwrap();
    // A new arrival races the retry for the queue's creation (refused while the failure is cached).
    let new = wait_until("a new message for example.com to be accepted", Duration::from_secs(10), || {
        let r = RawSmtp::connect(node.smtp).send_message("sender@example.com", &["r@example.com"], &body(9));
        (r.code == 250).then(|| queued_id(&r))
    });
    ids.push(new);
    sink.wait_messages(4);
    wait_until("the spool to be empty", Duration::from_secs(10), || {
        node.spool_ids().is_empty().then_some(())
    });
    let delivered: Vec<String> = node
        .records()
        .into_iter()
        .filter(|r| r["type"] == "Delivery")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = delivered.clone();
    sorted.sort();
    ids.sort();
    assert_eq!(sorted, ids, "each message is delivered exactly once");
    assert_eq!(sink.count(), 4);
}
