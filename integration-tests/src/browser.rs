//! Headless Chromium for the dashboard test (Debian's `chromium`; `cargo xtask test` installs it).
//! `$FERRY_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("FERRY_CHROMIUM") {
        return PathBuf::from(p);
    }
    match crate::requires::find_command(&["chromium", "chromium-browser", "google-chrome"]) {
        Some(p) => p,
        None => crate::requires::missing(
            "the dashboard test (headless Chromium; or set FERRY_CHROMIUM)",
            "chromium",
            "sudo apt-get install -y chromium",
        ),
    }
}

/// Run Chromium headless with `args` and `url`; its stdout. Killed after 90 s.
fn run(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page's DOM after its scripts have run for `budget` of virtual time.
pub fn dump_dom(url: &str, budget: Duration) -> String {
    run(&["--dump-dom", &format!("--virtual-time-budget={}", budget.as_millis())], url)
}

/// A PNG of the page at 1280×900.
pub fn screenshot(url: &str, path: &Path) {
    run(
        &[
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
            &format!("--screenshot={}", path.display()),
        ],
        url,
    );
}
