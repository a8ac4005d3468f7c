//! The admin client: `ferry suspend`, `inspect-sched-q`, … with KumoMTA kcli's flags and HTTP calls
//! (SPEC §5). Endpoint: `--endpoint`, else `$KUMO_KCLI_ENDPOINT`, else http://127.0.0.1:8000.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(clap::Args, Debug, Clone)]
pub struct Endpoint {
    /// Admin HTTP endpoint of the node.
    #[arg(long, env = "KUMO_KCLI_ENDPOINT", default_value = "http://127.0.0.1:8000", global = true)]
    pub endpoint: String,
    /// Bearer token (the node's `http.bearer_token`), for nodes that do not trust this address.
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the node's JSON answers (for scripts) instead of tables and sentences.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM certificates to trust for an https:// endpoint, besides the system's roots.
    #[arg(long, env = "FERRY_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Queue selection shared by suspend, bounce, xfer and rebind.
#[derive(clap::Args, Debug, Clone, Default)]
#[group(required = true, multiple = true)]
pub struct Selection {
    #[arg(long)]
    pub domain: Option<String>,
    #[arg(long)]
    pub campaign: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// Match this routing domain (xfer, bounce, rebind; suspensions have none).
    #[arg(long)]
    pub routing_domain: Option<String>,
    /// Exact scheduled queue name; repeatable. Excludes the other criteria.
    #[arg(long = "queue", conflicts_with_all = ["domain", "campaign", "tenant", "routing_domain"])]
    pub queues: Vec<String>,
    /// Every queue.
    #[arg(long, conflicts_with_all = ["domain", "campaign", "tenant", "routing_domain", "queues"])]
    pub everything: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCmd {
    /// Suspend delivery for matching scheduled queues: each promotion becomes a transient failure.
    Suspend {
        #[command(flatten)]
        selection: Selection,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "5m")]
        duration: String,
    },
    /// List active suspensions.
    SuspendList,
    /// Cancel a suspension.
    SuspendCancel {
        #[arg(long)]
        id: String,
    },
    /// Move the messages waiting in matching queues to another node (runs asynchronously).
    Xfer {
        #[command(flatten)]
        selection: Selection,
        /// Recorded in the AdminRebind record of every moved message.
        #[arg(long)]
        reason: String,
        /// HTTP listener of the destination node, e.g. http://10.0.0.2:8000. Give it several times
        /// to drain over several peers: each matched queue goes whole to one of them.
        #[arg(long, required = true)]
        target: Vec<String>,
        /// Follow the transfer with a progress display until every moved message has left this
        /// node; exit 1 if any was left behind (cancelled, re-routed, bounced, expired).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (e.g. 30m) and exit 1; the transfer goes on.
        #[arg(long, requires = "wait")]
        wait_timeout: Option<String>,
    },
    /// Bounce the messages of matching queues now, and any that arrive while the bounce lasts.
    Bounce {
        #[command(flatten)]
        selection: Selection,
        /// Recorded in each AdminBounce record.
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "5m")]
        duration: String,
        /// Bounce without AdminBounce records.
        #[arg(long)]
        suppress_logging: bool,
    },
    /// List active bounces and how many messages each has bounced.
    BounceList,
    /// Cancel a bounce.
    BounceCancel {
        #[arg(long)]
        id: String,
    },
    /// Change the meta of waiting messages (e.g. their queue) and requeue them (runs asynchronously).
    Rebind {
        #[command(flatten)]
        selection: Selection,
        /// Recorded in the AdminRebind record of every message whose queue changes.
        #[arg(long)]
        reason: String,
        /// Meta to set, as a JSON object, e.g. '{"queue":"rebound.com"}'.
        #[arg(long)]
        data: Option<String>,
        /// Meta to set, KEY=VALUE; repeatable; merged over --data.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Make every matched message due now, even if its queue does not change.
        #[arg(long)]
        always_flush: bool,
        /// Rebind without AdminRebind records.
        #[arg(long)]
        suppress_logging: bool,
        /// Call the policy's rebind_message(msg, data) instead of copying the data into meta.
        #[arg(long)]
        trigger_rebind_event: bool,
    },
    /// Send the messages waiting in an xfer queue back to their original queues, due now.
    XferCancel {
        /// The xfer queue, e.g. http://10.0.0.1:8000/.xfer.kumomta.internal
        queue: String,
        #[arg(long)]
        reason: String,
    },
    /// Queues and their counts, from the node's metrics, with active suspensions and bounces.
    QueueSummary {
        /// Show at most this many scheduled queues.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Largest queues first (default: by name).
        #[arg(long)]
        by_volume: bool,
        /// Only the queues of this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// A live view of queues, dispatchers, xfer targets, the policy pool and the spool writer.
    Top {
        /// Print one frame and exit (no screen control).
        #[arg(long)]
        once: bool,
        /// Scheduled queues to show, largest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The nodes of the cluster as seen in its Redis: id, admin URL, version, queue totals, last
    /// heartbeat.
    Cluster,
    /// Show the messages waiting in a scheduled queue.
    InspectSchedQ {
        queue: String,
        #[arg(long)]
        want_body: bool,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        #[arg(long)]
        no_limit: bool,
    },
    /// Show one spooled message: envelope, meta, due time, attempts, scheduling (JSON).
    InspectMessage {
        /// The message id (from the 250 reply or a log record).
        id: String,
        /// Include the message's bytes as `data`.
        #[arg(long)]
        want_body: bool,
    },
    /// Change the node's diagnostic (stderr) log filter until the next change or restart,
    /// e.g. `info,ferry_actors::delivery=debug`.
    SetLogFilter {
        /// A tracing EnvFilter directive, as FERRY_LOG takes.
        filter: String,
    },
    /// Inject a message to one or more recipients over HTTP (`POST /api/inject/v1`).
    Inject(crate::inject::InjectArgs),
    #[command(flatten)]
    ReadyQ(crate::ready_q::ReadyQCmd),
    /// Trace inbound SMTP sessions live: every command read and reply written (message content
    /// only by size, AUTH credentials redacted).
    TraceSmtpServer(crate::trace::ServerTraceArgs),
    /// Trace outbound SMTP connections live: every command sent and reply received, with the
    /// ready queue, egress source and MX host of each.
    TraceSmtpClient(crate::trace::ClientTraceArgs),
}

/// Where admin requests go, and with which credentials.
pub(crate) struct Api {
    pub base: String,
    token: Option<String>,
    pub json: bool,
    /// For https:// endpoints.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Api {
    /// A websocket request to `url`, with the bearer token if there is one.
    pub(crate) fn websocket(&self, url: &str) -> awc::ws::WebsocketsRequest {
        // The handshake must come within this; the stream itself may then stay quiet for hours.
        let client = ferry_actors::xfer::http_client(self.tls.as_ref(), Duration::from_secs(30));
        let req = client.ws(url);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }
}

/// Send a request; non-2xx is an error carrying the body.
pub(crate) async fn call(
    api: &Api,
    method: awc::http::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, String)> {
    let url = format!("{}{path}", api.base);
    let client = ferry_actors::xfer::http_client(api.tls.as_ref(), Duration::from_secs(60));
    let mut req = client.request(method, &url);
    if let Some(token) = &api.token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let bytes = resp.body().limit(64 << 20).await.with_context(|| format!("reading the reply from {url}"))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = resp.status();
    if !status.is_success() {
        bail!("{url}: {status}: {text}");
    }
    Ok((status.as_u16(), text))
}

/// Print a JSON answer: as it is with `--json`, else as `human` renders it.
pub(crate) fn say(api: &Api, text: &str, human: impl FnOnce(&Value) -> String) {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if !api.json => println!("{}", human(&v)),
        _ => println!("{}", pretty(text)),
    }
}

/// suspend-list / bounce-list as a table.
fn directive_table(list: &Value, bounces: bool) -> String {
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return format!("no active {}", if bounces { "bounces" } else { "suspensions" });
    }
    let mut header = vec!["ID", "MATCHES", "REASON", "REMAINING", "ORIGIN"];
    if bounces {
        header.push("BOUNCED");
    }
    let rows = items.iter().map(|d| {
        let mut row = vec![
            d["id"].as_str().unwrap_or("").to_string(),
            crate::observe::criteria_text(d),
            d["reason"].as_str().unwrap_or("").to_string(),
            d["duration"].as_str().unwrap_or("").to_string(),
            crate::cluster::origin_text(d),
        ];
        if bounces {
            row.push(d["total_bounced"].to_string());
        }
        row
    });
    let mut out = String::new();
    crate::observe::table(&mut out, &header, rows, usize::MAX);
    out.trim_end().to_string()
}

pub(crate) fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|_| text.to_string())
}

pub fn run(endpoint: &Endpoint, cmd: AdminCmd) -> anyhow::Result<()> {
    let tls =
        ferry_actors::tls::ClientTls::with_ca_files(endpoint.ca_file.iter().map(|p| p.as_path()).collect())
            .map_err(|e| anyhow::anyhow!("--ca-file: {e}"))?;
    let tls = Some(tls.verifying.clone());
    let api = Api {
        base: endpoint.endpoint.trim_end_matches('/').to_string(),
        token: endpoint.token.clone(),
        json: endpoint.json,
        tls,
    };
    actix_rt::System::new().block_on(run_async(api, cmd))
}

async fn run_async(api: Api, cmd: AdminCmd) -> anyhow::Result<()> {
    use awc::http::Method;
    match cmd {
        AdminCmd::Suspend { selection, reason, duration } => {
            if selection.routing_domain.is_some() {
                bail!(
                    "suspend does not take --routing-domain: suspensions match campaign, tenant, domain or queue names"
                );
            }
            let body = json!({
                "campaign": selection.campaign, "tenant": selection.tenant, "domain": selection.domain,
                "queue_names": selection.queues, "reason": reason, "duration": duration,
            });
            let (_, text) = call(&api, Method::POST, "/api/admin/suspend/v1", Some(body)).await?;
            say(&api, &text, |v| format!("suspended: id {}", v["id"].as_str().unwrap_or("?")));
        }
        AdminCmd::Xfer { selection, reason, target, wait, wait_timeout } => {
            let timeout = wait_timeout
                .map(|t| ferry_config::parse_duration(&t).map_err(|e| anyhow::anyhow!("--wait-timeout: {e}")))
                .transpose()?;
            let sweep = wait.then(uuid::Uuid::new_v4);
            let mut body = json!({
                "domain": selection.domain, "routing_domain": selection.routing_domain, "campaign": selection.campaign,
                "tenant": selection.tenant, "queue_names": selection.queues, "reason": reason, "target": target[0],
            });
            // KumoMTA's `target` for the first; Ferry's `targets` when there are more.
            if target.len() > 1 {
                body["targets"] = json!(target[1..]);
            }
            if let Some(id) = sweep {
                body["sweep_id"] = json!(id);
            }
            call(&api, Method::POST, "/api/admin/xfer/v1", Some(body)).await?;
            match sweep {
                None => eprintln!("NOTE: Xfer always runs asynchronously"),
                Some(id) => crate::xfer_wait::follow(&api, id, timeout).await?,
            }
        }
        AdminCmd::Bounce { selection, reason, duration, suppress_logging } => {
            let body = json!({
                "campaign": selection.campaign, "tenant": selection.tenant, "domain": selection.domain,
                "routing_domain": selection.routing_domain, "queue_names": selection.queues,
                "reason": reason, "duration": duration, "suppress_logging": suppress_logging,
            });
            let (_, text) = call(&api, Method::POST, "/api/admin/bounce/v1", Some(body)).await?;
            say(&api, &text, |v| {
                format!(
                    "bouncing: id {} (the sweep runs in the background; see bounce-list)",
                    v["id"].as_str().unwrap_or("?")
                )
            });
        }
        AdminCmd::BounceList => {
            let (_, text) = call(&api, Method::GET, "/api/admin/bounce/v1", None).await?;
            say(&api, &text, |v| directive_table(v, true));
        }
        AdminCmd::BounceCancel { id } => {
            let (_, text) =
                call(&api, Method::DELETE, "/api/admin/bounce/v1", Some(json!({"id": id}))).await?;
            println!("{text}");
        }
        AdminCmd::Rebind {
            selection,
            reason,
            data,
            set,
            always_flush,
            suppress_logging,
            trigger_rebind_event,
        } => {
            if !selection.queues.is_empty() {
                bail!(
                    "rebind does not take --queue: select with --domain, --routing-domain, --campaign, --tenant or --everything"
                );
            }
            let mut meta = match data {
                None => serde_json::Map::new(),
                Some(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => bail!("--data must be a JSON object, e.g. '{{\"queue\":\"rebound.com\"}}'"),
                    Err(e) => bail!("--data is not valid JSON: {e}"),
                },
            };
            for kv in set {
                let Some((k, v)) = kv.split_once('=') else { bail!("--set {kv:?}: expected KEY=VALUE") };
                meta.insert(k.to_string(), Value::String(v.to_string()));
            }
            let body = json!({
                "campaign": selection.campaign, "tenant": selection.tenant, "domain": selection.domain,
                "routing_domain": selection.routing_domain, "reason": reason, "data": meta,
                "always_flush": always_flush, "suppress_logging": suppress_logging,
                "trigger_rebind_event": trigger_rebind_event,
            });
            call(&api, Method::POST, "/api/admin/rebind/v1", Some(body)).await?;
            eprintln!("NOTE: rebind runs asynchronously");
        }
        AdminCmd::QueueSummary { limit, by_volume, domain } => {
            let args = crate::observe::SummaryArgs { limit, by_volume, domain, json: api.json };
            crate::observe::queue_summary(&api, args).await?;
        }
        AdminCmd::Top { once, limit } => crate::observe::top(&api, once, limit).await?,
        AdminCmd::XferCancel { queue, reason } => {
            let body = json!({"queue_name": queue, "reason": reason});
            call(&api, Method::POST, "/api/admin/xfer/cancel/v1", Some(body)).await?;
        }
        AdminCmd::SuspendList => {
            let (_, text) = call(&api, Method::GET, "/api/admin/suspend/v1", None).await?;
            say(&api, &text, |v| directive_table(v, false));
        }
        AdminCmd::SuspendCancel { id } => {
            let (_, text) =
                call(&api, Method::DELETE, "/api/admin/suspend/v1", Some(json!({"id": id}))).await?;
            println!("{text}");
        }
        AdminCmd::InspectSchedQ { queue, want_body, limit, no_limit } => {
            let mut url =
                format!("/api/admin/inspect-sched-q/v1?queue_name={}&limit={limit}", urlencode(&queue));
            if want_body {
                url.push_str("&want_body=true");
            }
            if no_limit {
                url.push_str("&no_limit=true");
            }
            let (_, text) = call(&api, Method::GET, &url, None).await?;
            println!("{}", pretty(&text));
        }
        AdminCmd::InspectMessage { id, want_body } => {
            let mut url = format!("/api/admin/inspect-message/v1?id={}", urlencode(&id));
            if want_body {
                url.push_str("&want_body=true");
            }
            let (_, text) = call(&api, Method::GET, &url, None).await?;
            println!("{}", pretty(&text));
        }
        AdminCmd::ReadyQ(cmd) => crate::ready_q::run(&api, cmd).await?,
        AdminCmd::Cluster => crate::cluster::run(&api).await?,
        AdminCmd::TraceSmtpServer(args) => crate::trace::server(&api, args).await?,
        AdminCmd::TraceSmtpClient(args) => crate::trace::client(&api, args).await?,
        AdminCmd::Inject(args) => crate::inject::run(&api, args).await?,
        AdminCmd::SetLogFilter { filter } => {
            let body = json!({"filter": filter});
            call(&api, Method::POST, "/api/admin/set_diagnostic_log_filter/v1", Some(body)).await?;
            if !api.json {
                println!("diagnostic log filter is now {filter}");
            }
        }
    }
    Ok(())
}

/// Percent-encode a query value (queue names contain ':', '@', '!', '/').
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
