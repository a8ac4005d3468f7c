use chrono::Duration as Span;

use super::*;
use crate::model::admin::Criteria;

fn node(n: u128) -> Origin {
    Origin { node_id: Uuid::from_u128(n), node_url: Some(format!("http://127.0.0.1:800{n}")) }
}

fn suspend(id: u128, from: u128, expires: DateTime<Utc>) -> Directive {
    Directive::Suspend(Suspension {
        id: Uuid::from_u128(id),
        criteria: Criteria { domain: Some("example.com".into()), ..Default::default() },
        reason: "maintenance".into(),
        expires,
        origin: node(from),
    })
}

#[test]
fn encoding_round_trips_and_keeps_bounce_counts_local() {
    let now = Utc::now();
    let mut bounce = Bounce {
        id: Uuid::from_u128(7),
        criteria: Criteria::default(),
        reason: "spam run".into(),
        expires: now,
        suppress_logging: true,
        origin: node(1),
        bounced: Default::default(),
        total_bounced: 0,
    };
    bounce.total_bounced = 12;
    let text = Directive::Bounce(bounce.clone()).encode();
    assert!(text.contains(r#""kind":"bounce""#), "{text}");
    assert!(!text.contains("total_bounced"), "counts are per node: {text}");
    let Directive::Bounce(back) = Directive::decode(&text).unwrap() else { panic!("kind changed") };
    assert_eq!(back, Bounce { total_bounced: 0, ..bounce });

    let rq = Directive::SuspendReadyQ(ReadyQueueSuspension {
        id: Uuid::from_u128(8),
        name: "unspecified->mx:example.com@smtp_client".into(),
        reason: "r".into(),
        expires: now,
        origin: node(2),
    });
    let a = Announcement::Add { directive: Box::new(rq.clone()) };
    assert_eq!(Announcement::decode(&a.encode()).unwrap(), a);
    assert_eq!(a.sender(), Uuid::from_u128(2));
    let c = Announcement::Cancel { kind: DirectiveKind::SuspendReadyQ, id: rq.id(), by: Uuid::from_u128(3) };
    assert_eq!(Announcement::decode(&c.encode()).unwrap(), c);
    assert_eq!(c.sender(), Uuid::from_u128(3));
    assert_eq!(
        rq.redis_key(),
        "ferry:cluster:directive:suspend_ready_q:00000000-0000-0000-0000-000000000008"
    );
    assert!(Directive::decode("{\"kind\":\"nuke\"}").is_err());
}

#[test]
fn ttl_is_the_time_left_rounded_up_and_none_once_lapsed() {
    let now = Utc::now();
    assert_eq!(suspend(1, 1, now + Span::seconds(300)).ttl(now), Some(300));
    assert_eq!(suspend(1, 1, now + Span::milliseconds(1500)).ttl(now), Some(2));
    assert_eq!(suspend(1, 1, now + Span::milliseconds(1)).ttl(now), Some(1));
    assert_eq!(suspend(1, 1, now).ttl(now), None);
    assert_eq!(suspend(1, 1, now - Span::seconds(5)).ttl(now), None);
}

#[test]
fn a_node_applies_a_remote_directive_once_and_cancels_it_once() {
    let now = Utc::now();
    let mut ledger = Ledger::default();
    let d = suspend(1, 2, now + Span::minutes(5));
    assert!(ledger.added_remotely(d.clone()));
    assert!(!ledger.added_remotely(d.clone()), "the second announcement is a no-op");
    assert!(ledger.cancelled_remotely(d.key()));
    assert!(!ledger.cancelled_remotely(d.key()));
}

#[test]
fn resync_at_start_applies_what_redis_holds_that_is_live() {
    let now = Utc::now();
    let ledger = Ledger::default();
    let live = suspend(1, 2, now + Span::minutes(5));
    let lapsed = suspend(2, 2, now - Span::seconds(1));
    // A node's own directive from before its restart is applied too.
    let own = suspend(3, 1, now + Span::minutes(1));
    let plan = ledger.plan_resync(&[lapsed, live.clone(), own.clone()], now);
    assert_eq!(plan, ResyncPlan { apply: vec![live, own], ..Default::default() });
}

#[test]
fn resync_after_an_outage_stores_local_work_and_drops_what_peers_cancelled() {
    let now = Utc::now();
    let mut ledger = Ledger::default();
    let synced_remote = suspend(1, 2, now + Span::minutes(5));
    let cancelled_elsewhere = suspend(2, 2, now + Span::minutes(5));
    let made_offline = suspend(3, 1, now + Span::minutes(5));
    let made_offline_lapsed = suspend(4, 1, now + Span::seconds(1));
    let cancelled_offline = suspend(5, 2, now + Span::minutes(5));
    let new_elsewhere = suspend(6, 3, now + Span::minutes(5));
    ledger.added_remotely(synced_remote.clone());
    ledger.added_remotely(cancelled_elsewhere.clone());
    ledger.added_remotely(cancelled_offline.clone());
    ledger.made_here(made_offline.clone(), false);
    ledger.made_here(made_offline_lapsed.clone(), false);
    ledger.cancelled_here(cancelled_offline.key(), false);
    assert!(ledger.has_unsynced());
    // Redis as found on reconnection: the one cancelled offline is still there.
    let stored = [synced_remote.clone(), cancelled_offline.clone(), new_elsewhere.clone()];
    let later = now + Span::seconds(2);
    let plan = ledger.plan_resync(&stored, later);
    assert_eq!(
        plan,
        ResyncPlan {
            apply: vec![new_elsewhere.clone()],
            cancel: vec![cancelled_elsewhere.key()],
            store: vec![made_offline.clone()],
            delete: vec![cancelled_offline.key()],
        }
    );
    ledger.resynced(&plan, later);
    assert!(!ledger.has_unsynced());
    // Nothing more to do once merged.
    let stored = [synced_remote, made_offline, new_elsewhere];
    assert_eq!(ledger.plan_resync(&stored, later), ResyncPlan::default());
}

#[test]
fn an_announcement_of_a_directive_cancelled_here_offline_is_not_applied() {
    let now = Utc::now();
    let mut ledger = Ledger::default();
    let d = suspend(1, 2, now + Span::minutes(5));
    ledger.added_remotely(d.clone());
    ledger.cancelled_here(d.key(), false);
    assert!(!ledger.added_remotely(d));
}

#[test]
fn passwords_never_reach_a_log_line() {
    assert_eq!(redact_url("redis://:s3cret@10.0.0.1:6379/0"), "redis://:***@10.0.0.1:6379/0");
    assert_eq!(redact_url("redis://app:s3cret@h/"), "redis://app:***@h/");
    assert_eq!(redact_url("redis://s3cret@h:6379"), "redis://***@h:6379");
    assert_eq!(redact_url("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    assert_eq!(redact_url("not a url"), "<unparsable redis URL>");
    let err = "AUTH failed for redis://app:s3cret@h/: WRONGPASS s3cret";
    assert_eq!(
        redact_secret(err, "redis://app:s3cret@h/"),
        "AUTH failed for redis://app:***@h/: WRONGPASS ***"
    );
    assert_eq!(redact_secret("refused", "redis://h/"), "refused");
}

#[test]
fn warnings_are_written_once_a_minute() {
    let t0 = Instant::now();
    let mut every = LogEvery::new(Duration::from_secs(60));
    assert!(every.due(t0));
    assert!(!every.due(t0 + Duration::from_secs(59)));
    assert!(every.due(t0 + Duration::from_secs(60)));
    assert!(!every.due(t0 + Duration::from_secs(61)));
}
