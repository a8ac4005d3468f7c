//! `cargo xtask test [ARGS...]`: make sure the system packages the test suite drives are there
//! (installing the missing ones when this user may: root, or password-less sudo), say what was
//! installed or why not, then run `cargo test --workspace ARGS...`.
//!
//! `cargo xtask deps` does only the first half.
//!
//! Why an xtask crate rather than a `./test` script: the package table and its check are plain
//! Rust with unit tests that `cargo test --workspace` runs like any other; it needs nothing but
//! cargo, works from any directory of the workspace, and has no dependencies, so it builds in
//! seconds before the rest of the workspace.

mod requirements;

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use requirements::{Lookup, Probe, REQUIREMENTS, Requirement, Source, install_plan, missing};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => {
            ensure_packages();
            run_tests(&args[1..])
        }
        Some("deps") => {
            if ensure_packages() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask test [cargo test arguments...]   install what the tests need, run them"
            );
            eprintln!(
                "       cargo xtask deps                              only install what the tests need"
            );
            ExitCode::from(2)
        }
    }
}

/// This machine, asked for real.
struct System;

impl Lookup for System {
    fn present(&self, probe: &Probe) -> bool {
        match probe {
            Probe::Command(names) => names.iter().any(|n| on_path(n)),
            Probe::PerlModule(m) => succeeds(Command::new("perl").arg(format!("-M{m}")).arg("-e1")),
            Probe::PythonModule(m) => succeeds(Command::new("python3").arg("-c").arg(format!("import {m}"))),
        }
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| Path::new(&dir).join(name).is_file()))
        .unwrap_or(false)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// How this user can run apt-get: directly (root), through password-less sudo, or not at all.
fn privilege() -> Result<Option<&'static str>, String> {
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run `id -u`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Ok(None);
    }
    if succeeds(Command::new("sudo").args(["-n", "true"])) {
        return Ok(Some("sudo"));
    }
    Err("not root, and sudo is not available without a password".into())
}

/// Run `apt-get update` then `apt-get install` for `packages`.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    if !on_path("apt-get") {
        return Err("apt-get is not on PATH (not a Debian/Ubuntu machine)".into());
    }
    let sudo = privilege()?;
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut cmd = match sudo {
            Some(s) => {
                let mut c = Command::new(s);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        let status = cmd.status().map_err(|e| format!("cannot run apt-get: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("apt-get {} failed ({status})", args[0])) }
    };
    apt(&["update", "-qq"])?;
    apt(&[&["install", "-y", "-qq", "--no-install-recommends"][..], packages].concat())
}

fn pip_install(packages: &[&str]) -> Result<(), String> {
    let status = Command::new("python3")
        .args([&["-m", "pip", "install", "-q"][..], packages].concat())
        .status()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("pip install failed ({status})")) }
}

/// Check, install what is missing where possible, report. True when everything is there.
fn ensure_packages() -> bool {
    let before = missing(REQUIREMENTS, &System);
    if before.is_empty() {
        eprintln!("xtask: every package the tests use is installed");
        return true;
    }
    let (apt, pip) = install_plan(&before);
    let mut why_not: Vec<String> = Vec::new();
    if !apt.is_empty() {
        eprintln!("xtask: installing Debian packages: {}", apt.join(" "));
        if let Err(e) = apt_install(&apt) {
            why_not.push(format!("apt-get install {}: {e}", apt.join(" ")));
        }
    }
    if !pip.is_empty() {
        eprintln!("xtask: installing Python packages: {}", pip.join(" "));
        if let Err(e) = pip_install(&pip) {
            // A system Python refuses pip (PEP 668); Debian packages the same modules.
            let debian: Vec<&str> = before
                .iter()
                .filter_map(|r| match r.source {
                    Source::Pip { apt, .. } => Some(apt),
                    Source::Apt(_) => None,
                })
                .collect();
            eprintln!("xtask: {e}; trying the Debian packages {}", debian.join(" "));
            if let Err(e2) = apt_install(&debian) {
                why_not.push(format!(
                    "pip install {}: {e}; apt-get install {}: {e2}",
                    pip.join(" "),
                    debian.join(" ")
                ));
            }
        }
    }
    let after = missing(REQUIREMENTS, &System);
    let installed: Vec<&str> = before.iter().filter(|r| !after.contains(r)).map(|r| r.package).collect();
    if !installed.is_empty() {
        eprintln!("xtask: installed {}", installed.join(", "));
    }
    for why in &why_not {
        eprintln!("xtask: could not install: {why}");
    }
    report_missing(&after);
    after.is_empty()
}

fn report_missing(missing: &[&Requirement]) {
    for r in missing {
        eprintln!(
            "xtask: still missing `{}`, used by {}; the tests that need it will fail. Install it with: {}",
            r.package,
            r.used_by,
            r.install_command()
        );
    }
}

fn run_tests(args: &[String]) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo test --workspace {}", args.join(" "));
    match Command::new(cargo).args(["test", "--workspace"]).args(args).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| c.clamp(1, 255) as u8)),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}
