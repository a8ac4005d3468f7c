//! `ferry queue-summary` (from `GET /metrics` and the suspend/bounce lists, SPEC §5) and
//! `ferry top` (a live view of `GET /api/admin/actors/v1`, refreshed every second, with a
//! sparkline per series of `GET /api/admin/metrics-history/v1`).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use awc::http::Method;
use serde_json::{Value, json};

use crate::admin::{Api, call};
use crate::ready_queue_view::{ready_rows, render_top_panel, summary_json, summary_table};
use crate::sparkline::render_history;

/// One sample of the Prometheus text format: metric name, its single label value (if any), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub label: Option<String>,
    pub value: f64,
}

/// Parse Prometheus text (the subset Ferry writes: at most one label per sample).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, label) = match head.split_once('{') {
                None => (head.to_string(), None),
                Some((name, rest)) => {
                    let quoted = rest.strip_suffix('}')?.split_once('=')?.1;
                    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
                    let mut out = String::new();
                    let mut chars = inner.chars();
                    while let Some(c) = chars.next() {
                        match (c, c == '\\') {
                            (_, true) => match chars.next() {
                                Some('n') => out.push('\n'),
                                Some(other) => out.push(other),
                                None => {}
                            },
                            (c, false) => out.push(c),
                        }
                    }
                    (name.to_string(), Some(out))
                }
            };
            Some(Sample { name, label, value })
        })
        .collect()
}

pub struct SummaryArgs {
    pub limit: usize,
    pub by_volume: bool,
    pub domain: Option<String>,
    pub json: bool,
}

pub async fn queue_summary(api: &Api, args: SummaryArgs) -> anyhow::Result<()> {
    let (_, text) = call(api, Method::GET, "/metrics", None).await?;
    let samples = parse_metrics(&text);
    let (_, suspended) = call(api, Method::GET, "/api/admin/suspend/v1", None).await?;
    let (_, bounces) = call(api, Method::GET, "/api/admin/bounce/v1", None).await?;
    let gauge = |name: &str| -> Vec<(String, u64)> {
        samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| Some((s.label.clone()?, s.value as u64)))
            .collect()
    };
    let mut scheduled = gauge("scheduled_count");
    if let Some(d) = &args.domain {
        let d = d.to_ascii_lowercase();
        scheduled.retain(|(q, _)| queue_domain(q) == d);
    }
    if args.by_volume {
        scheduled.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }
    scheduled.truncate(args.limit);
    let ready = ready_rows(&samples);
    let totals: BTreeMap<String, u64> = samples
        .iter()
        .filter(|s| s.name.starts_with("total_messages_") && s.label.is_none())
        .map(|s| (s.name.clone(), s.value as u64))
        .collect();
    let suspended: Value = serde_json::from_str(&suspended).unwrap_or(Value::Null);
    let bounces: Value = serde_json::from_str(&bounces).unwrap_or(Value::Null);
    if args.json {
        let out = json!({
            "scheduled": scheduled.iter().map(|(q, n)| json!({"queue": q, "count": n})).collect::<Vec<_>>(),
            "ready": summary_json(&ready),
            "totals": totals, "suspensions": suspended, "bounces": bounces,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut out = String::new();
    table(
        &mut out,
        &["SCHEDULED QUEUE", "WAITING"],
        scheduled.iter().map(|(q, n)| vec![q.clone(), n.to_string()]),
        1,
    );
    out.push('\n');
    summary_table(&mut out, &ready);
    out.push('\n');
    let total_line: Vec<String> =
        totals.iter().map(|(k, v)| format!("{} {v}", k.trim_start_matches("total_messages_"))).collect();
    out.push_str(&format!("totals: {}\n", total_line.join(", ")));
    for (what, list) in [("suspended", &suspended), ("bouncing", &bounces)] {
        for d in list.as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{what}: {} ({}) for {}\n",
                criteria_text(d),
                d["reason"].as_str().unwrap_or(""),
                d["duration"].as_str().unwrap_or("")
            ));
        }
    }
    print!("{out}");
    Ok(())
}

/// The domain part of a queue name (`campaign:tenant@domain!routing`).
fn queue_domain(queue: &str) -> String {
    let after_at = queue.rsplit_once('@').map_or(queue, |(_, d)| d);
    after_at.split('!').next().unwrap_or(after_at).to_ascii_lowercase()
}

/// What a suspension or bounce matches, e.g. `domain=example.com tenant=t`, or `everything`.
pub(crate) fn criteria_text(d: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["campaign", "tenant", "domain", "routing_domain"] {
        if let Some(v) = d[key].as_str() {
            parts.push(format!("{key}={v}"));
        }
    }
    if let Some(q) = d["queue_names"].as_array().filter(|q| !q.is_empty()) {
        parts.push(format!("queues={}", q.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")));
    }
    if parts.is_empty() { "everything".into() } else { parts.join(" ") }
}

/// An aligned table: the first `left` columns left-aligned, the rest (numbers) right-aligned.
pub(crate) fn table(out: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>, left: usize) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let cells: Vec<String> =
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i < left {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
                .collect();
        cells.join("  ").trim_end().to_string()
    };
    out.push_str(&line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>()));
    out.push('\n');
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
}

/// One frame of `ferry top`; `prev` is the reading before (and seconds since), for rates;
/// `history` the node's last 15 minutes, drawn as a sparkline per series.
pub fn render_top(v: &Value, endpoint: &str, prev: Option<(&Value, f64)>, history: Option<&Value>) -> String {
    let mut out = String::new();
    let totals = &v["totals"];
    let n = |k: &str| totals[k].as_u64().unwrap_or(0);
    out.push_str(&format!(
        "ferry top — {endpoint}   received {}  delivered {}  transfail {}  bounced {}  expired {}  xfer in {}  xfer out {}\n",
        n("total_messages_received"),
        n("total_messages_delivered"),
        n("total_messages_transfail"),
        n("total_messages_bounced"),
        n("total_messages_expired"),
        n("total_messages_xfer_in"),
        n("total_messages_xfer_out"),
    ));
    let p = &v["policy"];
    let w = &v["spool_writer"];
    out.push_str(&format!(
        "policy: {} states, {} queued, {} calls, mean {} ms, slowest {} ms   spool: {} commits, mean {} ms, max {} ms, largest batch {}\n\n",
        p["states"], p["queued"], p["calls"], p["mean_ms"], p["slowest_ms"], w["commits"], w["commit_mean_ms"], w["commit_max_ms"], w["largest_batch"]
    ));
    if let Some(history) = history {
        render_history(&mut out, history);
        out.push('\n');
    }
    let sq = &v["scheduled_queues"];
    out.push_str(&format!("scheduled queues: {} (largest {})\n", sq["total"], sq["shown"]));
    table(
        &mut out,
        &["QUEUE", "WAITING", "NEXT DUE"],
        sq["largest"].as_array().into_iter().flatten().map(|q| {
            vec![
                q["name"].as_str().unwrap_or("").to_string(),
                q["waiting"].to_string(),
                q["next_due"].as_str().unwrap_or("-").to_string(),
            ]
        }),
        1,
    );
    out.push('\n');
    render_top_panel(&mut out, v, prev);
    out.push('\n');
    table(
        &mut out,
        &["XFER TARGET", "READY", "IN FLIGHT", "SENT", "FAILED", "FORM", "LAST ERROR"],
        v["xfer_targets"].as_array().into_iter().flatten().map(|t| {
            vec![
                t["target"].as_str().unwrap_or("").to_string(),
                t["ready"].to_string(),
                t["in_flight"].to_string(),
                t["sent"].to_string(),
                t["failed"].to_string(),
                t["form"].as_str().unwrap_or("").to_string(),
                t["last_error"].as_str().unwrap_or("-").chars().take(60).collect(),
            ]
        }),
        1,
    );
    out
}

/// `--once` still reads twice, a refresh apart, so its frame has the rates a live one has.
pub async fn top(api: &Api, once: bool, limit: usize) -> anyhow::Result<()> {
    const REFRESH: Duration = Duration::from_secs(1);
    let mut prev: Option<(Value, Instant)> = None;
    loop {
        let (_, text) = call(api, Method::GET, &format!("/api/admin/actors/v1?limit={limit}"), None).await?;
        let v: Value = serde_json::from_str(&text).context("unexpected reply from /api/admin/actors/v1")?;
        let now = Instant::now();
        if once && prev.is_none() {
            prev = Some((v, now));
            actix_rt::time::sleep(REFRESH).await;
            continue;
        }
        // A node without the history endpoint (an older version) still gets its frame.
        let history = match call(api, Method::GET, "/api/admin/metrics-history/v1", None).await {
            Ok((_, text)) => serde_json::from_str::<Value>(&text).ok(),
            Err(_) => None,
        };
        let earlier = prev.as_ref().map(|(p, at)| (p, now.duration_since(*at).as_secs_f64()));
        let frame = render_top(&v, &api.base, earlier, history.as_ref());
        if once {
            print!("{frame}");
            return Ok(());
        }
        // Home the cursor and clear the screen, then draw.
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "\x1b[H\x1b[2J{frame}")?;
        stdout.flush()?;
        drop(stdout);
        prev = Some((v, now));
        actix_rt::time::sleep(REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_parsed_with_escapes() {
        let text = "# HELP x y\n# TYPE x gauge\nscheduled_count{queue=\"a\\\"b\\\\c\"} 3\ntotal_messages_delivered 10\n";
        let s = parse_metrics(text);
        assert_eq!(
            s[0],
            Sample { name: "scheduled_count".into(), label: Some("a\"b\\c".into()), value: 3.0 }
        );
        assert_eq!(s[1], Sample { name: "total_messages_delivered".into(), label: None, value: 10.0 });
    }

    #[test]
    fn queue_domains_are_found_in_every_queue_form() {
        assert_eq!(queue_domain("camp:tenant@Example.com!relay.example"), "example.com");
        assert_eq!(queue_domain("example.com"), "example.com");
    }
}
