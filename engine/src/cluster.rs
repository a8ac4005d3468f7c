//! `ferry cluster`: the nodes this node sees in the cluster's Redis, and the ORIGIN column of the
//! directive lists.

use awc::http::Method;
use serde_json::Value;

use crate::admin::{Api, call, say};

pub(crate) async fn run(api: &Api) -> anyhow::Result<()> {
    let (_, text) = call(api, Method::GET, "/api/admin/cluster/v1", None).await?;
    say(api, &text, table);
    Ok(())
}

fn table(v: &Value) -> String {
    if v["cluster"] != Value::Bool(true) {
        return "this node is not in a cluster (no [cluster] redis in its config)".into();
    }
    let me = v["node_id"].as_str().unwrap_or("");
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let rows = v["nodes"].as_array().cloned().unwrap_or_default().into_iter().map(|n| {
        let id = text(&n["node_id"]);
        let marker = if id == me { " (this node)" } else { "" };
        vec![
            format!("{id}{marker}"),
            text(&n["node_url"]),
            text(&n["version"]),
            text(&n["scheduled"]),
            text(&n["ready"]),
            text(&n["last_heartbeat"]),
        ]
    });
    let mut out = String::new();
    if v["connected"] != Value::Bool(true) {
        out.push_str("Redis is unreachable from this node: the nodes as last seen\n");
    }
    let header = ["NODE", "ADMIN URL", "VERSION", "SCHEDULED", "READY", "LAST HEARTBEAT"];
    crate::observe::table(&mut out, &header, rows, usize::MAX);
    out.trim_end().to_string()
}

/// A directive's `origin` as a table cell: the node's admin URL, else its id.
pub(crate) fn origin_text(d: &Value) -> String {
    let o = &d["origin"];
    o["node_url"].as_str().or_else(|| o["node_id"].as_str()).unwrap_or("").to_string()
}
