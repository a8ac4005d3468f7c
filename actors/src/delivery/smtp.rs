//! One outbound SMTP connection serving a dispatcher: resolve the site, connect to the first
//! host that answers, and deliver messages back to back until the ready queue is empty.

use std::sync::Arc;

use actix::Addr;

use super::mx::{self, ResolveError, Target};
use super::outcome::{internal_error, settle};
use super::smtp_client::{Disposition, SmtpClient, classify};
use super::{ReadyItem, SiteKind};
use crate::egress::ready_queue::{DrainAll, ReadyQueue, next_item, throttle_send};
use crate::metrics::ReadyQueueStats;
use crate::model::egress::EgressSource;
use crate::model::egress_path::EgressPathConfig;
use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::mta_sts::Mode;
use crate::model::queue_config::MxListEntry;
use crate::model::record::PeerAddress;
use crate::model::{Message, Response};
use crate::queue::requeue::transient;
use crate::queue::{Attempt, EgressUsed, Records, Services};
use ferry_config::cidr::any_contains;

/// Why no connection could be made, and how each waiting message should be treated.
struct ConnectFailure {
    response: Response,
    permanent: bool,
    ctx: InsertContext,
}

fn logged() -> InsertContext {
    InsertContext::new(InsertReason::LoggedTransientFailure)
}

async fn targets(services: &Services, kind: &SiteKind, port: u16) -> Result<Vec<Target>, ConnectFailure> {
    let resolved = match kind {
        SiteKind::MxList(list) => {
            let mut entries = Vec::with_capacity(list.len());
            for e in list {
                let parsed = match e {
                    MxListEntry::Name(s) => mx::parse_mx_entry(s),
                    MxListEntry::Resolved { name, addr } => mx::parse_resolved(name, addr),
                };
                match parsed {
                    Ok(p) => entries.push(p),
                    Err(e) => {
                        return Err(ConnectFailure {
                            response: Response::new(
                                451,
                                Some("4.4.4"),
                                format!("KumoMTA internal: bad mx_list entry: {e}"),
                            ),
                            permanent: false,
                            ctx: logged(),
                        });
                    }
                }
            }
            mx::resolve_mx_list(&services.resolver, &entries, port).await
        }
        SiteKind::Mx(domain) => mx::resolve_domain(&services.resolver, domain, port).await,
        SiteKind::Lua { .. } => unreachable!("custom_lua sites have their own connection"),
    };
    resolved.map_err(|e| match e {
        ResolveError::NullMx => ConnectFailure {
            response: Response::new(556, Some("5.1.10"), "Recipient address has a null MX"),
            permanent: true,
            ctx: logged(),
        },
        ResolveError::NoHosts => ConnectFailure {
            response: Response::new(451, Some("4.4.4"), "MX didn't resolve to any hosts"),
            permanent: false,
            ctx: InsertContext::new(InsertReason::MxResolvedToZeroHosts)
                .with(InsertReason::LoggedTransientFailure),
        },
        other => ConnectFailure {
            response: Response::new(451, Some("4.4.4"), other.to_string()),
            permanent: false,
            ctx: logged(),
        },
    })
}

async fn connect(
    services: &Services,
    kind: &SiteKind,
    source: &EgressSource,
    path: &EgressPathConfig,
    trace: super::smtp_client::TraceLabels,
) -> Result<SmtpClient, ConnectFailure> {
    let mut targets = targets(services, kind, path.smtp_port).await?;
    // KumoMTA's `remote_port`: the source's network maps egress addresses by port.
    if let Some(port) = source.remote_port {
        targets.iter_mut().for_each(|t| t.addr.set_port(port));
    }
    let failure = |text: String| ConnectFailure {
        response: Response::new(451, Some("4.4.4"), format!("KumoMTA internal: {text}")),
        permanent: false,
        ctx: logged(),
    };
    // Hosts found in DNS get the default prohibited list and MTA-STS; an address literal or an
    // mx_list is routing someone chose on purpose.
    let from_dns = matches!(kind, SiteKind::Mx(d) if !d.trim_start().starts_with('['));
    let mut enable_tls = path.enable_tls;
    if let (true, true, SiteKind::Mx(domain)) = (from_dns, path.enable_mta_sts, kind) {
        let domain = domain.split(':').next().unwrap_or(domain);
        if let Some(policy) = services.mta_sts.policy(domain).await {
            enable_tls = policy.effective_tls(path.enable_tls);
            if policy.mode == Mode::Enforce {
                let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
                targets.retain(|t| policy.allows_mx(&t.name));
                if targets.is_empty() {
                    return Err(failure(format!(
                        "MTA-STS policy of {domain} (mode enforce) allows none of its MX hosts ({})",
                        dedup(names).join(", ")
                    )));
                }
            }
        }
    }
    let prohibited = path.prohibited_for(from_dns);
    if let Some(t) = targets.iter().find(|t| any_contains(&prohibited, t.addr.ip())) {
        return Err(failure(format!(
            "MX host {} [{}] is on the prohibited_hosts list (it would make a mail loop)",
            t.name,
            t.addr.ip()
        )));
    }
    targets.retain(|t| !any_contains(&path.skip_hosts, t.addr.ip()));
    if targets.is_empty() {
        return Err(failure("MX consisted solely of hosts on the skip_hosts list".into()));
    }
    let mut settings = client_settings(services, source, path);
    settings.tls.mode = enable_tls;
    settings.trace = trace;
    let mut last = String::from("no hosts");
    for target in &targets {
        match SmtpClient::connect(target, &settings).await {
            Ok(client) => return Ok(client),
            Err(e) => {
                tracing::debug!(host = %target.name, addr = %target.addr, error = %e, "connection failed; trying the next host");
                last = format!("{} ({}): {e}", target.name, target.addr);
            }
        }
    }
    Err(ConnectFailure { response: internal_error(last), permanent: false, ctx: logged() })
}

/// Names in first-seen order, each once (an MX host with several addresses appears once).
fn dedup(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The path's `ehlo_domain` wins over the source's, which wins over the node's name.
fn client_settings(
    services: &Services,
    source: &EgressSource,
    path: &EgressPathConfig,
) -> super::smtp_client::ClientSettings {
    let ehlo = path.ehlo_domain.clone().or_else(|| source.ehlo_domain.clone());
    super::smtp_client::ClientSettings {
        ehlo_name: ehlo.unwrap_or_else(|| services.settings.ehlo_name.clone()),
        source_address: source.source_address,
        timeouts: super::smtp_client::Timeouts {
            connect: path.connect_timeout.0,
            banner: path.banner_timeout.0,
            ehlo: path.ehlo_timeout.0,
            mail_from: path.mail_from_timeout.0,
            rcpt_to: path.rcpt_to_timeout.0,
            data: path.data_timeout.0,
            data_dot: path.data_dot_timeout.0,
            rset: path.rset_timeout.0,
        },
        pipelining: path.enable_pipelining,
        tls: super::smtp_client::TlsSettings {
            mode: path.enable_tls,
            reconnect_plain_on_failure: path.opportunistic_tls_reconnect_on_failed_handshake,
            starttls_timeout: path.starttls_timeout.0,
            configs: services.settings.client_tls.clone(),
        },
        trace: Default::default(),
    }
}

/// Load a ready message, or None if it has gone (or is bounced or suspended now: ready queues
/// re-check).
pub(crate) async fn take(services: &Services, item: &ReadyItem) -> Option<Message> {
    let msg = match services.spool.load(&item.id) {
        Ok(Some(m)) => m,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(id = %item.id, error = %e, "cannot load ready message; it stays spooled");
            return None;
        }
    };
    if let Some(hold) = crate::queue::requeue::hold_of(services, &item.queue) {
        crate::queue::requeue::apply_hold(services, msg, &item.queue, &item.config, hold).await;
        return None;
    }
    Some(msg)
}

/// A message whose egress pool cannot be resolved: a transient failure, retried on its queue's
/// schedule (the policy may be fixed by then). Counted on the ready queue it was in, if any.
pub(crate) async fn unroutable(
    services: &Services,
    item: ReadyItem,
    why: String,
    stats: Option<&ReadyQueueStats>,
) {
    let Some(msg) = take(services, &item).await else { return };
    if let Some(stats) = stats {
        stats.transfail();
    }
    let response = Response::new(451, Some("4.4.4"), format!("KumoMTA internal: {why}"));
    let attempt = Attempt { protocol: Some("ESMTP".into()), ..Attempt::default() };
    transient(services, msg, &item.queue, &item.config, response, &attempt, logged()).await;
}

fn egress_used(
    item: &ReadyItem,
    source: &EgressSource,
    local: Option<std::net::SocketAddr>,
) -> Option<EgressUsed> {
    Some(EgressUsed { pool: item.config.egress_pool.clone(), source: source.name.clone(), local })
}

/// Settle a message that could not be attempted because the site is unreachable.
async fn fail(
    services: &Services,
    stats: &ReadyQueueStats,
    msg: Message,
    item: &ReadyItem,
    site: &str,
    source: &EgressSource,
    failure: &ConnectFailure,
) {
    let attempt = Attempt {
        site: site.to_string(),
        peer: None,
        protocol: Some("ESMTP".into()),
        egress: egress_used(item, source, None),
        tls: None,
    };
    if failure.permanent {
        stats.fail();
        Records(&services.logger).bounce(&msg, &item.queue, failure.response.clone(), &attempt);
        crate::queue::requeue::remove(services, &msg).await;
    } else {
        stats.transfail();
        transient(
            services,
            msg,
            &item.queue,
            &item.config,
            failure.response.clone(),
            &attempt,
            failure.ctx.clone(),
        )
        .await;
    }
}

/// One connection of a ready queue: deliver messages back to back, idling up to the path's
/// `idle_timeout` for more, until `max_deliveries_per_connection` or the connection breaks.
pub(crate) async fn connection(
    services: Services,
    stats: Arc<ReadyQueueStats>,
    site: String,
    kind: SiteKind,
    source: Arc<EgressSource>,
    path: Arc<EgressPathConfig>,
    queue: Addr<ReadyQueue>,
) {
    let mut client: Option<SmtpClient> = None;
    let mut delivered = 0usize;
    while let Some(item) = next_item(&queue, true).await {
        let Some(msg) = take(&services, &item).await else { continue };
        if client.is_none() {
            let trace = super::smtp_client::TraceLabels {
                ready_queue: site.clone(),
                egress_source: source.name.clone(),
                egress_pool: item.config.egress_pool.clone(),
            };
            match connect(&services, &kind, &source, &path, trace).await {
                Ok(c) => client = Some(c),
                Err(failure) => {
                    // Every host failed: the whole ready queue shares this outcome.
                    fail(&services, &stats, msg, &item, &site, &source, &failure).await;
                    for other in queue.send(DrainAll).await.unwrap_or_default() {
                        if let Some(m) = take(&services, &other).await {
                            fail(&services, &stats, m, &other, &site, &source, &failure).await;
                        }
                    }
                    return;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        throttle_send(&queue).await;
        let target = c.target().clone();
        let attempt = Attempt {
            site: site.clone(),
            peer: Some(PeerAddress { name: target.name.clone(), addr: target.addr.ip().to_string() }),
            protocol: Some("ESMTP".into()),
            egress: egress_used(&item, &source, c.local_addr()),
            tls: c.tls().cloned(),
        };
        c.trace_message(&msg.sender, &msg.recipients, &item.queue);
        match send_all(c, &msg, path.max_recipients_per_batch).await {
            Ok(results) => settle(&services, &stats, msg, &item.queue, &item.config, results, &attempt).await,
            Err(e) => {
                stats.transfail();
                let response = internal_error(&e);
                transient(&services, msg, &item.queue, &item.config, response, &attempt, logged()).await;
                client = None;
                continue;
            }
        }
        delivered += 1;
        if !c.is_reusable() {
            client = None;
        } else if delivered >= path.max_deliveries_per_connection {
            // The ready queue opens a fresh connection if it still has a backlog.
            break;
        }
    }
    if let Some(c) = client {
        c.quit().await;
    }
}

/// Send, then retry at once, in new transactions, the recipients refused only as "too many
/// recipients" (SPEC §7.1), as long as each round delivers something.
async fn send_all(
    client: &mut SmtpClient,
    msg: &Message,
    per_batch: usize,
) -> Result<Vec<(String, Response)>, super::smtp_client::ClientError> {
    let mut done = Vec::new();
    // `max_recipients_per_batch`: larger messages go out in successive transactions.
    for chunk in msg.recipients.chunks(per_batch.max(1)) {
        if !client.is_reusable() {
            break;
        }
        done.extend(send_chunk(client, msg, chunk.to_vec()).await?);
    }
    Ok(done)
}

async fn send_chunk(
    client: &mut SmtpClient,
    msg: &Message,
    mut pending: Vec<String>,
) -> Result<Vec<(String, Response)>, super::smtp_client::ClientError> {
    let mut done = Vec::new();
    loop {
        let responses = client.send(&msg.sender, &pending, &msg.data).await?;
        let mut retry = Vec::new();
        for (rcpt, response) in pending.iter().cloned().zip(responses) {
            if classify(&response) == Disposition::TooManyRecipients {
                retry.push((rcpt, response));
            } else {
                done.push((rcpt, response));
            }
        }
        let progressed = retry.len() < pending.len();
        if retry.is_empty() || !progressed || !client.is_reusable() {
            done.extend(retry);
            return Ok(done);
        }
        pending = retry.into_iter().map(|(r, _)| r).collect();
    }
}
