//! The log directory fills up (a small tmpfs): records wait in memory and reach the same segment
//! once there is room again; no storm of empty segments, no flood of error lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_integration_tests::node::ferry_bin;
use ferry_integration_tests::sink::SmtpSink;
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// A tmpfs mounted on a temporary directory, unmounted on drop (even when the test panics).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason printed) where mounting is not allowed.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new().prefix("ferry-it-tmpfs-").tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!("SKIPPED: cannot mount a tmpfs: {}", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a file still open somewhere cannot keep the mount behind.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Write zeros to `path` until the file system refuses (ENOSPC).
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling the tmpfs: {e}");
                break;
            }
        }
    }
    // Whatever tail fitted is flushed too; tmpfs has no write-back to fail later.
    let _ = f.sync_all();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

/// `ferry logs` over a directory other than the node's default one.
fn records_in(dir: &Path) -> Vec<Value> {
    let out = Command::new(ferry_bin()).args(["logs", "--dir"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "ferry logs failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" ERROR ")).collect()
}

#[test]
fn records_written_while_the_log_disk_is_full_appear_once_it_has_room() {
    let Some(tmpfs) = Tmpfs::mount("1m") else { return };
    let logs = tmpfs.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let filler = tmpfs.path().join("filler");
    fill(&filler);

    let sink = SmtpSink::start();
    let policy = format!(
        "kumo.on('get_queue_config', function() return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '[127.0.0.1]:{}' }} }} }} }} end)",
        sink.port()
    );
    // The base config rotates segments every second: a storm would show within the window below.
    let node = FerryNode::start(&format!("[logs]\ndir = \"{}\"\n", logs.display()), Some(&policy));

    let mut smtp = RawSmtp::connect(node.smtp);
    let mut ids = Vec::new();
    for i in 0..5 {
        let reply = smtp.send_message(
            "sender@example.com",
            &["rcpt@example.com"],
            &format!("Subject: full disk {i}\r\n\r\nbody\r\n"),
        );
        assert_eq!(reply.code, 250, "{reply:?}");
        ids.push(queued_id(&reply));
    }
    sink.wait_messages(ids.len());
    wait_until("the log writer to report the full disk", Duration::from_secs(10), || {
        (!error_lines(&node.stderr()).is_empty()).then_some(())
    });

    // An observation window, not a wait for a condition: the segment count must stay bounded
    // the whole time (before the fix every failed flush left a new empty file).
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let n = segments(&logs).len();
        assert!(n <= 2, "{n} segment files while the disk is full: {:?}", segments(&logs));
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = node.stderr();
    let errors = error_lines(&stderr);
    assert!(errors.len() <= 2, "at most one error line a minute, got:\n{}", errors.join("\n"));
    assert!(errors[0].contains("No space left on device"), "{}", errors[0]);
    assert!(records_in(&logs).is_empty(), "the disk was full: nothing can be on it yet");

    // Room again: the writer's own retry (no new traffic) writes every record kept meanwhile.
    std::fs::remove_file(&filler).unwrap();
    let records = wait_until("every record to reach the disk", Duration::from_secs(20), || {
        let r = records_in(&logs);
        let has = |kind: &str, id: &str| r.iter().any(|r| r["type"] == kind && r["id"] == id);
        ids.iter().all(|id| has("Reception", id) && has("Delivery", id)).then_some(r)
    });
    assert_eq!(records.iter().filter(|r| r["type"] == "Reception").count(), ids.len(), "nothing twice");
    assert!(segments(&logs).len() <= 2, "{:?}", segments(&logs));
    let stderr = node.stderr();
    assert!(stderr.contains("log writes recovered"), "{stderr}");
    assert!(stderr.contains("dropped=0"), "nothing was lost: {stderr}");
    assert_eq!(error_lines(&stderr).len(), errors.len(), "no further errors after recovery");
    drop(node);
}
