//! `ferry serve`: open the spool, start the actors, listen, and shut down in order on SIGINT/SIGTERM.
//!
//! Shutdown order matters for "loses nothing": stop accepting; let sessions finish what they are
//! doing (a message mid-commit still gets its 250); stop HTTP; then let the SpoolWriter commit all
//! it has queued; then close the log segment.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::AsyncContext;
use actix_web::{App, HttpServer};
use anyhow::Context;
use ferry_actors::delivery::mx::Resolver;
use ferry_actors::delivery::{AttachDelivery, DeliveryManager, QuiesceDelivery};
use ferry_actors::egress::mta_sts::{HttpsPolicySource, MtaStsCache};
use ferry_actors::logging::{Compression, LogWriterHandle, Logger, SegmentConfig};
use ferry_actors::model::MessageIdGenerator;
use ferry_actors::model::admin::Suspensions;
use ferry_actors::policy::PolicyPool;
use ferry_actors::queue::{Attach, DeliverySettings, QueueManager, Services};
use ferry_actors::smtp_server::{Reception, SessionSettings, listener};
use ferry_actors::spool::{Spool, SpoolWriter};
use ferry_config::{Config, LogCompression};
use tokio::sync::{mpsc, watch};

use crate::node;

/// How often freed heap memory is handed back to the OS (see [`spawn_heap_trimmer`]).
const HEAP_TRIM_EVERY: Duration = Duration::from_secs(10);

enum Failure {
    /// Bad configuration or policy: exit 2.
    Config(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

pub fn run(config: Config) -> ExitCode {
    let diagnostic_filter = init_tracing();
    raise_fd_limit();
    match actix_rt::System::new().block_on(serve(config, diagnostic_filter)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("ferry: {msg}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Each SMTP session, outbound connection and spool reader holds a descriptor, and
/// `smtp.max_connections` alone defaults to 2,000: take the hard limit rather than the soft one
/// (often 1,024), so the listener's own limits are the ones that bite.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass; no memory is shared.
    #[allow(unsafe_code)]
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max && {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0
        }
    };
    if raised {
        tracing::debug!(from = lim.rlim_cur, to = lim.rlim_max, "raised the open-file limit");
    }
}

/// Diagnostics go to stderr under `FERRY_LOG` (default `info`). The filter sits behind a reload
/// layer so `set_diagnostic_log_filter` can swap it while the node runs; None if a subscriber was
/// already installed (then the filter cannot be changed).
fn init_tracing() -> Option<ferry_web::DiagnosticFilter> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, fmt, reload};
    let filter = EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr))
        .try_init()
        .ok()?;
    Some(ferry_web::DiagnosticFilter::new(move |directive| {
        use ferry_web::FilterError;
        let parsed = EnvFilter::try_new(directive).map_err(|e| FilterError::Invalid(e.to_string()))?;
        // Said under the filter being replaced, which is the one the operator has been reading.
        tracing::info!(filter = directive, "diagnostic log filter changed");
        handle.reload(parsed).map_err(|e| FilterError::Unavailable(e.to_string()))
    }))
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

async fn serve(
    config: Config,
    diagnostic_filter: Option<ferry_web::DiagnosticFilter>,
) -> Result<(), Failure> {
    let token = config.bearer_token().map_err(|e| Failure::Config(e.to_string()))?;
    let data_dir = config.node.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
    let listeners_file = data_dir.join("listeners.json");
    let _ = std::fs::remove_file(&listeners_file);
    let node = node::node_id(&data_dir, config.node.id.as_ref().map(|n| n.0.as_str()))?;

    let spool = Spool::open(&config.spool_path(), config.spool.map_size.0, config.spool.fsync)
        .map_err(anyhow::Error::from)?;
    // LMDB keeps the count; corrupt records are reported as the queues load (queue::load).
    let spooled = spool.count().map_err(anyhow::Error::from)?;
    tracing::info!(messages = spooled, path = %config.spool_path().display(), "spool opened");
    let policy = PolicyPool::start_with_timeout(
        config.policy_source(),
        config.policy.pool_size,
        config.policy.handler_timeout.0,
    )
    .map_err(|e| Failure::Config(e.to_string()))?;
    let spool_writer = SpoolWriter::start(spool);
    let log_writer = LogWriterHandle::start(SegmentConfig {
        dir: config.logs_dir(),
        max_segment_duration: config.logs.max_segment_duration.0,
        max_file_size: config.logs.max_file_size.0,
        compression: match config.logs.compression {
            LogCompression::Zstd => Compression::Zstd { level: config.logs.compression_level },
            LogCompression::None => Compression::None,
        },
    })
    .with_context(|| format!("cannot open log directory {}", config.logs_dir().display()))?;
    let logger = Logger::new(
        log_writer.clone(),
        node.hyphenated().to_string(),
        &config.logs.meta,
        &config.logs.headers,
    );

    let hostname = config.smtp.hostname.clone().unwrap_or_else(system_hostname);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers: Vec<actix_rt::Arbiter> = (0..cores).map(|_| actix_rt::Arbiter::new()).collect();

    // The queue manager must exist before the services that name it.
    let queue_ctx = actix::Context::<QueueManager>::new();
    let queues = queue_ctx.address();
    let delivery = actix::Actor::start(DeliveryManager::new());
    let ca_file = config.tls_ca_file();
    let xfer_ca_file = config.xfer_ca_file();
    let xfer_tls = ferry_actors::tls::ClientTls::with_ca_files(
        ca_file.iter().chain(xfer_ca_file.iter()).map(|p| p.as_path()).collect(),
    )
    .map(|t| t.verifying.clone())
    .map_err(|e| Failure::Config(format!("tls.ca_file / xfer.ca_file: {e}")))?;
    let client_tls = ferry_actors::tls::ClientTls::new(ca_file.as_deref())
        .map(Arc::new)
        .map_err(|e| Failure::Config(format!("tls.ca_file: {e}")))?;
    let xfer = actix::Actor::start(ferry_actors::xfer::XferSupervisor::default());
    let resolver = Arc::new(if config.dns.servers.is_empty() {
        Resolver::from_system()
    } else {
        Resolver::with_servers(&config.dns.servers)
    });
    // `[cluster]`: the link exists before the services that hold it; its task starts once the
    // HTTP listener's address (the default node_url) is known.
    let (cluster_link, cluster_inbox) = match &config.cluster {
        Some(_) => {
            let (link, inbox) = ferry_actors::cluster::ClusterLink::new();
            (Some(link), Some(inbox))
        }
        None => (None, None),
    };
    let services = Services {
        spool,
        writer: spool_writer.clone(),
        logger: logger.clone(),
        policy: policy.clone(),
        suspensions: Arc::new(std::sync::Mutex::new(Suspensions::default())),
        bounces: Arc::default(),
        ready_suspensions: Arc::default(),
        queues: queues.clone(),
        delivery: delivery.clone(),
        xfer: xfer.clone(),
        settings: Arc::new(DeliverySettings {
            ehlo_name: hostname.clone(),
            client_tls: Some(client_tls.clone()),
        }),
        resolver: resolver.clone(),
        mta_sts: Arc::new(MtaStsCache::new(HttpsPolicySource {
            resolver,
            tls: client_tls.verifying.clone(),
            port: config.tls.mta_sts_policy_port,
        })),
        workers: Arc::new(workers.iter().map(|a| a.handle()).collect()),
        node_id: node,
        node_field: MessageIdGenerator::new(&node).node_field(),
        xfer_settings: Arc::new(ferry_actors::xfer::XferSettings {
            concurrency: config.xfer.concurrency,
            batch_size: config.xfer.batch_size,
            batch_bytes: config.xfer.batch_bytes.0 as usize,
            token: token.clone(),
            idle_timeout: config.xfer.idle_timeout.as_duration(),
            tls: Some(xfer_tls),
        }),
        sweeps: Arc::default(),
        cluster: cluster_link,
    };
    queues.do_send(Attach(services.clone()));
    delivery.do_send(AttachDelivery(services.clone()));
    xfer.do_send(ferry_actors::xfer::AttachXfer(services.clone()));
    // Log hooks (configured by the init event): records to messages, before outcomes are saved.
    actix_rt::spawn(ferry_actors::log_hooks::processor::run(ferry_actors::log_hooks::processor::Handles {
        policy: policy.clone(),
        log: logger.writer().clone(),
        writer: spool_writer.clone(),
        queues: queues.clone(),
        ids: Arc::new(MessageIdGenerator::new(&node)),
    }));
    actix_rt::spawn(
        queue_ctx.into_future(QueueManager::with_config_retry(config.policy.queue_config_retry_interval.0)),
    );
    ferry_actors::queue::load::enumerate(&services);

    let reception = Arc::new(Reception {
        hostname: hostname.clone(),
        ids: MessageIdGenerator::new(&node),
        spool: spool_writer.clone(),
        policy,
        logger,
        batch_handling: config.smtp.batch_handling,
        queues: Some(queues.clone()),
    });
    // One listener per `[[smtp.listeners]]` entry (or the `[smtp]` table alone), each with its
    // own settings; those without certificate files share one self-signed certificate.
    let mut smtp_listeners = Vec::new();
    let mut self_signed = None;
    for (i, l) in config.smtp_listeners().into_iter().enumerate() {
        let key = if config.smtp.listeners.is_empty() {
            "smtp".to_string()
        } else {
            format!("smtp.listeners[{}]", i + 1)
        };
        let listener_host = l.hostname.clone().unwrap_or_else(|| hostname.clone());
        let tls = match &l.tls_files {
            Some((cert, key_file)) => {
                ferry_actors::tls::server_config(Some((cert, key_file)), &listener_host).map_err(|e| {
                    Failure::Config(format!("{key}.tls_certificate / {key}.tls_private_key: {e}"))
                })?
            }
            None => match &self_signed {
                Some(tls) => Arc::clone(tls),
                None => {
                    let tls = ferry_actors::tls::server_config(None, &hostname)
                        .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
                    self_signed = Some(Arc::clone(&tls));
                    tls
                }
            },
        };
        let settings = Arc::new(SessionSettings {
            hostname: listener_host,
            max_message_size: l.max_message_size.0 as usize,
            max_recipients: l.max_recipients,
            idle_timeout: config.smtp.idle_timeout.0,
            command_timeout: config.smtp.command_timeout.0,
            data_timeout: config.smtp.data_timeout.0,
            write_timeout: config.smtp.write_timeout.0,
            relay_hosts: l.relay_hosts.clone(),
            invalid_line_endings: config.smtp.invalid_line_endings,
            tls: Some(tls),
            auth_required: l.auth_required,
            banner: l.banner.clone(),
            implicit_tls: l.tls == ferry_config::ListenerTls::Implicit,
        });
        let limits = listener::Limits {
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
        };
        let socket = tokio::net::TcpListener::bind(l.listen)
            .await
            .with_context(|| format!("cannot listen for SMTP on {} ({key}.listen)", l.listen))?;
        smtp_listeners.push((socket, settings, limits));
    }
    let smtp_addrs: Vec<SocketAddr> =
        smtp_listeners.iter().filter_map(|(socket, ..)| socket.local_addr().ok()).collect();
    let smtp_addr = *smtp_addrs.first().context("no SMTP listener")?;
    let state = ferry_web::AppState {
        queues: queues.clone(),
        services: services.clone(),
        trusted_hosts: Arc::new(config.http.trusted_hosts.clone()),
        token: token.map(Arc::from),
        xfer_body_limit: config.xfer.max_body_size.0 as usize,
        injector: Arc::new(ferry_actors::inject::Injector {
            reception: reception.clone(),
            max_size: config.http.max_inject_size.0 as usize,
            max_recipients: config.http.max_inject_recipients,
        }),
        diagnostic_filter,
    };
    let http = HttpServer::new(move || {
        ferry_web::build(
            App::new().wrap(actix_web::middleware::from_fn(ferry_web::trusted_only)),
            Some(state.clone()),
        )
    })
    .workers(2)
    .disable_signals();
    let http = match config.http_tls_files() {
        // HTTPS: the bearer token and xfer bodies never cross in clear.
        Some((cert, key)) => {
            let tls = ferry_actors::tls::server_config(Some((&cert, &key)), "localhost")
                .map_err(|e| Failure::Config(format!("http.tls_certificate / http.tls_private_key: {e}")))?;
            http.bind_rustls_0_23(config.http.listen, (*tls).clone())
        }
        None => http.bind(config.http.listen),
    }
    .with_context(|| format!("cannot listen for HTTP on {} (http.listen)", config.http.listen))?;
    let http_addr = http.addrs().first().copied().context("http listener address")?;
    let http = http.run();
    let http_handle = http.handle();
    actix_rt::spawn(http);
    if let (Some(cluster), Some(inbox)) = (&config.cluster, cluster_inbox) {
        let scheme = if config.http_tls_files().is_some() { "https" } else { "http" };
        let settings = ferry_actors::cluster::ClusterSettings {
            redis_url: cluster.redis.clone(),
            node_id: node,
            node_url: cluster.node_url.clone().unwrap_or_else(|| format!("{scheme}://{http_addr}")),
            heartbeat_interval: cluster.heartbeat_interval.0,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let handles = ferry_actors::cluster::Handles { queues: queues.clone(), delivery: delivery.clone() };
        actix_rt::spawn(inbox.run(settings, handles));
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let accepts: Vec<_> = smtp_listeners
        .into_iter()
        .map(|(socket, settings, limits)| {
            actix_rt::spawn(listener::serve(
                socket,
                limits,
                settings,
                reception.clone(),
                workers.iter().map(|a| a.handle()).collect(),
                shutdown_rx.clone(),
                done_tx.clone(),
            ))
        })
        .collect();
    drop(done_tx);

    spawn_heap_trimmer();
    if let Err(e) = ferry_actors::metrics::spawn_history_tick() {
        tracing::warn!(error = %e, "cannot start the metrics history tick; the dashboard's charts stay empty");
    }
    write_listeners(&listeners_file, &smtp_addrs, http_addr, &node)?;
    tracing::info!(smtp = %smtp_addr, http = %http_addr, nodeid = %node, "ferry ready");

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections; finishing sessions");
    let _ = shutdown_tx.send(true);
    for accept in accepts {
        let _ = accept.await;
    }
    let grace = config.smtp.shutdown_grace.0;
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!("SMTP sessions still open after {grace:?} (smtp.shutdown_grace); closing them");
    }
    http_handle.stop(true).await;
    // Deliveries in flight finish their message, so a delivered message's spool removal is saved
    // and a restart does not send it again; nothing new starts.
    if tokio::time::timeout(grace, delivery.send(QuiesceDelivery)).await.is_err() {
        tracing::warn!("deliveries still in flight after {grace:?} (smtp.shutdown_grace); stopping them");
    }
    // ... and the removals of what they delivered commit.
    if tokio::time::timeout(grace, ferry_actors::queue::requeue::removals_settled()).await.is_err() {
        tracing::warn!("spool removals still pending after {grace:?}; those messages may be sent again");
    }
    for worker in &workers {
        worker.stop();
    }
    drop(reception);
    let (sw, lw) = (spool_writer.clone(), log_writer.clone());
    // Both joins block on their threads; keep them off the async runtime.
    let _ = actix_rt::task::spawn_blocking(move || {
        sw.shutdown();
        lw.shutdown();
    })
    .await;
    let _ = std::fs::remove_file(&listeners_file);
    tracing::info!("stopped");
    Ok(())
}

/// `data_dir/listeners.json`: the bound addresses (ports may be ephemeral), written once ready.
/// glibc keeps memory freed after a burst (a backlog that drained, a large xfer batch) in its
/// per-thread arenas instead of returning it, so the heap would keep each burst's high-water mark:
/// the soak saw RssAnon step up by megabytes after every slow spell and never come down. Every
/// [`HEAP_TRIM_EVERY`] a thread asks glibc to return what is free. Other C libraries: nothing.
fn spawn_heap_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("ferry-heap-trim".into()).spawn(|| {
            loop {
                std::thread::sleep(HEAP_TRIM_EVERY);
                let started = std::time::Instant::now();
                // SAFETY: malloc_trim only gives free pages back to the OS; it takes the
                // allocator's own locks and touches no memory that is in use.
                #[allow(unsafe_code)]
                let released = unsafe { libc::malloc_trim(0) } != 0;
                tracing::trace!(released, micros = started.elapsed().as_micros() as u64, "heap trimmed");
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the heap trimmer; freed memory stays with the allocator");
        }
    }
}

fn write_listeners(
    path: &std::path::Path,
    smtp: &[SocketAddr],
    http: SocketAddr,
    node: &uuid::Uuid,
) -> anyhow::Result<()> {
    let all: Vec<String> = smtp.iter().map(SocketAddr::to_string).collect();
    let body = serde_json::json!({"smtp": all[0], "smtp_listeners": all, "http": http.to_string(), "nodeid": node.hyphenated().to_string()});
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, body.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
