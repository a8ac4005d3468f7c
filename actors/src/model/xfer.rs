//! Xfer rules (SPEC §4.1, §4.2, §4.4): xfer queue names, target URL validation, the saved queue
//! info that travels with a message, and the deterministic id a receiving node gives it.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::id::MessageId;
use super::message::Message;
use super::scheduling::Scheduling;

/// Suffix that marks an xfer queue name.
pub const XFER_SUFFIX: &str = ".xfer.kumomta.internal";
/// Meta key holding the saved queue info.
pub const QUEUE_INFO: &str = "xfer_queue_info";
const QUEUE_KEYS: [&str; 4] = ["queue", "routing_domain", "tenant", "campaign"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid xfer target {url:?}: {reason} (expected http(s)://host[:port])")]
pub struct BadTarget {
    pub url: String,
    pub reason: String,
}

/// WHATWG-normalise a target (host lower-cased, default port dropped, path `/`). Only
/// `http(s)://host[:port]` with an empty or `/` path is valid (D17).
pub fn normalize_target(target: &str) -> Result<String, BadTarget> {
    let bad = |reason: &str| BadTarget { url: target.to_string(), reason: reason.to_string() };
    let url = url::Url::parse(target).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("a host is required"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials are not allowed in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment is not allowed"));
    }
    if url.path() != "/" {
        return Err(bad("a path is not allowed"));
    }
    Ok(url.to_string())
}

/// The xfer queue for a target: `http://10.0.0.1:8000/.xfer.kumomta.internal`.
pub fn queue_for_target(target: &str) -> Result<String, BadTarget> {
    Ok(format!("{}{XFER_SUFFIX}", normalize_target(target)?))
}

pub fn is_xfer_queue(queue: &str) -> bool {
    queue.ends_with(XFER_SUFFIX)
}

/// The normalised target URL of an xfer queue (with its trailing `/`), or None.
pub fn target_of_queue(queue: &str) -> Option<String> {
    let url = queue.strip_suffix(XFER_SUFFIX)?;
    normalize_target(url).ok().filter(|n| n == url)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// SPEC §4.2 `save_info`: record queue keys, schedule, attempts and due in
/// `meta.xfer_queue_info`, then clear them. Saved once: a message already carrying saved info
/// (being re-targeted) keeps the first. The caller then sets `meta.queue` to the xfer queue.
pub fn save_info(msg: &mut Message) {
    if msg.get_meta(QUEUE_INFO).is_none() {
        let mut info = Map::new();
        for key in QUEUE_KEYS {
            if let Some(v) = msg.get_meta(key) {
                info.insert(key.to_string(), v.clone());
            }
        }
        if let Some(s) = &msg.schedule {
            info.insert("schedule".into(), s.to_json());
        }
        info.insert("num_attempts".into(), json!(msg.num_attempts));
        if let Some(due) = msg.due {
            info.insert("due".into(), Value::String(ts(due)));
        }
        msg.set_meta(QUEUE_INFO, Value::Object(info));
    }
    for key in QUEUE_KEYS {
        msg.meta.remove(key);
    }
    msg.schedule = None;
    msg.due = None;
}

/// SPEC §4.2 `restore_info`, at time `now`. Without saved info nothing changes (D15).
pub fn restore_info(msg: &mut Message, now: DateTime<Utc>) -> Result<(), String> {
    let Some(Value::Object(info)) = msg.meta.get(QUEUE_INFO).cloned() else {
        return Ok(());
    };
    for key in QUEUE_KEYS {
        match info.get(key) {
            Some(v) if !v.is_null() => msg.set_meta(key, v.clone()),
            _ => {
                msg.meta.remove(key);
            }
        }
    }
    msg.num_attempts = match info.get("num_attempts") {
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or("xfer_queue_info.num_attempts is not a count")?,
        None => 0,
    };
    msg.schedule = match info.get("schedule") {
        None | Some(Value::Null) => None,
        Some(s) => Some(Scheduling::from_json(s).map_err(|e| format!("xfer_queue_info.schedule: {e}"))?),
    };
    let saved_due = match info.get("due").and_then(Value::as_str) {
        Some(d) => Some(
            DateTime::parse_from_rfc3339(d)
                .map_err(|e| format!("xfer_queue_info.due {d:?}: {e}"))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    msg.due = match &msg.schedule {
        Some(s) => Some(s.adjust(saved_due.unwrap_or(now))),
        None => saved_due,
    };
    msg.meta.remove(QUEUE_INFO);
    Ok(())
}

/// SPEC §4.4: the receiver's id for a transferred message: the source's v1 timestamp and clock
/// sequence with this node's node field. The same source id always maps to the same local id
/// (which is what makes resends idempotent) and the age is kept. If that equals the source id
/// (shared node field), step the clock sequence until it differs.
pub fn derive_id(src: &MessageId, node: &[u8; 6]) -> MessageId {
    let (ticks, mut counter) = src.uuid().get_timestamp().map(|t| t.to_gregorian()).unwrap_or((0, 0));
    loop {
        let id = Uuid::new_v1(uuid::Timestamp::from_gregorian_time(ticks, counter), node);
        if id != src.uuid() {
            return MessageId::from_bytes(*id.as_bytes());
        }
        counter = (counter + 1) & 0x3fff;
    }
}

/// Which of several drain targets a scheduled queue goes to: rendezvous (highest random weight)
/// hashing of the queue name and each target, so a queue always goes whole to one target, the
/// choice is the same on every node and every run, and adding or removing a target moves only
/// the queues that must move. FNV-1a, not std's hasher: the choice must not change with the
/// Rust version.
pub fn pick_target(queue: &str, targets: &[String]) -> usize {
    let weight = |target: &str| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in queue.bytes().chain([0xff]).chain(target.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // FNV's low bits mix poorly for short inputs; a final avalanche step spreads them.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    };
    (0..targets.len()).max_by_key(|&i| (weight(&targets[i]), std::cmp::Reverse(i))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageIdGenerator;
    use bytes::Bytes;

    #[test]
    fn targets_normalise_and_invalid_ones_are_refused() {
        assert_eq!(
            queue_for_target("http://10.0.0.1:8000").unwrap(),
            "http://10.0.0.1:8000/.xfer.kumomta.internal"
        );
        assert_eq!(
            queue_for_target("HTTP://Backup.Example:80/").unwrap(),
            "http://backup.example/.xfer.kumomta.internal"
        );
        assert_eq!(queue_for_target("https://h:443").unwrap(), "https://h/.xfer.kumomta.internal");
        assert_eq!(
            queue_for_target("http://[::1]:8000").unwrap(),
            "http://[::1]:8000/.xfer.kumomta.internal"
        );
        for bad in ["ftp://h", "http://u:p@h", "http://h/path", "http://h/?q=1", "http://h/#f", "h:8000", ""]
        {
            assert!(queue_for_target(bad).is_err(), "{bad}");
        }
        let q = queue_for_target("http://10.0.0.1:8000").unwrap();
        assert!(is_xfer_queue(&q) && !is_xfer_queue("example.com"));
        assert_eq!(target_of_queue(&q).as_deref(), Some("http://10.0.0.1:8000/"));
        assert_eq!(
            target_of_queue("http://bogus.kumomta.internal.notavalidtld/.xfer.kumomta.internal").as_deref(),
            Some("http://bogus.kumomta.internal.notavalidtld/")
        );
    }

    fn message() -> Message {
        let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        Message::new(g.generate(), "s@x".into(), vec!["r@example.com".into()], Bytes::from_static(b"x"))
    }

    #[test]
    fn save_then_restore_round_trips_queue_state() {
        let mut m = message();
        m.set_meta("tenant", json!("mytenant"));
        m.set_meta("campaign", json!("c1"));
        m.set_meta("other", json!(1));
        m.schedule = Some(Scheduling::from_json_str(r#"{"expires":"3000-12-31T00:00:00Z"}"#).unwrap());
        m.num_attempts = 1;
        let due: DateTime<Utc> = "2026-01-02T03:24:05.123456789Z".parse().unwrap();
        m.due = Some(due);
        let before = m.clone();
        save_info(&mut m);
        assert_eq!(
            m.get_meta(QUEUE_INFO).unwrap(),
            &json!({"tenant":"mytenant","campaign":"c1","schedule":{"expires":"3000-12-31T00:00:00+00:00"},"num_attempts":1,"due":"2026-01-02T03:24:05.123456789Z"})
        );
        assert!(m.get_meta("tenant").is_none() && m.schedule.is_none() && m.due.is_none());
        // Re-targeting keeps the first saved info.
        m.num_attempts = 5;
        save_info(&mut m);
        assert_eq!(m.get_meta(QUEUE_INFO).unwrap()["num_attempts"], 1);
        restore_info(&mut m, Utc::now()).unwrap();
        assert_eq!(
            (m.meta.clone(), m.schedule.clone(), m.due, m.num_attempts),
            (before.meta, before.schedule, before.due, 1)
        );
    }

    #[test]
    fn restore_without_info_changes_nothing_and_absent_keys_are_unset() {
        let mut m = message();
        m.set_meta("queue", json!("x"));
        let before = m.clone();
        restore_info(&mut m, Utc::now()).unwrap();
        assert_eq!(m, before, "D15");
        m.set_meta(QUEUE_INFO, json!({"num_attempts": 2}));
        restore_info(&mut m, Utc::now()).unwrap();
        assert!(m.get_meta("queue").is_none(), "a key not saved is unset");
        assert_eq!((m.num_attempts, m.due), (2, None));
        m.set_meta(QUEUE_INFO, json!({"num_attempts": "two"}));
        assert!(restore_info(&mut m, Utc::now()).is_err());
    }

    #[test]
    fn derived_ids_are_stable_keep_the_age_and_differ_from_the_source() {
        let src = MessageIdGenerator::new(&uuid::Uuid::new_v4()).generate();
        let node = [1, 2, 3, 4, 5, 6];
        let a = derive_id(&src, &node);
        assert_eq!(a, derive_id(&src, &node), "the same source id always maps to the same id");
        assert_eq!(a.created(), src.created());
        assert_ne!(a, src);
        let same_node = src.uuid().get_node_id().unwrap();
        let b = derive_id(&src, &same_node);
        assert_ne!(b, src, "a shared node field steps the clock sequence");
        assert_eq!(b.created(), src.created());
    }

    #[test]
    fn queues_spread_whole_and_stably_over_drain_targets() {
        let targets: Vec<String> =
            ["http://a:8000/", "http://b:8000/", "http://c:8000/"].map(String::from).to_vec();
        let queues: Vec<String> = (0..3000).map(|n| format!("d{n}.example.com")).collect();
        let picks: Vec<usize> = queues.iter().map(|q| pick_target(q, &targets)).collect();
        // Every target gets a fair share (3000 queues, expect ~1000 each).
        for t in 0..3 {
            let n = picks.iter().filter(|&&p| p == t).count();
            assert!((800..1200).contains(&n), "target {t}: {n}");
        }
        // The same answer every time, whatever the targets' order.
        let reversed: Vec<String> = targets.iter().rev().cloned().collect();
        for (q, &p) in queues.iter().zip(&picks) {
            assert_eq!(pick_target(q, &targets), p);
            assert_eq!(reversed[pick_target(q, &reversed)], targets[p]);
        }
        // Removing target c moves only c's queues.
        let two = &targets[..2];
        for (q, &p) in queues.iter().zip(&picks) {
            if p < 2 {
                assert_eq!(pick_target(q, two), p, "{q} moved although its target stayed");
            }
        }
        assert_eq!(pick_target("q", &targets[..1]), 0);
    }
}
