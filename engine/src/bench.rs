//! `ferry bench-smtp`: an SMTP load generator. Each connection sends messages back to back
//! (MAIL, RCPT and DATA pipelined), and the time from MAIL to the final 250 is the latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// SMTP server to send to, HOST:PORT.
    #[arg(long)]
    target: String,
    /// Total messages to send.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    concurrency: u64,
    /// Message size in bytes (headers included).
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Recipient domain.
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Spread recipients over this many domains (d0.<domain> …), i.e. that many queues.
    #[arg(long, default_value_t = 1)]
    domains: u64,
    /// Extra header line added to every message, e.g. 'X-Schedule: {"first_attempt":"2099-01-01T00:00:00Z"}'.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Send at this many messages per second in all (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Print the number sent and the latency percentiles of each window of this many seconds.
    #[arg(long, default_value_t = 0)]
    report_every: u64,
    /// STARTTLS on every connection after EHLO (the server's certificate is not checked: this
    /// measures the cost of TLS, not a trust setup).
    #[arg(long)]
    starttls: bool,
    /// Messages per connection, then QUIT and connect again (0: keep each connection to the end).
    /// `--per-connection 1 --starttls` measures the TLS handshake rate of one-shot clients.
    #[arg(long, default_value_t = 0)]
    per_connection: u64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(args))
}

pub(crate) fn body(size: usize, headers: &[String]) -> Vec<u8> {
    let mut b = b"From: bench@ferry.test\r\nTo: bench@example.com\r\nSubject: ferry bench\r\n".to_vec();
    for h in headers {
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"\r\n");
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while b.len() + line.len() <= size {
        b.extend_from_slice(line);
    }
    b.resize(size.max(b.len()), b'x');
    if !b.ends_with(b"\r\n") {
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b".\r\n");
    b
}

type Reader = BufReader<Box<dyn AsyncRead + Unpin + Send>>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

async fn reply<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, line: &mut String) -> anyhow::Result<u16> {
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 {
            bail!("server closed the connection");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3).and_then(|c| c.parse().ok()).context("malformed reply");
        }
    }
}

/// STARTTLS, the handshake (any certificate), and EHLO again over TLS.
async fn start_tls(mut stream: BufReader<TcpStream>, line: &mut String) -> anyhow::Result<(Reader, Writer)> {
    stream.get_mut().write_all(b"STARTTLS\r\n").await?;
    if reply(&mut stream, line).await? != 220 {
        bail!("STARTTLS refused: {line}");
    }
    // Built once: loading the system's roots per connection would be what we measure.
    static TLS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = match TLS.get() {
        Some(c) => c.clone(),
        None => {
            TLS.get_or_init(|| ferry_actors::tls::ClientTls::new(None).expect("client TLS").insecure).clone()
        }
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from("bench.ferry.test")?;
    let tls_stream = connector.connect(name, stream.into_inner()).await.context("TLS handshake")?;
    let (tr, tw) = tokio::io::split(tls_stream);
    let mut r: Reader = BufReader::new(Box::new(tr));
    let mut w: Writer = Box::new(tw);
    w.write_all(b"EHLO bench.ferry.test\r\n").await?;
    reply(&mut r, line).await?;
    Ok((r, w))
}

/// Shared by the connections: the pacing clock and the current reporting window.
struct Shared {
    started: tokio::time::Instant,
    window: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

/// Connect, EHLO, and STARTTLS if asked.
async fn open(args: &BenchArgs, line: &mut String) -> anyhow::Result<(Reader, Writer)> {
    let stream =
        TcpStream::connect(&args.target).await.with_context(|| format!("connect {}", args.target))?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    reply(&mut stream, line).await?;
    stream.get_mut().write_all(b"EHLO bench.ferry.test\r\n").await?;
    reply(&mut stream, line).await?;
    if args.starttls {
        return start_tls(stream, line).await;
    }
    let (r, w) = stream.into_inner().into_split();
    Ok((BufReader::new(Box::new(r) as Box<dyn AsyncRead + Unpin + Send>), Box::new(w) as Writer))
}

/// One client connection at a time, sending until every message is claimed; reconnecting after
/// `per_connection` messages. Returns the latencies and the number of connections made.
async fn connection(
    args: Arc<BenchArgs>,
    next: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    data: Arc<Vec<u8>>,
    shared: Arc<Shared>,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let mut line = String::new();
    let mut latencies = Vec::new();
    let mut connections = 0;
    let mut open_conn: Option<(Reader, Writer, u64)> = None;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= args.messages {
            break;
        }
        if let Some((r, w, sent)) = open_conn.as_mut()
            && args.per_connection > 0
            && *sent == args.per_connection
        {
            w.write_all(b"QUIT\r\n").await?;
            reply(r, &mut line).await?;
            open_conn = None;
        }
        let (r, w, sent) = match open_conn.as_mut() {
            Some(c) => c,
            None => {
                let (r, w) = open(&args, &mut line).await?;
                connections += 1;
                open_conn.insert((r, w, 0))
            }
        };
        *sent += 1;
        if args.rate > 0 {
            let slot = shared.started + Duration::from_secs_f64(n as f64 / args.rate as f64);
            tokio::time::sleep_until(slot).await;
        }
        let started = Instant::now();
        let domain = if args.domains > 1 {
            format!("d{}.{}", n % args.domains, args.domain)
        } else {
            args.domain.clone()
        };
        let envelope = format!("MAIL FROM:<bench@ferry.test>\r\nRCPT TO:<bench{n}@{domain}>\r\nDATA\r\n");
        w.write_all(envelope.as_bytes()).await?;
        let codes = [reply(r, &mut line).await?, reply(r, &mut line).await?, reply(r, &mut line).await?];
        if codes != [250, 250, 354] {
            failed.fetch_add(1, Ordering::Relaxed);
            w.write_all(b"RSET\r\n").await?;
            reply(r, &mut line).await?;
            continue;
        }
        w.write_all(&data).await?;
        if reply(r, &mut line).await? == 250 {
            let micros = started.elapsed().as_micros() as u64;
            latencies.push(micros);
            if args.report_every > 0 {
                let _ = shared.window.lock().map(|mut h| h.record(micros));
            }
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some((_, mut w, _)) = open_conn {
        w.write_all(b"QUIT\r\n").await?;
    }
    Ok((latencies, connections))
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let data = Arc::new(body(args.size, &args.headers));
    let started = Instant::now();
    let shared = Arc::new(Shared {
        started: tokio::time::Instant::now(),
        window: std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(3)?),
    });
    let reporter = (args.report_every > 0).then(|| {
        let shared = shared.clone();
        let every = Duration::from_secs(args.report_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(shared.started + every, every);
            loop {
                tick.tick().await;
                let window = shared.window.lock().map(|mut h| {
                    let copy = h.clone();
                    h.reset();
                    copy
                });
                let Ok(h) = window else { return };
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                println!(
                    "window t={}s: {} msgs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    shared.started.elapsed().as_secs(),
                    h.len(),
                    ms(0.5),
                    ms(0.99),
                    h.max() as f64 / 1000.0
                );
            }
        })
    });
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            tokio::spawn(connection(args.clone(), next.clone(), failed.clone(), data.clone(), shared.clone()))
        })
        .collect();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut connections = 0;
    for t in tasks {
        let (latencies, made) = t.await??;
        connections += made;
        for l in latencies {
            hist.record(l)?;
        }
    }
    if let Some(r) = reporter {
        r.abort();
    }
    let elapsed = started.elapsed();
    let ok = hist.len();
    let ms = |q: f64| Duration::from_micros(hist.value_at_quantile(q)).as_secs_f64() * 1000.0;
    println!(
        "sent {ok} messages of {} bytes over {} concurrent connections in {:.2}s: {:.0} msgs/s; {} failed",
        args.size,
        args.concurrency,
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "latency MAIL->250: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        hist.max() as f64 / 1000.0
    );
    if args.per_connection > 0 {
        println!(
            "{connections} connections{}: {:.0} connections/s",
            if args.starttls { " with a TLS handshake each" } else { "" },
            connections as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// `ferry bench-policy`: requeue decisions per second through the LuaPolicy actor (the pool of
/// Lua states), with a trivial handler or the seed 001 smart-host handler.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyBenchArgs {
    /// `trivial` (returns at once) or `seed` (seed 001's reroute check).
    #[arg(long, default_value = "seed")]
    handler: String,
    #[arg(long, default_value_t = 200_000)]
    decisions: u64,
    /// Decisions in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: u64,
    /// Lua states in the delivery lane (requeue_message runs there); 0 = one per core.
    #[arg(long, default_value_t = 0)]
    states: usize,
}

const TRIVIAL: &str = "kumo.on('requeue_message', function(msg) end)";
const SEED: &str = "local SMART_HOST = '[10.0.0.1]'
kumo.on('requeue_message', function(msg)
  local queue = msg:get_queue_name()
  if queue ~= SMART_HOST and msg:num_attempts() >= 2 then
    msg:set_meta('queue', SMART_HOST)
    msg:set_scheduling(nil)
  end
end)";

pub fn run_policy(args: PolicyBenchArgs) -> anyhow::Result<()> {
    use ferry_actors::model::{Message, MessageIdGenerator};
    use ferry_actors::policy::requeue::RequeueArgs;
    use ferry_actors::policy::{Lane, PolicyPool};
    use ferry_config::PolicySource;

    let text = match args.handler.as_str() {
        "trivial" => TRIVIAL,
        "seed" => SEED,
        other => bail!("unknown --handler {other:?}: use trivial or seed"),
    };
    let pool = PolicyPool::start(Some(PolicySource::Embedded { name: "bench.lua", text }), args.states)?;
    let ids = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let mut template = Message::new(
        ids.generate(),
        "sender@example.com".into(),
        vec!["user@example.com".into()],
        bytes::Bytes::from_static(b"Subject: bench\r\n\r\nbody\r\n"),
    );
    template.num_attempts = 1;
    let requeue = RequeueArgs {
        smtp_response: "400 4.0.0 tempfail requested".into(),
        insert_context: vec!["LoggedTransientFailure".into()],
        increment_attempts: true,
        delay: None,
        backoff: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let started = Instant::now();
    let per_task = args.decisions / args.concurrency.max(1);
    let total = per_task * args.concurrency.max(1);
    rt.block_on(async {
        let tasks: Vec<_> = (0..args.concurrency.max(1))
            .map(|_| {
                let (pool, template, requeue) = (pool.clone(), template.clone(), requeue.clone());
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let (msg, args) = (template.clone(), requeue.clone());
                        let (_, result) = pool
                            .call(Lane::Delivery, move |state| state.requeue_message(msg, &args))
                            .await
                            .map(|(m, r, _)| (m, r))?;
                        result?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} requeue decisions with the {} handler on {} Lua state(s) in {secs:.2}s: {:.0} decisions/s",
        args.handler,
        pool.size(),
        total as f64 / secs
    );
    Ok(())
}
