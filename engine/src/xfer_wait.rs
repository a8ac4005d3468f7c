//! `ferry xfer --wait`: follow an admin xfer sweep (`GET /api/admin/xfer/status/v1?id=`) with a
//! progress bar on a terminal, or a line every few seconds otherwise, until every message it
//! moved has left the node. Exit 1 if any was left behind or the wait timed out.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_actors::xfer::SweepStatus;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::admin::{Api, call};

const POLL: Duration = Duration::from_millis(250);
/// Without a terminal, a progress line at most this often.
const LINE_EVERY: Duration = Duration::from_secs(5);

fn counts(s: &SweepStatus) -> String {
    let mut text = format!(
        "{} moved, {} remaining, {} failing, {} left behind",
        s.transferred, s.remaining, s.failing, s.left
    );
    if s.sweeping {
        text.push_str(" (still sweeping)");
    }
    if s.failing > 0
        && let Some(e) = &s.last_error
    {
        text.push_str(&format!("; last error: {e}"));
    }
    text
}

pub async fn follow(api: &Api, sweep: uuid::Uuid, timeout: Option<Duration>) -> anyhow::Result<()> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if terminal { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}) {msg}",
        )
        .expect("valid template"),
    );
    eprintln!("following xfer sweep {sweep}; interrupting this does not stop the transfer");
    let mut last_line = Instant::now();
    let mut last_seen = None;
    let status = loop {
        let path = format!("/api/admin/xfer/status/v1?id={sweep}");
        let (_, text) =
            call(api, awc::http::Method::GET, &path, None).await.context("following the transfer")?;
        let s: SweepStatus =
            serde_json::from_str(&text).with_context(|| format!("unexpected status reply: {text}"))?;
        bar.set_length(s.total);
        bar.set_position(s.transferred + s.left);
        bar.set_message(counts(&s));
        let seen = (s.transferred, s.left, s.failing, s.total);
        if !terminal && (last_line.elapsed() >= LINE_EVERY || s.done) && last_seen != Some(seen) {
            eprintln!("xfer: {}/{} {}", s.transferred + s.left, s.total, counts(&s));
            last_line = Instant::now();
            last_seen = Some(seen);
        }
        if s.done {
            break s;
        }
        if let Some(limit) = timeout
            && started.elapsed() >= limit
        {
            bar.abandon();
            bail!(
                "gave up waiting after {}: {} of {} messages are still on this node ({} failing{}); the transfer goes on",
                ferry_config::format_duration(limit),
                s.remaining,
                s.total,
                s.failing,
                s.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
            );
        }
        actix_rt::time::sleep(POLL).await;
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "xfer to {}: {} of {} messages moved in {:.1}s ({:.0}/s), {} left behind",
        status.target,
        status.transferred,
        status.total,
        secs,
        status.transferred as f64 / secs.max(0.001),
        status.left
    );
    if status.left > 0 {
        bail!(
            "{} messages were left behind (cancelled, re-routed, bounced or expired) and are not on {}",
            status.left,
            status.target
        );
    }
    Ok(())
}
