//! The command line: `ferry serve` and the operator tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{admin, bench, bench_dkim, bench_inject, bench_spool, serve};
use ferry_config::Config;

#[derive(Parser)]
#[command(name = "ferry", version, about = "Ferry: an actor-model message transfer agent")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    endpoint: admin::Endpoint,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine.
    Serve {
        /// TOML config file; without it Ferry runs on the embedded copy of examples/ferry.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print log records as JSON lines, oldest first.
    Logs {
        /// Log directory; default: the one the config names.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Keep printing records as they are written.
        #[arg(long, short)]
        follow: bool,
    },
    /// Inspect the spool directly (works while the engine runs).
    Spool {
        #[command(subcommand)]
        command: SpoolCmd,
    },
    /// SMTP load generator: sends messages and reports msgs/s and latency percentiles.
    BenchSmtp(bench::BenchArgs),
    /// Requeue decisions per second through the policy actor.
    BenchPolicy(bench::PolicyBenchArgs),
    /// DKIM signing cost per message (rsa-sha256, ed25519-sha256).
    BenchDkim(bench_dkim::DkimBenchArgs),
    /// The spool alone under a relay's write pattern, before and after a backlog.
    BenchSpool(bench_spool::SpoolBenchArgs),
    /// HTTP injection load: templated requests of many recipients; reports recipients/s spooled.
    BenchInject(bench_inject::InjectBenchArgs),
    #[command(flatten)]
    Admin(admin::AdminCmd),
}

#[derive(Subcommand)]
enum SpoolCmd {
    /// List spooled message ids, one per line, then a count on stderr.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Exit code for bad configuration or policy, so supervisors can tell it from a crash.
pub(crate) const EXIT_CONFIG: u8 = 2;

fn load_config(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("ferry: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Parse the command line and run it; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve { config } => match load_config(config.as_deref()) {
            Ok(config) => return serve::run(config),
            Err(code) => return code,
        },
        Cmd::Logs { dir, config, follow } => {
            let dir = match dir {
                Some(d) => d,
                None => match load_config(config.as_deref()) {
                    Ok(c) => c.logs_dir(),
                    Err(code) => return code,
                },
            };
            print_logs(&dir, follow)
        }
        Cmd::Spool { command: SpoolCmd::List { config } } => match load_config(config.as_deref()) {
            Ok(config) => list_spool(&config),
            Err(code) => return code,
        },
        Cmd::BenchSmtp(args) => bench::run(args),
        Cmd::BenchSpool(args) => bench_spool::run(args),
        Cmd::BenchDkim(args) => bench_dkim::run(args),
        Cmd::BenchPolicy(args) => bench::run_policy(args),
        Cmd::BenchInject(args) => bench_inject::run(args),
        Cmd::Admin(cmd) => admin::run(&cli.endpoint, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_logs(dir: &std::path::Path, follow: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if !follow && !dir.exists() {
        anyhow::bail!("log directory {} does not exist", dir.display());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    ferry_actors::logging::for_each_line(dir, follow, |line| {
        // A closed pipe (`ferry logs | head`) ends the walk quietly.
        writeln!(out, "{line}").is_ok() && (!follow || out.flush().is_ok())
    })?;
    Ok(())
}

fn list_spool(config: &Config) -> anyhow::Result<()> {
    use std::io::Write;
    let path = config.spool_path();
    if !path.join("data.mdb").exists() {
        anyhow::bail!("no spool at {}", path.display());
    }
    let spool = ferry_actors::spool::Spool::open(&path, config.spool.map_size.0, config.spool.fsync)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut count = 0u64;
    spool.for_each_meta(|id, meta| {
        count += 1;
        let ok = match meta {
            Ok(_) => writeln!(out, "{id}"),
            Err(e) => writeln!(out, "{id} CORRUPT {e}"),
        };
        ok.is_ok()
    })?;
    eprintln!("{count} message(s) in {}", path.display());
    Ok(())
}
