//! `ferry bench-spool`: the spool alone, driven the way a relay drives it. Messages arrive at a
//! steady rate; each is committed (meta and body, as reception does), held for a while (as a
//! delivery would take), then removed. The run has three phases: steady, a spike that lets
//! `--spike` messages pile up before releasing them (a slow destination, a paused queue), and
//! steady again. For each phase it prints the commit latency callers saw and the spool file size,
//! so what a backlog leaves behind in the spool can be read off directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use ferry_actors::model::id::MessageIdGenerator;
use ferry_actors::spool::{Spool, SpoolOp, SpoolWriter};
use tokio::sync::{Mutex, Semaphore};

#[derive(clap::Args, Debug, Clone)]
pub struct SpoolBenchArgs {
    /// Spool directory (created; must not hold a spool in use). Default: a fresh temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Messages per second.
    #[arg(long, default_value_t = 3300)]
    rate: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// How long each message stays spooled in the steady phases, in milliseconds.
    #[arg(long, default_value_t = 5)]
    hold_ms: u64,
    /// Seconds per steady phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Messages allowed to pile up in the spike phase before they are all released.
    #[arg(long, default_value_t = 5000)]
    spike: u64,
    /// fsync each commit (as the engine does by default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    fsync: bool,
}

pub fn run(args: SpoolBenchArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(args))
}

async fn bench(args: SpoolBenchArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ferry-bench-spool-{}", std::process::id())));
    let spool =
        Spool::open(&dir, 64 << 30, args.fsync).with_context(|| format!("opening {}", dir.display()))?;
    let writer = SpoolWriter::start(spool);
    let ids = MessageIdGenerator::new(&uuid::Uuid::new_v4());
    let body = Bytes::from(crate::bench::body(args.size, &[]));
    let meta = br#"{"sender":"bench@ferry.test","recipient":["bench@example.com"],"meta":{"tenant":"bench","received_from":"127.0.0.1:50000","reception_protocol":"ESMTP"}}"#.to_vec();
    let file = dir.join("data.mdb");
    println!(
        "bench-spool: {} msgs/s, {} B bodies, held {} ms, {} s per steady phase, spike of {}, fsync {}",
        args.rate, args.size, args.hold_ms, args.seconds, args.spike, args.fsync
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12} {:>11}",
        "phase", "messages", "p50 (ms)", "p99 (ms)", "max (ms)", "file (MB)", "CPU µs/msg", "written/msg"
    );
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    // Released when the spike is over: messages of the spike phase wait on it before removal.
    let gate = Arc::new(Semaphore::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, spike) in [("steady", false), ("spike", true), ("after", false)] {
        let latencies = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new(3)?));
        let count = if spike { args.spike } else { args.rate * args.seconds };
        let (cpu0, written0) = (cpu_micros(), written_bytes());
        let mut next = Instant::now();
        for _ in 0..count {
            next += interval;
            tokio::time::sleep_until(next.into()).await;
            let (writer, latencies, gate) = (writer.clone(), latencies.clone(), gate.clone());
            let id = ids.generate();
            let op = SpoolOp::Put { id, meta: meta.clone(), data: Some(body.clone()) };
            let hold = Duration::from_millis(args.hold_ms);
            tasks.spawn(async move {
                let t = Instant::now();
                writer.commit(vec![op]).await?;
                latencies.lock().await.record(t.elapsed().as_micros() as u64)?;
                if spike {
                    gate.acquire().await?.forget();
                } else {
                    tokio::time::sleep(hold).await;
                }
                writer.commit(vec![SpoolOp::Remove { id }]).await?;
                anyhow::Ok(())
            });
        }
        if spike {
            gate.add_permits(count as usize);
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let p = latencies.lock().await;
        let ms = |q: f64| p.value_at_quantile(q) as f64 / 1000.0;
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let n = p.len().max(1) as f64;
        println!(
            "{:<8} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>10.1} {:>12.1} {:>9.1} KB",
            name,
            p.len(),
            ms(0.5),
            ms(0.99),
            p.max() as f64 / 1000.0,
            size as f64 / 1e6,
            (cpu_micros() - cpu0) as f64 / n,
            (written_bytes() - written0) as f64 / n / 1024.0,
        );
    }
    writer.shutdown();
    // Every message was removed again: anything left is a lost removal.
    println!("left in the spool: {}", spool.count()?);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// User + system CPU time of this process so far.
fn cpu_micros() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct it is given.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// Bytes this process has caused to be written to storage (`write_bytes` of /proc/self/io; 0 where
/// the kernel does not say).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("write_bytes: ")?.trim().parse().ok()))
        .unwrap_or(0)
}
