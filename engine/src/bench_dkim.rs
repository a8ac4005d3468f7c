//! `ferry bench-dkim`: what DKIM signing costs per message, one core, for each key given. The
//! signer is built once (as the policy cache does) and then signs `--messages` bodies of
//! `--size` bytes; the figure is time per signature, which bounds the signing share of a relay.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ferry_actors::dkim::{KeyKind, Signer, SignerSpec};
use ferry_actors::secrets::KeySource;

#[derive(clap::Args, Debug, Clone)]
pub struct DkimBenchArgs {
    /// RSA private key (PEM, PKCS#1 or PKCS#8) to sign with rsa-sha256.
    #[arg(long)]
    rsa_key: Option<PathBuf>,
    /// ed25519 private key (PKCS#8 PEM or DER).
    #[arg(long)]
    ed25519_key: Option<PathBuf>,
    #[arg(long, default_value_t = 2_000)]
    messages: u64,
    /// Message size in bytes (headers included).
    #[arg(long, default_value_t = 4096)]
    size: usize,
}

fn spec(kind: KeyKind, key: PathBuf) -> SignerSpec {
    SignerSpec::new(kind, "ferry.test", "bench", &["From", "To", "Subject"], KeySource::File(key))
}

pub fn run(args: DkimBenchArgs) -> anyhow::Result<()> {
    let body = crate::bench::body(args.size, &[]);
    let keys = [
        (KeyKind::RsaSha256, "rsa-sha256", &args.rsa_key),
        (KeyKind::Ed25519, "ed25519-sha256", &args.ed25519_key),
    ];
    for (kind, name, key) in keys {
        let Some(key) = key else { continue };
        let started = Instant::now();
        let signer =
            Signer::build(spec(kind, key.clone())).with_context(|| format!("building the {name} signer"))?;
        let build = started.elapsed();
        let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
        let started = Instant::now();
        for _ in 0..args.messages {
            let t = Instant::now();
            let header = signer.sign(&body)?;
            hist.record(t.elapsed().as_nanos() as u64)?;
            std::hint::black_box(header);
        }
        let total = started.elapsed();
        let per = total / args.messages.max(1) as u32;
        println!(
            "{name}: {} signatures of {} B in {:.2}s: {:.1} µs each (p50 {:.1} / p99 {:.1} µs), {:.0} signatures/s on one core; building the signer took {:.2} ms",
            args.messages,
            body.len(),
            total.as_secs_f64(),
            per.as_nanos() as f64 / 1000.0,
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            args.messages as f64 / total.as_secs_f64(),
            build.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
