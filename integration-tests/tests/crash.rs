//! Crash safety (issue #7): SIGKILL at a random point during injection and during delivery, then
//! a restart. Pass: every message that got a 250 is still queued or delivered — 0 lost. The xfer
//! half is `xfer_crash.rs`. `FERRY_CRASH_SCALE` sets the message count (default 2,000 here;
//! `bench/crash.sh` runs 10,000); each test prints one `crash:` line with its counts.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_integration_tests::node::ferry_bin;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::{FerryNode, wait_until};

/// Two crash runs at once would only measure the machine: they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scale() -> usize {
    std::env::var("FERRY_CRASH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000)
}

/// A kill point: between 20 % and 80 % of the way.
fn kill_point(total: usize) -> usize {
    let f: f64 = 0.2 + rand::random::<f64>() * 0.6;
    ((total as f64) * f) as usize
}

const HOLD_POLICY: &str =
    "kumo.on('smtp_server_message_received', function(msg) msg:import_scheduling_header('X-Schedule') end)";

fn held_header() -> String {
    let first_attempt = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    format!("X-Schedule: {{\"first_attempt\":\"{first_attempt}\"}}")
}

/// Send messages on one connection until `stop` or any error; each 250's queue id goes to `acked`
/// the moment it arrives. Never panics: the server dying under it is the point.
fn client(addr: SocketAddr, header: String, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    let Ok(stream) = TcpStream::connect(addr) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut reply = || -> Option<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line);
            }
        }
    };
    let ok = |l: &Option<String>, code: &str| l.as_deref().is_some_and(|l| l.starts_with(code));
    if !ok(&reply(), "220") || w.write_all(b"EHLO crash.test\r\n").is_err() || !ok(&reply(), "250") {
        return;
    }
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = format!("{header}\r\nSubject: crash {n}\r\n\r\nbody {n}\r\n.\r\n");
        let steps: [(&[u8], &str); 3] = [
            (b"MAIL FROM:<s@example.com>\r\n", "250"),
            (b"RCPT TO:<r@example.com>\r\n", "250"),
            (b"DATA\r\n", "354"),
        ];
        for (cmd, want) in steps {
            if w.write_all(cmd).is_err() || !ok(&reply(), want) {
                return;
            }
        }
        if w.write_all(body.as_bytes()).is_err() {
            return;
        }
        match reply() {
            Some(l) if l.starts_with("250") => {
                let id = l.split("ids=").nth(1).map(|s| s.trim().to_string()).unwrap_or_default();
                acked.lock().unwrap().push(id);
            }
            _ => return,
        }
    }
}

#[test]
fn kill_9_during_injection_loses_no_acknowledged_message() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = scale();
    let mut node = FerryNode::start("[spool]\nfsync = true\n", Some(HOLD_POLICY));
    node.pin_ports();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, header, acked, stop) = (node.smtp, held_header(), acked.clone(), stop.clone());
            std::thread::spawn(move || client(addr, header, acked, stop))
        })
        .collect();
    let kill_at = kill_point(total);
    wait_until(&format!("{kill_at} acknowledged messages"), Duration::from_secs(300), || {
        (acked.lock().unwrap().len() >= kill_at).then_some(())
    });
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    node.restart();
    wait_until("the spool to be scheduled again", Duration::from_secs(60), || {
        node.stderr().contains("spooled messages scheduled").then_some(())
    });
    let spooled: HashSet<String> = node.spool_ids().into_iter().collect();
    let lost: Vec<&String> = acked.difference(&spooled).collect();
    println!(
        "crash: injection: killed at {} acknowledged; after restart {} spooled ({} committed without their 250 reaching the client); lost {}",
        acked.len(),
        spooled.len(),
        spooled.difference(&acked).count(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but gone after the crash: {lost:?}");
}

/// The Ferry id in the Received header this node added.
fn ferry_id(data: &str) -> Option<String> {
    let at = data.find("with ESMTP id ")? + "with ESMTP id ".len();
    data.get(at..at + 32).map(str::to_string)
}

#[test]
fn kill_9_during_delivery_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let total = scale();
    let sink = SmtpSink::start();
    let policy = format!(
        // The whole spool is flushed at once: a ready queue large enough to hold it, so no
        // message overflows back to its X-Schedule hold (max_ready is not what this tests).
        "{HOLD_POLICY}\nkumo.on('get_queue_config', function() return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }} end)\nkumo.on('get_egress_path_config', function() return kumo.make_egress_path {{ max_ready = 1000000 }} end)",
        sink.port()
    );
    let mut node = FerryNode::start("[spool]\nfsync = true\n", Some(&policy));
    node.pin_ports();
    let out = std::process::Command::new(ferry_bin())
        .args(["bench-smtp", "--target", &node.smtp.to_string(), "--messages", &total.to_string()])
        .args(["--concurrency", "20", "--size", "600", "--header", &held_header()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("; 0 failed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let original: HashSet<String> = node.spool_ids().into_iter().collect();
    assert_eq!(original.len(), total);
    // Everything due at once: a delivery burst to kill in the middle of.
    node.cli(&["rebind", "--everything", "--reason", "flush", "--always-flush"]);
    let kill_at = kill_point(total);
    wait_until(&format!("{kill_at} deliveries"), Duration::from_secs(300), || {
        (sink.count() >= kill_at).then_some(())
    });
    node.kill9();
    let at_kill = sink.count();
    node.restart();
    let left = ferry_integration_tests::wait::try_wait_until(Duration::from_secs(300), || {
        node.spool_ids().is_empty().then_some(())
    });
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        *delivered.entry(ferry_id(&m.data).unwrap_or_default()).or_default() += 1;
    }
    let lost: Vec<&String> = original.iter().filter(|id| !delivered.contains_key(*id)).collect();
    let twice = delivered.values().filter(|n| **n > 1).count();
    println!(
        "crash: delivery: killed after {at_kill} of {total} deliveries; after restart {} delivered, {} of them twice (delivered, then killed before the spool removal); lost {}",
        delivered.len(),
        twice,
        lost.len()
    );
    assert!(left.is_some(), "{} messages still spooled after 300 s", node.spool_ids().len());
    assert!(lost.is_empty(), "never delivered: {lost:?}");
}
