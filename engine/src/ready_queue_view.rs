//! Ready queues for people: the `ferry queue-summary` rows, gathered from `GET /metrics` the way
//! `kcli queue-summary` gathers them (so both show the same numbers), and the `ferry top` panel,
//! which lists them under their egress source with the path's limits and per-second rates from
//! two readings of `GET /api/admin/actors/v1`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::observe::{Sample, table};

/// One ready queue as `kcli queue-summary` sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadyRow {
    /// The ready queue name, `<source>-><site>@<protocol>`.
    pub name: String,
    /// The `service` label it was found under, `<protocol>:<name>`.
    pub service: String,
    pub delivered: u64,
    pub transfail: u64,
    pub fail: u64,
    pub connections: u64,
    pub ready: u64,
}

impl ReadyRow {
    pub fn source(&self) -> &str {
        self.name.split_once("->").map_or("", |(s, _)| s)
    }

    /// Between `<source>->` and the last `@`.
    pub fn site(&self) -> &str {
        let after = self.name.split_once("->").map_or(self.name.as_str(), |(_, s)| s);
        after.rsplit_once('@').map_or(after, |(s, _)| s)
    }

    /// After the last `@` (`smtp_client`, `lua:<constructor>`, `xfer`).
    pub fn protocol(&self) -> &str {
        self.name.rsplit_once('@').map_or("", |(_, p)| p)
    }
}

/// Ready queues from `/metrics` samples, as kcli reads them: every `service` label of the form
/// `<protocol>:<queue>` is a ready queue (the bare `<protocol>` sums are not), keyed by queue.
pub fn ready_rows(samples: &[Sample]) -> Vec<ReadyRow> {
    let mut rows: BTreeMap<String, ReadyRow> = BTreeMap::new();
    for s in samples {
        let Some((_, queue)) = s.label.as_deref().and_then(|l| l.split_once(':')) else { continue };
        const READ: [&str; 5] = [
            "total_messages_delivered",
            "total_messages_transfail",
            "total_messages_fail",
            "connection_count",
            "ready_count",
        ];
        if !READ.contains(&s.name.as_str()) {
            continue;
        }
        let row = rows.entry(queue.to_string()).or_insert_with(|| ReadyRow {
            name: queue.to_string(),
            service: s.label.clone().unwrap_or_default(),
            ..ReadyRow::default()
        });
        let field = match s.name.as_str() {
            "total_messages_delivered" => &mut row.delivered,
            "total_messages_transfail" => &mut row.transfail,
            "total_messages_fail" => &mut row.fail,
            "connection_count" => &mut row.connections,
            _ => &mut row.ready,
        };
        *field += s.value as u64;
    }
    rows.into_values().collect()
}

pub fn summary_table(out: &mut String, rows: &[ReadyRow]) {
    table(
        out,
        &["SITE", "SOURCE", "PROTO", "D", "T", "F", "C", "Q"],
        rows.iter().map(|r| {
            let n = |v: u64| v.to_string();
            vec![
                r.site().to_string(),
                r.source().to_string(),
                r.protocol().to_string(),
                n(r.delivered),
                n(r.transfail),
                n(r.fail),
                n(r.connections),
                n(r.ready),
            ]
        }),
        3,
    );
}

pub fn summary_json(rows: &[ReadyRow]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "name": r.name, "service": r.service, "site": r.site(), "source": r.source(),
                "protocol": r.protocol(), "count": r.ready, "connections": r.connections,
                "delivered": r.delivered, "transfail": r.transfail, "fail": r.fail,
            })
        })
        .collect()
}

/// Per second between two readings of a counter; "-" without an earlier reading. A counter that
/// went down belongs to a queue reaped and re-created since: it counts from zero.
fn rate(now: u64, before: Option<u64>, secs: f64) -> String {
    match before {
        Some(b) if secs > 0.0 => {
            let delta = if now < b { now } else { now - b };
            format!("{:.1}", delta as f64 / secs)
        }
        _ => "-".into(),
    }
}

/// The `ferry top` panel: one table per egress source. `prev` is the earlier reading of the
/// actors view and the seconds since it.
pub fn render_top_panel(out: &mut String, v: &Value, prev: Option<(&Value, f64)>) {
    let queues: &[Value] = v["ready_queues"].as_array().map_or(&[], Vec::as_slice);
    let earlier = |service: &str, key: &str| -> Option<u64> {
        let (p, _) = prev?;
        let q = p["ready_queues"].as_array()?.iter().find(|q| q["service"] == service)?;
        q["counts"][key].as_u64()
    };
    let secs = prev.map_or(0.0, |(_, s)| s);
    out.push_str("DISPATCHERS (ready queues) by egress source\n");
    if queues.is_empty() {
        out.push_str("(none)\n");
    }
    let mut by_source: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for q in queues {
        by_source.entry(q["source"].as_str().unwrap_or("")).or_default().push(q);
    }
    for (source, queues) in by_source {
        out.push_str(&format!("source {source}\n"));
        table(
            out,
            &[
                "SITE",
                "READY",
                "CONN",
                "LIMIT",
                "MSG RATE",
                "MAX READY",
                "DELIVERED/s",
                "TRANSFAIL/s",
                "FAIL/s",
            ],
            queues.iter().map(|q| {
                let limit = |k: &str| match &q["limits"][k] {
                    Value::Null => "-".to_string(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let service = q["service"].as_str().unwrap_or("");
                let r = |k: &str| rate(q["counts"][k].as_u64().unwrap_or(0), earlier(service, k), secs);
                vec![
                    q["site"].as_str().unwrap_or("").to_string(),
                    q["ready"].to_string(),
                    q["connections"].to_string(),
                    limit("connection_limit"),
                    limit("max_message_rate"),
                    limit("max_ready"),
                    r("delivered"),
                    r("transfail"),
                    r("fail"),
                ]
            }),
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::parse_metrics;

    #[test]
    fn rows_are_keyed_by_queue_and_protocol_sums_are_left_out() {
        let text = "total_messages_delivered 9\n\
            total_messages_delivered{service=\"smtp_client\"} 7\n\
            total_messages_delivered{service=\"smtp_client:ip-1->mx_list:[127.0.0.1]:25@smtp_client\"} 7\n\
            total_messages_fail{service=\"smtp_client:ip-1->mx_list:[127.0.0.1]:25@smtp_client\"} 1\n\
            ready_count{service=\"lua:src->t@x.example@lua:make\"} 3\n";
        let rows = ready_rows(&parse_metrics(text));
        assert_eq!(rows.len(), 2);
        let smtp = &rows[0];
        assert_eq!(
            (smtp.source(), smtp.site(), smtp.protocol()),
            ("ip-1", "mx_list:[127.0.0.1]:25", "smtp_client")
        );
        assert_eq!((smtp.delivered, smtp.fail), (7, 1));
        let lua = &rows[1];
        assert_eq!(
            (lua.source(), lua.site(), lua.protocol(), lua.ready),
            ("src", "t@x.example", "lua:make", 3)
        );
    }

    #[test]
    fn rates_need_an_earlier_reading_and_survive_a_reaped_queue() {
        assert_eq!(rate(10, None, 1.0), "-");
        assert_eq!(rate(30, Some(10), 2.0), "10.0");
        assert_eq!(rate(4, Some(100), 2.0), "2.0");
    }
}
