//! What the test suite drives besides Rust: the system packages, how to tell each is there, and
//! how to install it. The check is a pure function of a [`Lookup`], so it is tested without
//! touching the machine.

/// How to tell that a package is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Any of these programs is on `PATH`.
    Command(&'static [&'static str]),
    /// `perl -M<module> -e1` succeeds.
    PerlModule(&'static str),
    /// `python3 -c 'import <module>'` succeeds.
    PythonModule(&'static str),
}

/// How to install a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A Debian package.
    Apt(&'static str),
    /// A Python package: `python3 -m pip install <pip>` (what CI has always done, and what works
    /// for a pyenv or virtualenv Python), else the Debian package `apt` for the system Python.
    Pip { pip: &'static str, apt: &'static str },
}

/// One package the tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The name an operator installs (Debian or PyPI).
    pub package: &'static str,
    pub probe: Probe,
    pub source: Source,
    /// Which tests use it, for the report.
    pub used_by: &'static str,
}

impl Requirement {
    /// The one command that installs it, as the test failures quote it.
    pub fn install_command(&self) -> String {
        match self.source {
            Source::Apt(p) => format!("sudo apt-get install -y {p}"),
            Source::Pip { pip, .. } => format!("python3 -m pip install {pip}"),
        }
    }
}

/// Every package the suite drives. A test that needs one fails, when it is missing, naming the
/// package and [`Requirement::install_command`] (integration-tests/src/requires.rs).
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        package: "chromium",
        probe: Probe::Command(&["chromium", "chromium-browser", "google-chrome"]),
        source: Source::Apt("chromium"),
        used_by: "the dashboard test (integration-tests/tests/dashboard.rs)",
    },
    Requirement {
        package: "swaks",
        probe: Probe::Command(&["swaks"]),
        source: Source::Apt("swaks"),
        used_by: "the submission test (integration-tests/tests/smtp_auth.rs)",
    },
    Requirement {
        package: "libio-socket-ssl-perl",
        probe: Probe::PerlModule("IO::Socket::SSL"),
        source: Source::Apt("libio-socket-ssl-perl"),
        used_by: "swaks --tls in the submission test",
    },
    Requirement {
        package: "libnet-ssleay-perl",
        probe: Probe::PerlModule("Net::SSLeay"),
        source: Source::Apt("libnet-ssleay-perl"),
        used_by: "swaks --tls in the submission test",
    },
    Requirement {
        package: "redis-server",
        probe: Probe::Command(&["redis-server"]),
        source: Source::Apt("redis-server"),
        used_by: "the cluster tests",
    },
    Requirement {
        package: "openssl",
        probe: Probe::Command(&["openssl"]),
        source: Source::Apt("openssl"),
        used_by: "the DKIM tests (key generation)",
    },
    Requirement {
        package: "python3",
        probe: Probe::Command(&["python3"]),
        source: Source::Apt("python3"),
        used_by: "the DKIM tests (dkimpy verifies Ferry's signatures)",
    },
    Requirement {
        package: "dkimpy",
        probe: Probe::PythonModule("dkim"),
        source: Source::Pip { pip: "dkimpy", apt: "python3-dkim" },
        used_by: "the DKIM tests (an independent verifier)",
    },
    Requirement {
        package: "pynacl",
        probe: Probe::PythonModule("nacl"),
        source: Source::Pip { pip: "pynacl", apt: "python3-nacl" },
        used_by: "the DKIM tests (ed25519 with dkimpy)",
    },
];

/// Answers whether a probe succeeds on this machine.
pub trait Lookup {
    fn present(&self, probe: &Probe) -> bool;
}

impl<F: Fn(&Probe) -> bool> Lookup for F {
    fn present(&self, probe: &Probe) -> bool {
        self(probe)
    }
}

/// The requirements `lookup` does not find, in table order.
pub fn missing<'a>(requirements: &'a [Requirement], lookup: &dyn Lookup) -> Vec<&'a Requirement> {
    requirements.iter().filter(|r| !lookup.present(&r.probe)).collect()
}

/// What would install `missing`: the Debian packages (one `apt-get install`) and the Python
/// packages (one `pip install`), each in table order.
pub fn install_plan(missing: &[&Requirement]) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut apt = Vec::new();
    let mut pip = Vec::new();
    for r in missing {
        match r.source {
            Source::Apt(p) => apt.push(p),
            Source::Pip { pip: p, .. } => pip.push(p),
        }
    }
    (apt, pip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_present_means_nothing_to_install() {
        let all = |_: &Probe| true;
        assert!(missing(REQUIREMENTS, &all).is_empty());
        assert_eq!(install_plan(&[]), (vec![], vec![]));
    }

    #[test]
    fn a_missing_program_or_module_is_reported_with_its_package_and_command() {
        // A machine with everything but Chromium and pynacl.
        let lookup = |p: &Probe| {
            !matches!(p, Probe::Command(names) if names.contains(&"chromium"))
                && *p != Probe::PythonModule("nacl")
        };
        let gone = missing(REQUIREMENTS, &lookup);
        let names: Vec<&str> = gone.iter().map(|r| r.package).collect();
        assert_eq!(names, ["chromium", "pynacl"]);
        assert_eq!(gone[0].install_command(), "sudo apt-get install -y chromium");
        assert_eq!(gone[1].install_command(), "python3 -m pip install pynacl");
        assert_eq!(install_plan(&gone), (vec!["chromium"], vec!["pynacl"]));
    }

    #[test]
    fn nothing_present_installs_every_package_once() {
        let none = |_: &Probe| false;
        let gone = missing(REQUIREMENTS, &none);
        assert_eq!(gone.len(), REQUIREMENTS.len());
        let (apt, pip) = install_plan(&gone);
        assert_eq!(
            apt,
            [
                "chromium",
                "swaks",
                "libio-socket-ssl-perl",
                "libnet-ssleay-perl",
                "redis-server",
                "openssl",
                "python3"
            ]
        );
        assert_eq!(pip, ["dkimpy", "pynacl"]);
    }
}
