//! `ferry inject`: an operator's way into `POST /api/inject/v1` — a test message, a notice to a
//! few addresses, a saved .eml replayed — without writing JSON by hand.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use awc::http::Method;
use serde_json::{Map, Value, json};

use crate::admin::{Api, call, say};

#[derive(clap::Args, Debug)]
pub struct InjectArgs {
    /// Envelope sender (MAIL FROM); also the From header of a built message.
    #[arg(long)]
    from: String,
    /// Display name for the From header of a built message.
    #[arg(long)]
    from_name: Option<String>,
    /// A recipient; repeatable. Each becomes its own message.
    #[arg(long = "to", required = true)]
    to: Vec<String>,
    #[arg(long, conflicts_with = "raw_file")]
    subject: Option<String>,
    /// The text/plain body (a template unless --static).
    #[arg(long, conflicts_with = "raw_file")]
    text_file: Option<PathBuf>,
    /// The text/html body (a template unless --static).
    #[arg(long, conflicts_with = "raw_file")]
    html_file: Option<PathBuf>,
    /// Attach a file, as FILE or FILE:content/type; repeatable.
    #[arg(long = "attach", value_name = "FILE[:TYPE]", conflicts_with = "raw_file")]
    attach: Vec<String>,
    /// Extra header, "Name: value"; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE", conflicts_with = "raw_file")]
    headers: Vec<String>,
    /// A complete RFC 5322 message to send as it is (templates still apply unless --static).
    #[arg(long)]
    raw_file: Option<PathBuf>,
    /// A template variable for every recipient, KEY=VALUE; repeatable.
    #[arg(long = "subst", value_name = "KEY=VALUE")]
    substitutions: Vec<String>,
    /// Send the content as given, without template expansion.
    #[arg(long = "static")]
    no_templates: bool,
}

fn read_text(flag: &str, path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))
}

/// The request body `args` describe (KumoMTA's InjectV1Request).
pub fn request_body(args: &InjectArgs) -> anyhow::Result<Value> {
    let content = match &args.raw_file {
        Some(path) => Value::String(read_text("--raw-file", path)?),
        None => {
            if args.text_file.is_none() && args.html_file.is_none() {
                bail!("give --text-file and/or --html-file, or --raw-file");
            }
            let mut c = Map::new();
            c.insert("from".into(), json!({"email": args.from, "name": args.from_name}));
            if let Some(s) = &args.subject {
                c.insert("subject".into(), json!(s));
            }
            if let Some(p) = &args.text_file {
                c.insert("text_body".into(), json!(read_text("--text-file", p)?));
            }
            if let Some(p) = &args.html_file {
                c.insert("html_body".into(), json!(read_text("--html-file", p)?));
            }
            let mut headers = Map::new();
            for h in &args.headers {
                let Some((name, value)) = h.split_once(':') else {
                    bail!("--header {h:?}: expected \"Name: value\"")
                };
                headers.insert(name.trim().to_string(), json!(value.trim()));
            }
            c.insert("headers".into(), Value::Object(headers));
            let attachments =
                args.attach.iter().map(|a| attachment(a)).collect::<anyhow::Result<Vec<_>>>()?;
            c.insert("attachments".into(), Value::Array(attachments));
            Value::Object(c)
        }
    };
    let mut substitutions = Map::new();
    for kv in &args.substitutions {
        let Some((k, v)) = kv.split_once('=') else { bail!("--subst {kv:?}: expected KEY=VALUE") };
        substitutions.insert(k.to_string(), json!(v));
    }
    let recipients: Vec<Value> = args.to.iter().map(|to| json!({"email": to})).collect();
    Ok(json!({
        "envelope_sender": args.from,
        "recipients": recipients,
        "content": content,
        "substitutions": substitutions,
        "template_dialect": if args.no_templates { "Static" } else { "Jinja" },
    }))
}

fn attachment(spec: &str) -> anyhow::Result<Value> {
    use base64::Engine;
    // FILE:type/subtype; a path may itself contain ':', so the type is split off only if it has '/'.
    let (path, content_type) = match spec.rsplit_once(':') {
        Some((p, t)) if t.contains('/') => (p, t),
        _ => (spec, "application/octet-stream"),
    };
    let data = std::fs::read(path).with_context(|| format!("--attach {path}"))?;
    let file_name = Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned());
    Ok(json!({
        "data": base64::engine::general_purpose::STANDARD.encode(data),
        "base64": true,
        "content_type": content_type,
        "file_name": file_name,
    }))
}

/// Send the request and print the answer; an error (exit 1) if any recipient failed.
pub async fn run(api: &Api, args: InjectArgs) -> anyhow::Result<()> {
    let body = request_body(&args)?;
    let (_, text) = call(api, Method::POST, "/api/inject/v1", Some(body)).await?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    say(api, &text, |v| {
        let mut out = format!("injected {} message(s), {} failed", v["success_count"], v["fail_count"]);
        for e in v["errors"].as_array().into_iter().flatten() {
            out.push_str(&format!("\n  {}", e.as_str().unwrap_or_default()));
        }
        out
    });
    if answer["fail_count"].as_u64().unwrap_or(0) > 0 {
        bail!("{} recipient(s) were not injected", answer["fail_count"]);
    }
    Ok(())
}
