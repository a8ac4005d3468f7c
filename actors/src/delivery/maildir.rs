//! Maildir delivery (SPEC §7.2). The path is a template; each recipient is written separately
//! (tmp/ then rename into new/, so a reader never sees half a file). One `Delivery` lists the
//! successes; failures get a TF and a retry 60 s later (D11).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::model::insert_context::{InsertContext, InsertReason};
use crate::model::queue_config::{Protocol, QueueConfig};
use crate::model::queue_name;
use crate::model::{Message, Response};
use crate::queue::requeue::{self, Requeue};
use crate::queue::{Attempt, Records, Services};

/// D11: a failed maildir write is retried this much later, outside the normal schedule.
pub const RETRY_DELAY: Duration = Duration::from_secs(60);

fn split(addr: &str) -> (&str, &str) {
    addr.rsplit_once('@').unwrap_or((addr, ""))
}

/// Expand `{{ name }}` / `{{ meta.key }}` placeholders for one recipient.
pub fn expand(template: &str, msg: &Message, queue: &str, recipient: &str) -> Result<String, String> {
    let parts = queue_name::parse(queue);
    let (local, domain) = split(recipient);
    let (s_local, s_domain) = split(&msg.sender);
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end =
            rest[start..].find("}}").ok_or_else(|| format!("unclosed {{{{ in maildir_path {template:?}"))?;
        let name = rest[start + 2..start + end].trim();
        let value = match name {
            "queue" => queue.to_string(),
            "campaign" => parts.campaign.clone().unwrap_or_default(),
            "tenant" => parts.tenant.clone().unwrap_or_default(),
            "domain" => parts.domain.clone(),
            "routing_domain" => parts.routing_domain.clone().unwrap_or_default(),
            "local_part" => local.to_string(),
            "domain_part" => domain.to_string(),
            "email" => recipient.to_string(),
            "sender_local_part" => s_local.to_string(),
            "sender_domain_part" => s_domain.to_string(),
            "sender_email" => msg.sender.clone(),
            other => match other.strip_prefix("meta.") {
                Some(key) => match msg.get_meta(key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                },
                None => return Err(format!("unknown variable {other:?} in maildir_path {template:?}")),
            },
        };
        if value.contains('/') || value == ".." {
            return Err(format!("variable {name} expands to {value:?}, which is not a safe path component"));
        }
        out.push_str(&value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Write one message into the maildir at `dir`; returns the file name in `new/`.
pub fn write(
    dir: &Path,
    data: &[u8],
    dir_mode: Option<u32>,
    file_mode: Option<u32>,
) -> std::io::Result<String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(dir_mode.unwrap_or(0o755));
    for sub in ["tmp", "new", "cur"] {
        builder.create(dir.join(sub))?;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    let name = format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        host.trim().replace(['/', ':'], "_")
    );
    let tmp: PathBuf = dir.join("tmp").join(&name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file_mode.unwrap_or(0o644))
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("new").join(&name))?;
    Ok(name)
}

/// Deliver `msg` (meta only is enough; the body is loaded here) into its queue's maildir.
pub async fn deliver(services: &Services, msg: Message, queue: &str, config: &Arc<QueueConfig>) {
    let Protocol::Maildir { path, dir_mode, file_mode } = config.protocol.clone() else { return };
    let msg = match services.spool.load(&msg.id) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            return tracing::error!(id = %msg.id, error = %e, "cannot load message for maildir delivery");
        }
    };
    let (m, q) = (msg.clone(), queue.to_string());
    let written = actix_rt::task::spawn_blocking(move || {
        m.recipients
            .iter()
            .map(|rcpt| {
                let result = expand(&path, &m, &q, rcpt).and_then(|dir| {
                    write(Path::new(&dir), &m.data, dir_mode, file_mode).map_err(|e| format!("{dir}: {e}"))
                });
                (rcpt.clone(), result)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let attempt = Attempt {
        site: String::new(),
        peer: None,
        protocol: Some("Maildir".into()),
        egress: None,
        tls: None,
    };
    let records = Records(&services.logger);
    let (ok, failed): (Vec<_>, Vec<_>) = written.into_iter().partition(|(_, r)| r.is_ok());
    if !ok.is_empty() {
        let text = ok
            .iter()
            .map(|(rcpt, r)| {
                format!("{rcpt}: wrote to maildir with id={}", r.as_ref().map(String::as_str).unwrap_or(""))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let delivered = Message { recipients: ok.iter().map(|(r, _)| r.clone()).collect(), ..msg.clone() };
        records.delivery(&delivered, queue, Response::new(200, None, text), &attempt);
    }
    if failed.is_empty() {
        return requeue::remove(services, &msg).await;
    }
    let text = failed
        .iter()
        .map(|(rcpt, r)| {
            format!(
                "{rcpt}: failed to write to maildir: {}",
                r.as_ref().err().map(String::as_str).unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let response = Response::new(400, None, text);
    let remaining = Message { recipients: failed.into_iter().map(|(r, _)| r).collect(), ..msg };
    records.transient(&remaining, queue, response.clone(), &attempt);
    let req = Requeue {
        msg: remaining,
        queue: queue.to_string(),
        config: config.clone(),
        response,
        ctx: InsertContext::new(InsertReason::LoggedTransientFailure)
            .with(InsertReason::FailedToInsertIntoReadyQueue),
        increment: true,
        delay: Some(RETRY_DELAY),
    };
    requeue::requeue(services, req).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageIdGenerator;

    fn msg() -> Message {
        let g = MessageIdGenerator::new(&uuid::Uuid::new_v4());
        let mut m = Message::new(
            g.generate(),
            "s@sender.org".into(),
            vec!["u@example.com".into()],
            bytes::Bytes::from_static(b"X: 1\r\n\r\nhi\r\n"),
        );
        m.set_meta("bucket", Value::String("b1".into()));
        m
    }

    #[test]
    fn templates_expand_every_variable() {
        let m = msg();
        let got = expand(
            "/m/{{domain}}/{{ local_part }}/{{meta.bucket}}/{{tenant}}-{{sender_domain_part}}",
            &m,
            "t@example.com",
            "u@example.com",
        )
        .unwrap();
        assert_eq!(got, "/m/example.com/u/b1/t-sender.org");
        assert!(
            expand("/m/{{nope}}", &m, "example.com", "u@example.com")
                .unwrap_err()
                .contains("unknown variable")
        );
        assert!(expand("/m/{{email", &m, "example.com", "u@example.com").is_err());
        let mut evil = m.clone();
        evil.set_meta("bucket", Value::String("../../etc".into()));
        assert!(expand("/m/{{meta.bucket}}", &evil, "example.com", "u@example.com").is_err());
    }

    #[test]
    fn write_creates_a_maildir_with_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("box");
        let name = write(&md, b"data\r\n", Some(0o750), Some(0o600)).unwrap();
        let file = md.join("new").join(&name);
        assert_eq!(std::fs::read(&file).unwrap(), b"data\r\n");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(md.join("cur")).unwrap().permissions().mode() & 0o777, 0o750);
        assert!(std::fs::read_dir(md.join("tmp")).unwrap().next().is_none());
        assert_ne!(write(&md, b"x", None, None).unwrap(), name, "names are unique");
    }
}
