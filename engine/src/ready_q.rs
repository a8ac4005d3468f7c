//! `ferry suspend-ready-q`, `suspend-ready-q-list`, `suspend-ready-q-cancel`, `inspect-ready-q`
//! and `resolve-egress-path`, with kcli's names, arguments and HTTP calls. People get sentences
//! and tables; `--json` prints the node's answer.

use anyhow::Context;
use awc::http::Method;
use serde_json::{Value, json};

use crate::admin::{Api, call, pretty, say, urlencode};

#[derive(clap::Subcommand, Debug)]
pub enum ReadyQCmd {
    /// Suspend one ready queue (an egress source sending to one site): its messages go out through
    /// another source of their pool, or wait on their retry schedule until it is lifted.
    SuspendReadyQ {
        /// The ready queue's full name, e.g. 'unspecified->mx:example.com@smtp_client'
        /// (resolve-egress-path tells it for a domain).
        #[arg(long)]
        name: String,
        /// Recorded in the TransientFailure of every message it holds.
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "5m")]
        duration: String,
    },
    /// List active ready-queue suspensions.
    SuspendReadyQList,
    /// Cancel a ready-queue suspension; its messages go out at their next retry.
    SuspendReadyQCancel {
        #[arg(long)]
        id: String,
    },
    /// Show a ready queue: source, pool, waiting messages, connections, throttles, suspension.
    InspectReadyQ {
        /// The ready queue's full name.
        queue_name: String,
        /// List the scheduled queues of the waiting messages.
        #[arg(long)]
        sched_q: bool,
        /// Show the egress path config in effect.
        #[arg(long)]
        config: bool,
    },
    /// Which queue config, egress pool, source, ready queue and egress path config the policy
    /// gives a destination (nothing is sent).
    ResolveEgressPath {
        domain: String,
        /// Egress source; default: the first one the queue's pool rotates to.
        source: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long)]
        routing_domain: Option<String>,
    },
}

pub(crate) async fn run(api: &Api, cmd: ReadyQCmd) -> anyhow::Result<()> {
    match cmd {
        ReadyQCmd::SuspendReadyQ { name, reason, duration } => {
            let body = json!({"name": name, "reason": reason, "duration": duration});
            let (_, text) = call(api, Method::POST, "/api/admin/suspend-ready-q/v1", Some(body)).await?;
            say(api, &text, |v| format!("suspended {name}: id {}", v["id"].as_str().unwrap_or("?")));
        }
        ReadyQCmd::SuspendReadyQList => {
            let (_, text) = call(api, Method::GET, "/api/admin/suspend-ready-q/v1", None).await?;
            say(api, &text, suspension_table);
        }
        ReadyQCmd::SuspendReadyQCancel { id } => {
            let body = json!({"id": id});
            let (_, text) = call(api, Method::DELETE, "/api/admin/suspend-ready-q/v1", Some(body)).await?;
            println!("{text}");
        }
        ReadyQCmd::InspectReadyQ { queue_name, sched_q, config } => {
            let mut url = format!("/api/admin/inspect-ready-q/v1?queue_name={}", urlencode(&queue_name));
            if sched_q || api.json {
                url.push_str("&include_scheduled_queues=true");
            }
            let (_, text) = call(api, Method::GET, &url, None).await?;
            say(api, &text, |v| inspect_text(v, config));
        }
        ReadyQCmd::ResolveEgressPath { domain, source, tenant, campaign, routing_domain } => {
            let mut url = format!("/api/admin/resolve-egress-path/v1?domain={}", urlencode(&domain));
            for (key, value) in [
                ("source", source),
                ("tenant", tenant),
                ("campaign", campaign),
                ("routing_domain", routing_domain),
            ] {
                if let Some(v) = value {
                    url.push_str(&format!("&{key}={}", urlencode(&v)));
                }
            }
            let (_, text) = call(api, Method::GET, &url, None).await.context("resolve-egress-path")?;
            say(api, &text, resolved_text);
        }
    }
    Ok(())
}

fn suspension_table(list: &Value) -> String {
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no active ready-queue suspensions".into();
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let rows = items.iter().map(|s| {
        let origin = crate::cluster::origin_text(s);
        vec![text(&s["id"]), text(&s["name"]), text(&s["reason"]), text(&s["duration"]), origin]
    });
    let mut out = String::new();
    let header = ["ID", "READY QUEUE", "REASON", "REMAINING", "ORIGIN"];
    crate::observe::table(&mut out, &header, rows, usize::MAX);
    out.trim_end().to_string()
}

fn ceilings(c: &Value) -> String {
    let mut out = String::from("ceilings:\n");
    for (label, key) in [
        ("concurrent connections", "max_concurrent_dispatchers"),
        ("message rate", "max_message_rate"),
        ("connection rate", "max_connection_rate"),
    ] {
        let axis = &c[key];
        if axis.is_object() {
            let source = axis["source"]["kind"].as_str().unwrap_or("");
            out.push_str(&format!("  {label:<24}{}  ({source})\n", axis["display"].as_str().unwrap_or("")));
        }
    }
    if let Some(declared) = c["max_message_rate_declared"].as_str() {
        out.push_str(&format!("  declared max_message_rate {declared} is unreachable\n"));
    }
    out
}

fn inspect_text(v: &Value, config: bool) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let state = &v["state"];
    let mut out = format!(
        "queue: {}\n\negress pool:   {}\negress source: {}\nprotocol:      {}\n\nready: {}\n",
        s(&v["queue_name"]),
        s(&v["egress_pool"]),
        s(&v["egress_source"]),
        s(&v["protocol"]),
        state["ready_count"],
    );
    for m in v["ready_messages"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}  {}\n", s(&m["id"]), s(&m["queue"])));
    }
    for (label, key) in [
        ("connection rate throttled", "connection_rate_throttled"),
        ("connection limited", "connection_limited"),
    ] {
        if state[key].is_object() {
            out.push_str(&format!(
                "\n{label}: {}\n  since: {}\n",
                s(&state[key]["context"]),
                s(&state[key]["since"])
            ));
        }
    }
    if state["suspended"].is_object() {
        let sus = &state["suspended"];
        out.push_str(&format!(
            "\nsuspended: {}\n  expires in: {}\n  id: {}\n",
            s(&sus["reason"]),
            s(&sus["duration"]),
            s(&sus["id"])
        ));
    }
    if let Some(names) = v["scheduled_queue_names"].as_array() {
        out.push_str(&format!("\nscheduled queues: {}\n", names.len()));
        names.iter().for_each(|n| out.push_str(&format!("  {}\n", s(n))));
    }
    out.push('\n');
    out.push_str(&ceilings(&v["constraints"]));
    out.push_str(&format!("\nconnections: {} ({} idle)\n", state["connection_count"], v["idle_connections"]));
    if config {
        out.push_str(&format!("\nconfig:\n{}\n", pretty(&v["path_config"].to_string())));
    }
    out.trim_end().to_string()
}

fn resolved_text(v: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let entries: Vec<String> = v["egress_pool"]["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{} (weight {})", s(&e["name"]), e["weight"]))
        .collect();
    format!(
        "domain:          {}\nscheduled queue: {}\negress pool:     {}: {}\nsource:          {}\nready queue:     {}\n\n--- egress path config ---\n{}\n\n--- effective ceilings ---\n{}",
        s(&v["domain"]),
        s(&v["scheduled_queue"]),
        s(&v["egress_pool"]["name"]),
        entries.join(", "),
        s(&v["source"]),
        s(&v["queue_name"]),
        pretty(&v["path_config"].to_string()),
        ceilings(&v["constraints"]).trim_end(),
    )
}
