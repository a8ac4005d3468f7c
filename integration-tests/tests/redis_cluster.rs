//! A cluster sharing its limits through a real Redis (issue #17 items 1-2): `redis.open` /
//! `conn:query` and `kumo.make_throttle` from Lua, an egress path's `max_message_rate` and
//! `connection_limit` shared by two nodes, a crashed node's connection slots coming back within
//! the lease time, and the fallback to each node's share while Redis is away.

use std::thread::sleep;
use std::time::{Duration, SystemTime};

use ferry_integration_tests::redis::RedisServer;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};

/// All mail to `sink` with `path` in `make_egress_path{...}`; with `redis`, throttles and limits
/// are shared through it (2 nodes; leases of 3 s renewed every second).
fn policy(sink: &SmtpSink, redis: Option<&RedisServer>, path: &str) -> String {
    let init = match redis {
        Some(r) => format!(
            "kumo.on('init', function()
  kumo.configure_redis_throttles {{ node = '{}', node_count = 2, lease_duration = '3s', lease_renew_interval = '1s' }}
end)",
            r.url()
        ),
        None => String::new(),
    };
    format!(
        r#"{init}
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ retry_interval = '1s', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ {path} }}
end)
"#,
        sink.port()
    )
}

/// `n` messages over one SMTP session.
fn send(node: &FerryNode, tag: &str, n: usize) {
    let mut c = RawSmtp::connect(node.smtp);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    for i in 0..n {
        let r =
            c.transaction("s@example.com", &[&format!("{tag}{i}@example.com")], "Subject: c\r\n\r\nx\r\n");
        assert_eq!(r.code, 250, "{r:?}");
    }
}

/// 100 messages into each of two nodes; the delivery rate the sink saw (messages per second from
/// the first arrival to the last).
fn delivery_rate(redis: Option<&RedisServer>) -> f64 {
    let sink = SmtpSink::start();
    let policy = policy(&sink, redis, "max_message_rate = '20/s'");
    let (a, b) = (FerryNode::start("", Some(&policy)), FerryNode::start("", Some(&policy)));
    std::thread::scope(|s| {
        s.spawn(|| send(&a, "a", 100));
        s.spawn(|| send(&b, "b", 100));
    });
    sink.wait_messages(200);
    let times = sink.arrival_times();
    let span = times[times.len() - 1].duration_since(times[0]).unwrap().as_secs_f64();
    199.0 / span
}

#[test]
fn a_shared_max_message_rate_holds_across_two_nodes() {
    let redis = RedisServer::start();
    let shared = delivery_rate(Some(&redis));
    // 199 intervals of 50 ms: 9.95 s. Tolerance 10 %: file times and the first cells' timing.
    assert!(shared <= 22.0, "shared 20/s over two nodes, the sink saw {shared:.1}/s");
    assert!(redis.info("commandstats").contains("cmdstat_evalsha"), "the nodes asked Redis");
    // The same two nodes without Redis: each allows 20/s, so together about 40/s.
    let local = delivery_rate(None);
    eprintln!("sink saw {shared:.1}/s shared through Redis, {local:.1}/s with local throttles");
    assert!(local >= 30.0, "local throttles on two nodes, the sink saw {local:.1}/s");
}

#[test]
fn a_shared_connection_limit_holds_and_a_crashed_nodes_slots_come_back_within_the_lease() {
    let redis = RedisServer::start();
    let sink = SmtpSink::start();
    // Idle connections stay open (and keep their lease) for a minute; the rate makes a backlog,
    // so a node opens every connection it may.
    let policy =
        policy(&sink, Some(&redis), "connection_limit = 3, idle_timeout = '1min', max_message_rate = '30/s'");
    let mut a = FerryNode::start("", Some(&policy));
    let b = FerryNode::start("", Some(&policy));
    send(&a, "a", 60);
    sink.wait_messages(60);
    wait_until("node A to hold all 3 slots", Duration::from_secs(10), || {
        (sink.open_connections() == 3).then_some(())
    });

    // B has mail but the cluster's 3 slots are A's (idle, still renewed).
    send(&b, "b", 60);
    sleep(Duration::from_secs(2));
    assert_eq!(sink.count(), 60, "B delivered while A held every slot");

    // A dies without releasing: its leases run out (3 s) and B takes all 3.
    let killed = SystemTime::now();
    a.kill9();
    sink.wait_messages(120);
    let took = killed.elapsed().unwrap();
    assert!(took < Duration::from_secs(8), "B got the slots {took:?} after A died (lease 3 s)");
    wait_until("B to use all 3 slots", Duration::from_secs(10), || {
        (sink.open_connections() == 3).then_some(())
    });
    assert!(sink.max_open_connections() <= 3, "never more than 3 at once: {}", sink.max_open_connections());
}

#[test]
fn redis_going_away_falls_back_to_local_shares_and_sharing_resumes_when_it_returns() {
    let mut redis = RedisServer::start();
    let sink = SmtpSink::start();
    let policy = policy(&sink, Some(&redis), "max_message_rate = '20/s'");
    let (a, b) = (FerryNode::start("", Some(&policy)), FerryNode::start("", Some(&policy)));
    std::thread::scope(|s| {
        s.spawn(|| send(&a, "a", 100));
        s.spawn(|| send(&b, "b", 100));
    });
    wait_until("deliveries to start", Duration::from_secs(10), || (sink.count() >= 20).then_some(()));
    redis.stop();
    let at_stop = sink.count();
    sleep(Duration::from_secs(3));
    let during = sink.count() - at_stop;
    // Each node keeps its share (10/s): together about 20/s, and certainly still moving.
    assert!((20..=80).contains(&during), "{during} messages in 3 s without Redis");
    redis.resume();
    for node in [&a, &b] {
        wait_until("the node to say Redis is back", Duration::from_secs(15), || {
            node.stderr().contains("Redis is back").then_some(())
        });
        assert!(node.stderr().contains("Redis unreachable"), "{}", node.stderr());
    }
    sink.wait_messages(200);
    assert_eq!(sink.count(), 200, "no message lost or doubled");
    let before = redis.info("commandstats");
    assert!(
        before.contains("cmdstat_evalsha") || before.contains("cmdstat_eval"),
        "sharing resumed: {before}"
    );
}

#[test]
fn lua_redis_open_query_and_make_throttle() {
    let redis = RedisServer::start();
    let sink = SmtpSink::start();
    let init = format!(
        r#"
kumo.on('init', function()
  local conn = redis.open {{ node = '{url}', pool_size = 4, connect_timeout = '2s' }}
  assert(require('redis') == redis)
  assert(conn:query('SET', 'k', 'v') == 'OK')
  assert(conn:query('GET', 'k') == 'v')
  assert(conn:query('GET', 'missing') == nil)
  assert(conn:query('INCRBY', 'n', 2) == 2)
  assert(conn:query('RPUSH', 'list', 'a', 'b', 3) == 3)
  local list = conn:query('LRANGE', 'list', 0, -1)
  assert(#list == 3 and list[1] == 'a' and list[3] == '3')
  local ok, err = pcall(function() return conn:query('INCR', 'k') end)
  assert(not ok and tostring(err):find('not an integer'), tostring(err))

  -- Local throttles (nothing shared yet): 2/m lets two through, then says when to retry.
  local t = kumo.make_throttle('lua-local', '2/m')
  local first = t:throttle()
  assert(not first.throttled and first.limit == 2 and first.remaining == 1 and first.retry_after == nil)
  assert(not t:throttle().throttled)
  local third = t:throttle()
  assert(third.throttled and third.retry_after.seconds > 25, third.retry_after.seconds)
  local spaced = kumo.make_throttle('lua-spaced', '10/s,max_burst=1')
  assert(spaced:sleep_if_throttled() == false)
  assert(spaced:sleep_if_throttled() == true)
  assert(conn:query('EXISTS', 'ferry:throttle:lua-local') == 0, 'a local throttle stays local')

  -- Shared: the same calls now count in Redis, except a local: one.
  kumo.configure_redis_throttles {{ node = '{url}' }}
  local s = kumo.make_throttle('lua-shared', '2/m')
  assert(not s:throttle().throttled)
  assert(not s:throttle().throttled)
  assert(s:throttle().throttled)
  assert(conn:query('EXISTS', 'ferry:throttle:lua-shared') == 1)
  assert(not kumo.make_throttle('lua-kept-local', 'local:1/m'):throttle().throttled)
  assert(conn:query('EXISTS', 'ferry:throttle:lua-kept-local') == 0)
  conn:query('SET', 'init-done', 'yes')
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{port}' }} }} }} }}
end)
"#,
        url = redis.url(),
        port = sink.port()
    );
    let node = FerryNode::start("", Some(&init));
    assert_eq!(redis.command(&["GET", "init-done"]).unwrap(), "$3", "{}", node.stderr());
    assert_eq!(redis.integer(&["INCRBY", "n", "0"]), 2);
}
