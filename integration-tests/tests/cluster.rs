//! Cluster-wide admin and the cluster view (issue 17, items 3 and 5): nodes sharing a real
//! `redis-server` apply each other's suspensions, ready-queue suspensions and bounces within a
//! second, a node that starts later picks up what was made before, every node lists the others,
//! and without `[cluster]` a directive stays on its node.

use std::time::{Duration, Instant};

use ferry_integration_tests::browser::dump_dom;
use ferry_integration_tests::http::get;
use ferry_integration_tests::redis::RedisServer;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// A node relaying everything to `sink`, retrying every second or two; in the cluster of
/// `redis` (a URL) when given.
fn node(sink: &SmtpSink, redis: Option<&str>) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ retry_interval = '1s', max_retry_interval = '2s', protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }}
end)
"#,
        sink.port()
    );
    let config = redis
        .map_or(String::new(), |url| format!("[cluster]\nredis = \"{url}\"\nheartbeat_interval = \"1s\"\n"));
    FerryNode::start(&config, Some(&policy))
}

fn send(node: &FerryNode, rcpt: &str) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: cluster\r\n\r\nbody\r\n"))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The id in a `--json` answer to suspend, bounce or suspend-ready-q.
fn made(node: &FerryNode, args: &[&str]) -> String {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    json(&node.cli(&all))["id"].as_str().unwrap().to_string()
}

/// `list` (a `--json` list command) on `node` shows directive `id`, within `within`.
fn wait_listed(node: &FerryNode, list: &str, id: &str, within: Duration) -> Value {
    wait_until(&format!("{list} shows {id}"), within, || {
        json(&node.cli(&["--json", list])).as_array()?.iter().find(|d| d["id"] == id).cloned()
    })
}

fn has(node: &FerryNode, id: &str, kind: &str) -> bool {
    node.records_for(id).iter().any(|r| r["type"] == kind)
}

const A_SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_suspension_made_on_one_node_holds_mail_on_the_other_and_a_cancel_there_releases_it() {
    let redis = RedisServer::start();
    let sink = SmtpSink::start();
    let (a, b) = (node(&sink, Some(&redis.url())), node(&sink, Some(&redis.url())));

    let sid =
        made(&a, &["suspend", "--domain", "example.com", "--reason", "maintenance", "--duration", "10m"]);
    let entry = wait_listed(&b, "suspend-list", &sid, A_SECOND);
    assert_eq!(entry["origin"]["node_id"], a.nodeid.as_str(), "B names A as its origin: {entry}");
    assert_eq!(entry["origin"]["node_url"], format!("http://{}", a.http), "{entry}");
    let table = b.cli(&["suspend-list"]);
    assert!(table.contains(&format!("http://{}", a.http)), "the table's ORIGIN column: {table}");

    let on_b = send(&b, "held@example.com");
    let on_a = send(&a, "held-too@example.com");
    let tf = b.wait_sequence(&on_b, &["Reception", "TransientFailure"]);
    assert!(tf[1]["response"]["content"].as_str().unwrap().contains("maintenance"), "{}", tf[1]);
    a.wait_sequence(&on_a, &["Reception", "TransientFailure"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!has(&b, &on_b, "Delivery") && sink.count() == 0, "nothing delivered while suspended");

    assert_eq!(b.cli(&["suspend-cancel", "--id", &sid]).trim(), format!("removed {sid}"));
    wait_until("A's suspension is cancelled", A_SECOND, || {
        (a.cli(&["suspend-list"]).trim() == "no active suspensions").then_some(())
    });
    wait_until("A delivers its held message", Duration::from_secs(10), || {
        has(&a, &on_a, "Delivery").then_some(())
    });
    wait_until("B delivers its held message", Duration::from_secs(10), || {
        has(&b, &on_b, "Delivery").then_some(())
    });
    assert_eq!(sink.wait_messages(2).len(), 2);
}

#[test]
fn a_ready_queue_suspension_and_an_admin_bounce_act_on_the_other_node() {
    let redis = RedisServer::start();
    let sink = SmtpSink::start();
    let (a, b) = (node(&sink, Some(&redis.url())), node(&sink, Some(&redis.url())));
    let rq = format!("unspecified->mx_list:[127.0.0.1]:{}@smtp_client", sink.port());

    let rid =
        made(&a, &["suspend-ready-q", "--name", &rq, "--reason", "postmaster block", "--duration", "10m"]);
    let entry = wait_listed(&b, "suspend-ready-q-list", &rid, A_SECOND);
    assert_eq!(entry["origin"]["node_id"], a.nodeid.as_str(), "{entry}");
    let held = send(&b, "held@example.com");
    let tf = b.wait_sequence(&held, &["Reception", "TransientFailure"]);
    assert!(
        tf[1]["response"]["content"].as_str().unwrap().contains("is suspended: postmaster block"),
        "{}",
        tf[1]
    );

    let bid =
        made(&b, &["bounce", "--domain", "bounce.example", "--reason", "spam run", "--duration", "10m"]);
    let entry = wait_listed(&a, "bounce-list", &bid, A_SECOND);
    assert_eq!(entry["origin"]["node_id"], b.nodeid.as_str(), "{entry}");
    let bounced = send(&a, "victim@bounce.example");
    a.wait_sequence(&bounced, &["Reception", "AdminBounce"]);

    assert_eq!(sink.count(), 0, "nothing left for the sink while the ready queue is suspended");
    b.cli(&["suspend-ready-q-cancel", "--id", &rid]);
    wait_until("B delivers once A's ready-queue suspension is cancelled", Duration::from_secs(10), || {
        has(&b, &held, "Delivery").then_some(())
    });
    wait_until("the cancel reached A", A_SECOND, || {
        (a.cli(&["suspend-ready-q-list"]).trim() == "no active ready-queue suspensions").then_some(())
    });
}

#[test]
fn a_node_started_later_applies_the_directives_made_before() {
    let redis = RedisServer::start();
    let sink = SmtpSink::start();
    let a = node(&sink, Some(&redis.url()));
    let sid =
        made(&a, &["suspend", "--domain", "example.com", "--reason", "before you came", "--duration", "10m"]);

    let b = node(&sink, Some(&redis.url()));
    let entry = wait_listed(&b, "suspend-list", &sid, Duration::from_secs(3));
    assert_eq!(entry["origin"]["node_id"], a.nodeid.as_str(), "{entry}");
    let held = send(&b, "late@example.com");
    let tf = b.wait_sequence(&held, &["Reception", "TransientFailure"]);
    assert!(tf[1]["response"]["content"].as_str().unwrap().contains("before you came"), "{}", tf[1]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!has(&b, &held, "Delivery") && sink.count() == 0, "the late node holds its mail too");
}

#[test]
fn every_node_lists_the_cluster_on_the_api_the_cli_and_the_dashboard() {
    let redis = RedisServer::start();
    let sink = SmtpSink::start();
    let (a, b) = (node(&sink, Some(&redis.url())), node(&sink, Some(&redis.url())));
    for (me, other) in [(&a, &b), (&b, &a)] {
        let view = wait_until("both nodes in the view", Duration::from_secs(5), || {
            let v = json(&get(me.http, "/api/admin/cluster/v1", &[]).1);
            (v["nodes"].as_array()?.len() == 2).then_some(v)
        });
        assert_eq!(
            (view["cluster"].as_bool(), view["connected"].as_bool()),
            (Some(true), Some(true)),
            "{view}"
        );
        for n in [me, other] {
            let seen = view["nodes"].as_array().unwrap().iter().find(|e| e["node_id"] == n.nodeid.as_str());
            let seen = seen.unwrap_or_else(|| panic!("{} missing: {view}", n.nodeid));
            assert_eq!(seen["node_url"], format!("http://{}", n.http), "{seen}");
            assert_eq!(seen["version"], env!("CARGO_PKG_VERSION"), "{seen}");
            assert!(seen["scheduled"].is_i64() && seen["ready"].is_i64(), "queue totals: {seen}");
            let age = chrono::Utc::now()
                - seen["last_heartbeat"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
            assert!(age < chrono::Duration::seconds(5), "a recent heartbeat: {seen}");
        }
    }
    let table = a.cli(&["cluster"]);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(table.contains(&format!("{} (this node)", a.nodeid)) && table.contains(&b.nodeid), "{table}");

    let dom = dump_dom(&format!("http://{}/", a.http), Duration::from_secs(3));
    assert!(dom.contains("data-updates"), "the page loaded its data: {dom}");
    for n in [&a, &b] {
        assert!(
            dom.contains(&format!("data-node=\"{}\"", n.nodeid)),
            "the cluster table lists {}: {dom}",
            n.nodeid
        );
    }
    assert!(!dom.contains("id=\"cluster-section\" hidden"), "the section shows: {dom}");

    // A stopped node drops out after a few missed heartbeats.
    drop(b);
    wait_until("the stopped node leaves the view", Duration::from_secs(8), || {
        let v = json(&get(a.http, "/api/admin/cluster/v1", &[]).1);
        (v["nodes"].as_array()?.len() == 1).then_some(())
    });
}

#[test]
fn without_cluster_a_suspension_stays_on_its_node() {
    let sink = SmtpSink::start();
    let (a, b) = (node(&sink, None), node(&sink, None));
    let sid =
        made(&a, &["suspend", "--domain", "example.com", "--reason", "local only", "--duration", "10m"]);
    let entry = wait_listed(&a, "suspend-list", &sid, A_SECOND);
    assert_eq!(entry["origin"]["node_id"], a.nodeid.as_str(), "{entry}");
    let id = send(&b, "free@example.com");
    b.wait_sequence(&id, &["Reception", "Delivery"]);
    assert_eq!(b.cli(&["suspend-list"]).trim(), "no active suspensions");
    let view = json(&get(a.http, "/api/admin/cluster/v1", &[]).1);
    assert_eq!((view["cluster"].as_bool(), view["nodes"].as_array().map(Vec::len)), (Some(false), Some(0)));
    assert!(a.cli(&["cluster"]).contains("not in a cluster"));
}

#[test]
fn an_unreachable_redis_leaves_directives_local_and_its_password_unlogged() {
    let sink = SmtpSink::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let a = node(&sink, Some(&format!("redis://:Sup3rSecretPw@127.0.0.1:{closed}/")));
    let started = Instant::now();
    let sid =
        made(&a, &["suspend", "--domain", "example.com", "--reason", "still works", "--duration", "10m"]);
    let id = send(&a, "held@example.com");
    let tf = a.wait_sequence(&id, &["Reception", "TransientFailure"]);
    assert!(tf[1]["response"]["content"].as_str().unwrap().contains("still works"), "{}", tf[1]);
    assert_eq!(wait_listed(&a, "suspend-list", &sid, A_SECOND)["id"], sid.as_str());
    wait_until("the outage is reported", Duration::from_secs(5), || {
        a.stderr().contains("Redis unreachable").then_some(())
    });
    let view = json(&get(a.http, "/api/admin/cluster/v1", &[]).1);
    assert_eq!(view["connected"].as_bool(), Some(false), "{view}");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let log = a.stderr();
    assert!(!log.contains("Sup3rSecretPw"), "the password never reaches a log line: {log}");
    assert!(log.contains("redis://:***@127.0.0.1"), "the URL is shown redacted: {log}");
    assert_eq!(log.matches("Redis unreachable").count(), 1, "warned once a minute, not every retry: {log}");
}
