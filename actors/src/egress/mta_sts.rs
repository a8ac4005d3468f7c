//! MTA-STS policies of destination domains (RFC 8461): looked up through the engine's resolver,
//! fetched over verified HTTPS from `mta-sts.<domain>`, and cached per domain by their max_age.
//! One lookup per domain at a time: connections to a domain whose policy is being fetched wait
//! for that fetch instead of starting their own. The rules are in `model::mta_sts`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::delivery::mx::Resolver;
use crate::model::mta_sts::{self, Cached, Next, Policy};

/// RFC 8461 §3.3: a policy file is at most 64 KiB; what a server sends beyond it (plus room for
/// the status line and headers) is not read.
const MAX_POLICY: usize = 64 * 1024;
const MAX_RESPONSE: usize = MAX_POLICY + 16 * 1024;
/// The whole fetch (DNS, connect, handshake, response) gets this long (RFC 8461 §3.3 suggests a
/// minute at most).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Domains remembered before expired entries are dropped.
const MAX_DOMAINS: usize = 100_000;

/// Where policies come from: the TXT record and the policy file.
pub trait PolicySource: Send + Sync + 'static {
    /// The TXT records at `_mta-sts.<domain>`; none (or a DNS error) is an empty list.
    fn txt(&self, domain: &str) -> impl Future<Output = Vec<String>> + Send;
    /// The body of `https://mta-sts.<domain>/.well-known/mta-sts.txt`, or why not.
    fn fetch(&self, domain: &str) -> impl Future<Output = Result<String, String>> + Send;
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached<Arc<Policy>>>>>;

pub struct MtaStsCache<S = HttpsPolicySource> {
    source: S,
    domains: Mutex<HashMap<String, Slot>>,
}

impl<S: PolicySource> MtaStsCache<S> {
    pub fn new(source: S) -> Self {
        MtaStsCache { source, domains: Mutex::new(HashMap::new()) }
    }

    /// The policy in force for `domain`, if it publishes one that could be fetched (now or
    /// earlier, within its max_age). A domain without a policy gets `None`.
    pub async fn policy(&self, domain: &str) -> Option<Arc<Policy>> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let slot = self.slot(&domain);
        let mut entry = slot.lock().await;
        let now = Instant::now();
        if mta_sts::next(entry.as_ref(), now) == Next::CheckTxt {
            let id = mta_sts::txt_policy_id(&self.source.txt(&domain).await);
            if let Some(id) = id.filter(|id| mta_sts::must_fetch(entry.as_ref(), Some(id), now)) {
                let fetched = self.source.fetch(&domain).await.and_then(|text| mta_sts::parse_policy(&text));
                let kept = entry.as_mut().and_then(|c| c.policy.take());
                let policy = match fetched {
                    Ok(p) => {
                        tracing::info!(%domain, %id, mode = ?p.mode, "MTA-STS policy fetched");
                        let until = now + p.max_age;
                        Some((id, Arc::new(p), until))
                    }
                    Err(error) => {
                        // RFC 8461 §5.1: keep a valid cached policy; without one, send as if the
                        // domain had none (and look again at the next check).
                        tracing::warn!(%domain, %error, "MTA-STS policy fetch failed");
                        kept
                    }
                };
                *entry = Some(Cached { policy, checked: now });
            }
            match entry.as_mut() {
                Some(c) => c.checked = now,
                None => *entry = Some(Cached { policy: None, checked: now }),
            }
        }
        entry.as_ref().and_then(|c| mta_sts::in_force(c, now)).cloned()
    }

    fn slot(&self, domain: &str) -> Slot {
        let mut domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        if domains.len() >= MAX_DOMAINS && !domains.contains_key(domain) {
            // Drop the entries nobody is using that hold no valid policy.
            let now = Instant::now();
            domains.retain(|_, slot| match slot.try_lock() {
                Ok(e) => e.as_ref().is_some_and(|c| mta_sts::in_force(c, now).is_some()),
                Err(_) => true,
            });
        }
        domains.entry(domain.to_string()).or_default().clone()
    }
}

/// The real source: TXT through the engine's resolver, the policy over HTTPS verified against
/// the roots delivery trusts (system + `[tls] ca_file`).
pub struct HttpsPolicySource {
    pub resolver: Arc<Resolver>,
    pub tls: Arc<rustls::ClientConfig>,
    /// 443; `[tls] mta_sts_policy_port` moves it for tests and labs.
    pub port: u16,
}

impl PolicySource for HttpsPolicySource {
    async fn txt(&self, domain: &str) -> Vec<String> {
        self.resolver.txt(&format!("_mta-sts.{domain}")).await.unwrap_or_default()
    }

    async fn fetch(&self, domain: &str) -> Result<String, String> {
        let host = format!("mta-sts.{domain}");
        match tokio::time::timeout(FETCH_TIMEOUT, self.get(&host)).await {
            Ok(result) => result.map_err(|e| format!("https://{host}/.well-known/mta-sts.txt: {e}")),
            Err(_) => Err(format!("https://{host}/.well-known/mta-sts.txt: no answer in {FETCH_TIMEOUT:?}")),
        }
    }
}

impl HttpsPolicySource {
    async fn get(&self, host: &str) -> Result<String, String> {
        let targets = self.resolver.addresses(host, self.port).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let mut last = format!("{host} has no addresses");
        for target in targets {
            let tcp = match tokio::net::TcpStream::connect(target.addr).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    last = format!("connect to {}: {e}", target.addr);
                    continue;
                }
            };
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let mut tls = connector.connect(name.clone(), tcp).await.map_err(|e| format!("TLS: {e}"))?;
            // HTTP/1.0: no chunked encoding and no keep-alive to deal with.
            let request = format!(
                "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\nUser-Agent: Ferry\r\nConnection: close\r\n\r\n"
            );
            tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut response = Vec::new();
            (&mut tls)
                .take(MAX_RESPONSE as u64 + 1)
                .read_to_end(&mut response)
                .await
                .map_err(|e| e.to_string())?;
            return policy_body(&response);
        }
        Err(last)
    }
}

/// The policy text of an HTTP response: status 200 (redirects are not followed, RFC 8461 §3.3),
/// `Content-Type: text/plain`, a body of at most 64 KiB.
fn policy_body(response: &[u8]) -> Result<String, String> {
    if response.len() > MAX_RESPONSE {
        return Err("response larger than 64 KiB".into());
    }
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("malformed HTTP response")?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| "malformed HTTP response")?;
    let body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("HTTP status {status:?}"));
    }
    let header = |name: &str| {
        lines.clone().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    let content_type = header("content-type").unwrap_or_default();
    if content_type.split(';').next().map(str::trim) != Some("text/plain") {
        return Err(format!("Content-Type {content_type:?} is not text/plain"));
    }
    if header("transfer-encoding").is_some_and(|te| te != "identity") {
        return Err("a transfer encoding in an HTTP/1.0 response".into());
    }
    if body.len() > MAX_POLICY {
        return Err("policy larger than 64 KiB".into());
    }
    String::from_utf8(body.to_vec()).map_err(|_| "policy is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ENFORCE: &str = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 3600\n";

    struct Fake {
        txt: Mutex<Vec<String>>,
        body: Mutex<Result<String, String>>,
        txt_lookups: AtomicUsize,
        fetches: AtomicUsize,
    }

    impl PolicySource for Arc<Fake> {
        async fn txt(&self, _: &str) -> Vec<String> {
            self.txt_lookups.fetch_add(1, Ordering::SeqCst);
            self.txt.lock().unwrap().clone()
        }
        async fn fetch(&self, _: &str) -> Result<String, String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            self.body.lock().unwrap().clone()
        }
    }

    fn fake(txt: &str, body: Result<&str, &str>) -> Arc<Fake> {
        Arc::new(Fake {
            txt: Mutex::new(if txt.is_empty() { vec![] } else { vec![txt.to_string()] }),
            body: Mutex::new(body.map(str::to_string).map_err(str::to_string)),
            txt_lookups: AtomicUsize::new(0),
            fetches: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn a_policy_is_fetched_once_and_served_from_the_cache() {
        let source = fake("v=STSv1; id=1", Ok(ENFORCE));
        let cache = Arc::new(MtaStsCache::new(source.clone()));
        // Ten connections at once: one TXT lookup, one fetch.
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.policy("Example.com.").await })
            })
            .collect();
        for t in tasks {
            let p = t.await.unwrap().expect("a policy");
            assert!(p.allows_mx("mx.example.com"));
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        assert_eq!(source.txt_lookups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_txt_record_is_no_policy_and_nothing_is_fetched() {
        let source = fake("", Ok(ENFORCE));
        let cache = MtaStsCache::new(source.clone());
        assert!(cache.policy("example.com").await.is_none());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_no_policy() {
        let cache = MtaStsCache::new(fake("v=STSv1; id=1", Err("connection refused")));
        assert!(cache.policy("example.com").await.is_none());
        let bad = MtaStsCache::new(fake("v=STSv1; id=1", Ok("<html>")));
        assert!(bad.policy("example.com").await.is_none());
    }

    #[test]
    fn http_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nversion: STSv1\n";
        assert_eq!(policy_body(ok).unwrap(), "version: STSv1\n");
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: https://evil/\r\nContent-Type: text/plain\r\n\r\n";
        assert!(policy_body(redirect).unwrap_err().contains("301"));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nversion: STSv1\n";
        assert!(policy_body(html).unwrap_err().contains("text/html"));
        assert!(policy_body(b"garbage").is_err());
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_POLICY + 1));
        assert!(policy_body(&big).unwrap_err().contains("64 KiB"));
    }
}
