//! The system packages some tests drive. A test whose package is missing fails naming the package
//! and the one command that installs it; `cargo xtask test` installs them all (xtask/src/requirements.rs).

use std::path::Path;
use std::process::{Command, Stdio};

/// Fail the test: `what` needs `package`, installed by `install`.
pub fn missing(what: &str, package: &str, install: &str) -> ! {
    panic!(
        "{what} needs the package `{package}`, which is not installed. Install it with: {install}\n\
         (`cargo xtask test` installs every package the test suite uses, then runs it)"
    )
}

/// The first of `names` on `PATH`.
pub fn find_command(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .find_map(|n| std::env::split_paths(&path).map(|d| Path::new(&d).join(n)).find(|p| p.is_file()))
}

/// `name` is on `PATH`, or the test fails naming the Debian package that holds it.
pub fn command(what: &str, name: &str, package: &str) {
    if find_command(&[name]).is_none() {
        missing(what, package, &format!("sudo apt-get install -y {package}"));
    }
}

/// The Perl module loads, or the test fails naming its Debian package.
pub fn perl_module(what: &str, module: &str, package: &str) {
    let ok = Command::new("perl")
        .arg(format!("-M{module}"))
        .arg("-e1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing(what, package, &format!("sudo apt-get install -y {package}"));
    }
}

/// python3 can import `module` (PyPI's `package`), or the test fails naming it.
pub fn python_module(what: &str, module: &str, package: &str) {
    command(what, "python3", "python3");
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing(what, package, &format!("python3 -m pip install {package}"));
    }
}
