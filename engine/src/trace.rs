//! `ferry trace-smtp-server` and `ferry trace-smtp-client`: live SMTP traces from the node's
//! websocket endpoints, with kcli's filters, one readable line per event (or the raw JSON with
//! `--json`). A line on stderr says when the subscription is live.

use std::collections::HashSet;

use anyhow::{Context, bail};
use awc::ws;
use ferry_actors::model::smtp_trace::{
    ClientTraceEvent, ClientTracePayload, ClientTraceRequest, ServerTraceEvent, ServerTracePayload,
    ServerTraceRequest,
};
use ferry_config::Cidr;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use crate::admin::Api;

/// Which sessions to show, as kcli picks them.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionChoice {
    /// Abbreviate multi-line reads (server) or writes (client) to their first line and size.
    #[arg(long)]
    pub terse: bool,
    /// Only sessions opened after the trace started.
    #[arg(long)]
    pub only_new: bool,
    /// Only the first session seen; exit when it closes.
    #[arg(long)]
    pub only_one: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServerTraceArgs {
    /// Only connections from this address or CIDR block; repeatable.
    #[arg(long)]
    pub source: Vec<Cidr>,
    #[command(flatten)]
    pub choice: SessionChoice,
}

/// Allow-lists, each repeatable; `*` in a name matches any run of characters.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientTraceArgs {
    /// Our source address (CIDR).
    #[arg(long)]
    pub source: Vec<Cidr>,
    /// The MX host's address (CIDR).
    #[arg(long)]
    pub mx_addr: Vec<Cidr>,
    #[arg(long)]
    pub mx_host: Vec<String>,
    /// Recipient domain (per message).
    #[arg(long)]
    pub domain: Vec<String>,
    #[arg(long)]
    pub routing_domain: Vec<String>,
    #[arg(long)]
    pub campaign: Vec<String>,
    #[arg(long)]
    pub tenant: Vec<String>,
    #[arg(long)]
    pub egress_pool: Vec<String>,
    #[arg(long)]
    pub egress_source: Vec<String>,
    #[arg(long)]
    pub mail_from: Vec<String>,
    #[arg(long)]
    pub rcpt_to: Vec<String>,
    #[arg(long)]
    pub ready_queue: Vec<String>,
    #[command(flatten)]
    pub choice: SessionChoice,
}

fn cidrs(list: Vec<Cidr>) -> Option<Vec<Cidr>> {
    (!list.is_empty()).then_some(list)
}

pub async fn server(api: &Api, args: ServerTraceArgs) -> anyhow::Result<()> {
    let request = ServerTraceRequest { source_addr: cidrs(args.source), terse: args.choice.terse };
    let mut sessions = Sessions::new(&args.choice);
    follow(api, "/api/admin/trace-smtp-server/v1", &request, "inbound SMTP sessions", |text| {
        let event: ServerTraceEvent = serde_json::from_str(text).context("not a TraceSmtpV1Event")?;
        let key = server_key(&event.conn_meta);
        let (opened, closed) =
            (event.payload == ServerTracePayload::Connected, event.payload == ServerTracePayload::Closed);
        if !sessions.shows(&key, opened) {
            return Ok(true);
        }
        if !api.json {
            print_lines(&event.when, &key, server_lines(&event.payload));
        } else {
            println!("{text}");
        }
        Ok(sessions.goes_on(&key, closed))
    })
    .await
}

pub async fn client(api: &Api, args: ClientTraceArgs) -> anyhow::Result<()> {
    let request = ClientTraceRequest {
        campaign: args.campaign,
        tenant: args.tenant,
        domain: args.domain,
        routing_domain: args.routing_domain,
        egress_pool: args.egress_pool,
        egress_source: args.egress_source,
        mail_from: args.mail_from,
        rcpt_to: args.rcpt_to,
        source_addr: cidrs(args.source),
        mx_host: args.mx_host,
        ready_queue: args.ready_queue,
        mx_addr: cidrs(args.mx_addr),
        terse: args.choice.terse,
    };
    let mut sessions = Sessions::new(&args.choice);
    follow(api, "/api/admin/trace-smtp-client/v1", &request, "outbound SMTP connections", |text| {
        let event: ClientTraceEvent = serde_json::from_str(text).context("not a TraceSmtpClientV1Event")?;
        let key = event.conn_meta.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let (opened, closed) =
            (event.payload == ClientTracePayload::BeginSession, event.payload == ClientTracePayload::Closed);
        if !sessions.shows(&key, opened) {
            return Ok(true);
        }
        if !api.json {
            print_lines(&event.when, &key, client_lines(&event.payload, &event.conn_meta));
        } else {
            println!("{text}");
        }
        Ok(sessions.goes_on(&key, closed))
    })
    .await
}

/// Connect, send the filter, then hand each text message to `each` until it says stop (false)
/// or the node closes the stream.
async fn follow(
    api: &Api,
    path: &str,
    request: &impl serde::Serialize,
    what: &str,
    mut each: impl FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let url = format!("{}{path}", api.base);
    let (_, mut conn) = api
        .websocket(&url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    conn.send(ws::Message::Text(serde_json::to_string(request)?.into())).await?;
    eprintln!("ferry: tracing {what} at {url} (subscribed; Ctrl-C to stop)");
    while let Some(frame) = conn.next().await {
        match frame.with_context(|| format!("reading from {url}"))? {
            ws::Frame::Text(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                if !each(&text)? {
                    return Ok(());
                }
                // A pipe (`| grep`) sees each event as it happens.
                std::io::stdout().flush()?;
            }
            ws::Frame::Ping(p) => conn.send(ws::Message::Pong(p)).await?,
            ws::Frame::Close(reason) => {
                if let Some(r) = reason.and_then(|r| r.description) {
                    bail!("{url} closed the trace: {r}");
                }
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

/// `--only-new` and `--only-one`, by session key.
struct Sessions {
    only_new: bool,
    only_one: bool,
    seen: HashSet<String>,
    chosen: Option<String>,
}

impl Sessions {
    fn new(choice: &SessionChoice) -> Sessions {
        Sessions { only_new: choice.only_new, only_one: choice.only_one, seen: HashSet::new(), chosen: None }
    }

    /// Show this event? A keyless event (a "lagged" notice) always shows.
    fn shows(&mut self, key: &str, opened: bool) -> bool {
        if key.is_empty() {
            return true;
        }
        if self.chosen.as_deref().is_some_and(|c| c != key) {
            return false;
        }
        if !self.seen.contains(key) {
            if self.only_new && !opened {
                return false;
            }
            self.seen.insert(key.to_string());
            if self.only_one {
                self.chosen = Some(key.to_string());
            }
        }
        true
    }

    /// False once the one session of `--only-one` has closed.
    fn goes_on(&mut self, key: &str, closed: bool) -> bool {
        if closed {
            self.seen.remove(key);
            return !(self.only_one && self.chosen.as_deref() == Some(key));
        }
        true
    }
}

fn server_key(meta: &Value) -> String {
    let get = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    match (get("received_from"), get("received_via")) {
        (from, _) if from.is_empty() => String::new(),
        (from, via) => format!("{from}->{via}"),
    }
}

fn text_lines(arrow: &str, text: &str) -> Vec<String> {
    text.trim_end().lines().map(|l| format!("{arrow} {}", l.escape_debug())).collect()
}

fn server_lines(payload: &ServerTracePayload) -> Vec<String> {
    match payload {
        ServerTracePayload::Connected => vec!["=== Connected".into()],
        ServerTracePayload::Closed => vec!["=== Closed".into()],
        ServerTracePayload::Read(t) => text_lines("->", t),
        ServerTracePayload::Write(t) => text_lines("<-", t),
        ServerTracePayload::Diagnostic { level, message } => vec![format!("=== {level}: {message}")],
        ServerTracePayload::AbbreviatedRead { snippet, len } => {
            vec![format!("-> {} ({len} bytes read)", snippet.escape_debug())]
        }
    }
}

fn client_lines(payload: &ClientTracePayload, meta: &Value) -> Vec<String> {
    let get = |k: &str| meta.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()));
    match payload {
        ClientTracePayload::BeginSession => vec![format!(
            "=== BeginSession {} via {} to {} [{}]",
            get("ready_queue").unwrap_or_default(),
            get("egress_source").unwrap_or_default(),
            get("mx_host").unwrap_or_default(),
            get("mx_address").unwrap_or_default(),
        )],
        ClientTracePayload::Connected => {
            vec![format!("=== Connected from {}", get("source_address").unwrap_or_default())]
        }
        ClientTracePayload::MessageObtained => vec![format!(
            "=== MessageObtained from {} to {}",
            get("sender").unwrap_or_default(),
            get("recipient").unwrap_or_default()
        )],
        ClientTracePayload::Closed => vec!["=== Closed".into()],
        ClientTracePayload::Read(t) => text_lines("<-", t),
        ClientTracePayload::Write(t) => text_lines("->", t),
        ClientTracePayload::Diagnostic { level, message } => vec![format!("=== {level}: {message}")],
        ClientTracePayload::AbbreviatedWrite { snippet, len } => {
            vec![format!("-> {} ({len} bytes written)", snippet.escape_debug())]
        }
    }
}

fn print_lines(when: &chrono::DateTime<chrono::Utc>, key: &str, lines: Vec<String>) {
    let at = when.format("%H:%M:%S%.3f");
    for line in lines {
        println!("{at} [{key}] {line}");
    }
}
