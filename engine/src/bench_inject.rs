//! `ferry bench-inject`: HTTP injection load. Sends `--requests` requests of `--recipients`
//! recipients each, with a Jinja template (subject, text and HTML rendered per recipient), over
//! `--concurrency` connections, and reports recipients per second: a recipient counts once its
//! request's answer arrived, which the node sends only after the spool commit holding it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(clap::Args, Debug, Clone)]
pub struct InjectBenchArgs {
    /// HTTP listener of the node, e.g. http://127.0.0.1:8000
    #[arg(long)]
    target: String,
    /// Requests to send.
    #[arg(long, default_value_t = 50)]
    requests: u64,
    /// Recipients per request.
    #[arg(long, default_value_t = 1000)]
    recipients: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: u64,
    /// Bearer token, for a node that does not trust this address.
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// One request: a templated newsletter of about 2 KB per rendered message.
fn request_body(recipients: u64, offset: u64) -> Value {
    let list: Vec<Value> = (0..recipients)
        .map(|n| {
            let n = offset + n;
            json!({"email": format!("user{n}@d{}.example.com", n % 10), "name": format!("User {n}"),
                   "substitutions": {"code": format!("{n:08x}"), "points": n % 1000}})
        })
        .collect();
    let para = "The quick brown fox jumps over the lazy dog, again and again and again. ".repeat(8);
    json!({
        "envelope_sender": "bench@ferry.test",
        "recipients": list,
        "substitutions": {"brand": "Ferry", "para": para},
        "content": {
            "from": {"email": "news@ferry.test", "name": "Ferry bench"},
            "subject": "{{ brand }} news for {{ name }}",
            "text_body": "Hello {{ name }},\n\nYour code is {{ code }} and you have {{ points }} points.\n\n{{ para }}\n",
            "html_body": "<html><body><p>Hello <b>{{ name }}</b>,</p><p>Your code is {{ code }}; {{ points }} points.</p><p>{{ para }}</p></body></html>",
        },
    })
}

pub fn run(args: InjectBenchArgs) -> anyhow::Result<()> {
    if args.requests == 0 || args.recipients == 0 || args.concurrency == 0 {
        bail!("--requests, --recipients and --concurrency must be at least 1");
    }
    actix_rt::System::new().block_on(bench(args))
}

async fn bench(args: InjectBenchArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/inject/v1", args.target.trim_end_matches('/'));
    // Bodies are made before the clock starts: the client's JSON work is not the node's.
    let bodies: Vec<bytes::Bytes> = (0..args.requests)
        .map(|n| bytes::Bytes::from(request_body(args.recipients, n * args.recipients).to_string()))
        .collect();
    let size = bodies.first().map_or(0, |b| b.len());
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let latencies = Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (url, token, bodies) = (url.clone(), args.token.clone(), bodies.clone());
            let (ok, failed, latencies) = (ok.clone(), failed.clone(), latencies.clone());
            actix_rt::spawn(async move {
                let client = ferry_actors::xfer::http_client(None, Duration::from_secs(300));
                loop {
                    let Some(body) = bodies.lock().expect("bodies").pop() else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    let mut req = client.post(&url).insert_header(("Content-Type", "application/json"));
                    if let Some(t) = &token {
                        req = req.insert_header(("Authorization", format!("Bearer {t}")));
                    }
                    let sent = Instant::now();
                    let mut resp = req.send_body(body).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
                    let text = resp.body().limit(64 << 20).await.context("reading the answer")?;
                    if !resp.status().is_success() {
                        bail!("{url}: {}: {}", resp.status(), String::from_utf8_lossy(&text));
                    }
                    latencies.lock().expect("histogram").record(sent.elapsed().as_micros() as u64)?;
                    let answer: Value = serde_json::from_slice(&text)?;
                    ok.fetch_add(answer["success_count"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    failed.fetch_add(answer["fail_count"].as_u64().unwrap_or(0), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.context("worker")??;
    }
    let elapsed = started.elapsed();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let h = latencies.lock().expect("histogram");
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "requests: {} x {} recipients ({} KB each), concurrency {}",
        args.requests,
        args.recipients,
        size / 1024,
        args.concurrency
    );
    println!("spooled: {ok} recipients, failed: {failed}, in {:.2}s", elapsed.as_secs_f64());
    println!("rate: {:.0} recipients/s", ok as f64 / elapsed.as_secs_f64());
    println!(
        "request latency ms: p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0)
    );
    Ok(())
}
