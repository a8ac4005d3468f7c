//! Where SMTP delivery connects to (SPEC §7.1): `mx_list` entry parsing, MX/A/AAAA resolution and the
//! `mx_list:…` site name. DNS failures here are promotion failures (SPEC §2.4 step 5), so errors carry text
//! that is logged as-is in `"failed to resolve queue <q>: <err>"`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;

const SMTP_PORT: u16 = 25;

/// One `mx_list` entry as configured (SPEC §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxEntry {
    /// `"host"` or `"host:port"`: needs an A/AAAA lookup (no MX lookup: the operator named the host).
    Host { host: String, port: Option<u16> },
    /// `"[10.0.0.1]"`, `"[IPv6:::1]"`, optionally `":port"`: no DNS at all.
    Literal { ip: IpAddr, port: Option<u16> },
    /// `{name, addr}`: pre-resolved; `name` is what logs (and TLS) see.
    Resolved { name: String, addr: SocketAddr },
}

impl MxEntry {
    /// The entry as written in config; used for the site name and in error messages.
    fn label(&self) -> String {
        let with_port = |s: String, port: &Option<u16>| match port {
            Some(p) => format!("{s}:{p}"),
            None => s,
        };
        match self {
            MxEntry::Host { host, port } => with_port(host.clone(), port),
            MxEntry::Literal { ip, port } => with_port(literal_name(ip), port),
            MxEntry::Resolved { name, .. } => name.clone(),
        }
    }
}

/// `[10.0.0.1]` / `[IPv6:::1]`: the RFC 5321 address-literal form, used as the target's name.
fn literal_name(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

fn parse_port(entry: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("invalid mx_list entry {entry:?}: bad port {port:?}")),
    }
}

/// Parse one string `mx_list` entry; the error names the entry so a config mistake is obvious in the log.
pub fn parse_mx_entry(s: &str) -> Result<MxEntry, String> {
    let entry = s.trim();
    if entry.is_empty() {
        return Err("invalid mx_list entry \"\": empty".to_string());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inner, after) =
            rest.split_once(']').ok_or_else(|| format!("invalid mx_list entry {entry:?}: missing ']'"))?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(parse_port(entry, p)?),
                None => {
                    return Err(format!("invalid mx_list entry {entry:?}: unexpected {after:?} after ']'"));
                }
            },
        };
        // RFC 5321 spells IPv6 literals `[IPv6:…]`; a bare `[::1]` is accepted too (lenient, unambiguous).
        let addr = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse().map(IpAddr::V6),
            _ => inner.parse::<IpAddr>(),
        };
        let ip =
            addr.map_err(|_| format!("invalid mx_list entry {entry:?}: {inner:?} is not an IP address"))?;
        return Ok(MxEntry::Literal { ip, port });
    }
    let (host, port) = match entry.split_once(':') {
        Some((_, p)) if p.contains(':') => {
            return Err(format!("invalid mx_list entry {entry:?}: write IPv6 addresses as \"[IPv6:…]\""));
        }
        Some((h, p)) => (h, Some(parse_port(entry, p)?)),
        None => (entry, None),
    };
    let valid = !host.is_empty()
        && host.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid {
        return Err(format!("invalid mx_list entry {entry:?}: {host:?} is not a host name"));
    }
    Ok(MxEntry::Host { host: host.to_string(), port })
}

/// Parse a table entry `{name, addr}`: `addr` is `"ip"` (port 25) or `"ip:port"` (`"[::1]:25"` for IPv6).
pub fn parse_resolved(name: &str, addr: &str) -> Result<MxEntry, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("invalid mx_list entry {{name=\"\", addr={addr:?}}}: empty name"));
    }
    let a = addr.trim();
    let unbracketed = a.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(a);
    let addr = a
        .parse::<SocketAddr>()
        .or_else(|_| unbracketed.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, SMTP_PORT)))
        .map_err(|_| {
            format!("invalid mx_list entry {{name={name:?}, addr={addr:?}}}: addr must be \"ip[:port]\"")
        })?;
    if addr.port() == 0 {
        return Err(format!("invalid mx_list entry {{name={name:?}, addr={a:?}}}: port 0"));
    }
    Ok(MxEntry::Resolved { name: name.to_string(), addr })
}

/// SPEC §7.1 site name: `"mx_list:<label>,<label>"`, labels as written.
pub fn site_name(entries: &[MxEntry]) -> String {
    let labels: Vec<String> = entries.iter().map(MxEntry::label).collect();
    format!("mx_list:{}", labels.join(","))
}

/// A connectable target: the name used for logs/EHLO-peer and the socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("MX didn't resolve to any hosts")]
    NoHosts,
    #[error("domain has a null MX")]
    NullMx,
    #[error("failed to resolve {name}: {reason}")]
    Dns { name: String, reason: String },
}

/// The engine's one DNS resolver (cheap to clone: hickory shares its cache between clones).
#[derive(Clone)]
pub struct Resolver {
    inner: Result<TokioResolver, String>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.inner.is_ok() { "Resolver" } else { "Resolver(unavailable)" })
    }
}

impl Resolver {
    /// System configuration (`/etc/resolv.conf`). If that is unusable we fall back to a local resolver on
    /// 127.0.0.1:53 rather than a public one: an MTA should not silently send its queries off-site.
    pub fn from_system() -> Resolver {
        let inner = match TokioResolver::builder_tokio() {
            Ok(builder) => builder.build(),
            Err(e) => {
                tracing::warn!("unusable system DNS config ({e}); using 127.0.0.1:53");
                let local = NameServerConfig::udp_and_tcp(IpAddr::from([127, 0, 0, 1]));
                Self::build(ResolverConfig::from_name_servers(vec![local]))
            }
        };
        Resolver { inner: inner.map_err(|e| format!("DNS resolver unavailable: {e}")) }
    }

    /// Query exactly these servers (UDP), in order: `[dns] servers` in the config.
    pub fn with_servers(servers: &[std::net::SocketAddr]) -> Resolver {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ns
            })
            .collect();
        let inner = Self::build(ResolverConfig::from_name_servers(name_servers));
        Resolver { inner: inner.map_err(|e| format!("DNS resolver unavailable: {e}")) }
    }

    fn build(config: ResolverConfig) -> Result<TokioResolver, NetError> {
        TokioResolver::builder_with_config(config, Default::default()).build()
    }

    fn get(&self, name: &str) -> Result<&TokioResolver, ResolveError> {
        self.inner.as_ref().map_err(|e| ResolveError::Dns { name: name.to_string(), reason: e.clone() })
    }

    /// A/AAAA of `host` (absolute: MTAs must not apply resolv.conf search domains). `Ok(empty)` = no records.
    pub(crate) async fn addresses(&self, host: &str, port: u16) -> Result<Vec<Target>, ResolveError> {
        let name = host.trim_end_matches('.');
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(vec![Target { name: name.to_string(), addr: SocketAddr::new(ip, port) }]);
        }
        match self.get(name)?.lookup_ip(format!("{name}.")).await {
            Ok(ips) => Ok(ips
                .iter()
                .map(|ip| Target { name: name.to_string(), addr: SocketAddr::new(ip, port) })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(dns_error(name, &e)),
        }
    }

    /// The TXT records of `name`, each record's strings joined (RFC 7208 §3.3 style). `Ok(empty)` = none.
    pub(crate) async fn txt(&self, name: &str) -> Result<Vec<String>, ResolveError> {
        let name = name.trim_end_matches('.');
        match self.get(name)?.txt_lookup(format!("{name}.")).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => {
                        Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect())
                    }
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(dns_error(name, &e)),
        }
    }

    /// Resolve several hosts in order; a host that fails is skipped so one bad MX does not block the others.
    async fn resolve_hosts(&self, hosts: &[(String, u16)]) -> Result<Vec<Target>, ResolveError> {
        let (mut targets, mut first_err) = (Vec::new(), None);
        for (host, port) in hosts {
            match self.addresses(host, *port).await {
                Ok(found) => targets.extend(found),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        finish(targets, first_err)
    }
}

/// With no target left: the first DNS error if there was one (a resolver problem worth its own text),
/// else NoHosts (every name simply had no addresses).
fn finish(targets: Vec<Target>, first_err: Option<ResolveError>) -> Result<Vec<Target>, ResolveError> {
    match (targets.is_empty(), first_err) {
        (false, _) => Ok(targets),
        (true, Some(e)) => Err(e),
        (true, None) => Err(ResolveError::NoHosts),
    }
}

fn dns_error(name: &str, e: &NetError) -> ResolveError {
    ResolveError::Dns { name: name.to_string(), reason: e.to_string() }
}

/// Expand `mx_list` entries, in order, into targets (SPEC §7.1). Host entries get an A/AAAA lookup;
/// literal and pre-resolved entries need no DNS. Entries that name no port get `port_default` (an
/// egress path's `smtp_port`, 25 by default).
pub async fn resolve_mx_list(
    resolver: &Resolver,
    entries: &[MxEntry],
    port_default: u16,
) -> Result<Vec<Target>, ResolveError> {
    let (mut targets, mut first_err) = (Vec::new(), None);
    for entry in entries {
        match entry {
            MxEntry::Host { host, port } => {
                match resolver.addresses(host, port.unwrap_or(port_default)).await {
                    Ok(found) => targets.extend(found),
                    Err(e) => first_err = first_err.or(Some(e)),
                }
            }
            MxEntry::Literal { ip, port } => targets.push(Target {
                name: literal_name(ip),
                addr: SocketAddr::new(*ip, port.unwrap_or(port_default)),
            }),
            MxEntry::Resolved { name, addr } => targets.push(Target { name: name.clone(), addr: *addr }),
        }
    }
    finish(targets, first_err)
}

/// No `mx_list`: MX lookup of `domain` (SPEC §7.1). A `:port` suffix overrides `port_default`; `[ip]` needs no DNS.
/// MX hosts are tried in preference order (DNS order among equals); a single `.` MX is a null MX (RFC
/// 7505); no MX records at all means the implicit MX, the domain's own A/AAAA (RFC 5321 §5.1).
/// `port_default` is used unless the domain names a port (an egress path's `smtp_port`).
pub async fn resolve_domain(
    resolver: &Resolver,
    domain: &str,
    port_default: u16,
) -> Result<Vec<Target>, ResolveError> {
    let bad = |reason: String| ResolveError::Dns { name: domain.to_string(), reason };
    let d = domain.trim();
    if d.starts_with('[') {
        return match parse_mx_entry(d).map_err(bad)? {
            entry @ MxEntry::Literal { .. } => resolve_mx_list(resolver, &[entry], port_default).await,
            _ => Err(bad("not an address literal".to_string())),
        };
    }
    let (name, port) = match d.split_once(':') {
        Some((n, p)) => {
            (n, p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad(format!("bad port {p:?}")))?)
        }
        None => (d, port_default),
    };
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return Err(bad("empty domain".to_string()));
    }
    let mut mxs: Vec<(u16, String)> = match resolver.get(name)?.mx_lookup(format!("{name}.")).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(dns_error(name, &e)),
    };
    if mxs.len() == 1 && mxs[0].1.trim_end_matches('.').is_empty() {
        return Err(ResolveError::NullMx);
    }
    mxs.retain(|(_, host)| !host.trim_end_matches('.').is_empty());
    mxs.sort_by_key(|(pref, _)| *pref); // stable: equal preferences keep DNS order
    let hosts: Vec<(String, u16)> = match mxs.is_empty() {
        true => vec![(name.to_string(), port)],
        false => mxs.into_iter().map(|(_, host)| (host, port)).collect(),
    };
    resolver.resolve_hosts(&hosts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver with no name servers: any accidental lookup fails locally instead of sending a packet.
    fn offline() -> Resolver {
        Resolver {
            inner: Resolver::build(ResolverConfig::from_name_servers(vec![])).map_err(|e| e.to_string()),
        }
    }

    fn host(h: &str, port: Option<u16>) -> MxEntry {
        MxEntry::Host { host: h.to_string(), port }
    }

    fn lit(ip: &str, port: Option<u16>) -> MxEntry {
        MxEntry::Literal { ip: ip.parse().unwrap(), port }
    }

    #[test]
    fn parses_every_string_form() {
        assert_eq!(parse_mx_entry("mx.example.com"), Ok(host("mx.example.com", None)));
        assert_eq!(parse_mx_entry(" mx.example.com:2525 "), Ok(host("mx.example.com", Some(2525))));
        assert_eq!(parse_mx_entry("localhost."), Ok(host("localhost.", None)));
        assert_eq!(parse_mx_entry("[10.0.0.1]"), Ok(lit("10.0.0.1", None)));
        assert_eq!(parse_mx_entry("[10.0.0.1]:2025"), Ok(lit("10.0.0.1", Some(2025))));
        assert_eq!(parse_mx_entry("[IPv6:::1]"), Ok(lit("::1", None)));
        assert_eq!(parse_mx_entry("[ipv6:2001:db8::5]:587"), Ok(lit("2001:db8::5", Some(587))));
        assert_eq!(parse_mx_entry("[::1]"), Ok(lit("::1", None)));
    }

    #[test]
    fn bad_entries_name_the_entry() {
        for (bad, why) in [
            ("", "empty"),
            ("[10.0.0.1", "missing ']'"),
            ("[10.0.0.300]", "not an IP address"),
            ("[IPv6:10.0.0.1]", "not an IP address"),
            ("[10.0.0.1]x", "unexpected"),
            ("[10.0.0.1]:0", "bad port"),
            ("mx.example.com:99999", "bad port"),
            ("mx.example.com:", "bad port"),
            ("::1", "[IPv6:"),
            ("mx..example.com", "not a host name"),
            ("bad host", "not a host name"),
        ] {
            let err = parse_mx_entry(bad).unwrap_err();
            assert!(err.contains(why) && err.contains(&format!("{:?}", bad.trim())), "{bad:?}: {err}");
        }
    }

    #[test]
    fn parses_resolved_tables() {
        let r = |name: &str, addr: &str| MxEntry::Resolved { name: name.into(), addr: addr.parse().unwrap() };
        assert_eq!(parse_resolved("mx1", "10.0.0.1"), Ok(r("mx1", "10.0.0.1:25")));
        assert_eq!(parse_resolved("mx1", "10.0.0.1:2025"), Ok(r("mx1", "10.0.0.1:2025")));
        assert_eq!(parse_resolved("mx6", "::1"), Ok(r("mx6", "[::1]:25")));
        assert_eq!(parse_resolved("mx6", "[::1]"), Ok(r("mx6", "[::1]:25")));
        assert_eq!(parse_resolved("mx6", "[::1]:587"), Ok(r("mx6", "[::1]:587")));
        assert!(parse_resolved("mx1", "mx.example.com").unwrap_err().contains("\"mx.example.com\""));
        assert!(parse_resolved("", "10.0.0.1").unwrap_err().contains("empty name"));
        assert!(parse_resolved("mx1", "10.0.0.1:0").unwrap_err().contains("port 0"));
    }

    #[test]
    fn site_name_lists_labels_as_written() {
        let entries =
            ["mx.example.com", "mx2.example.com:2525", "[10.0.0.1]", "[10.0.0.2]:2025", "[IPv6:::1]:26"]
                .map(|s| parse_mx_entry(s).unwrap());
        let mut entries = entries.to_vec();
        entries.push(parse_resolved("smarthost", "10.0.0.3:587").unwrap());
        assert_eq!(
            site_name(&entries),
            "mx_list:mx.example.com,mx2.example.com:2525,[10.0.0.1],[10.0.0.2]:2025,[IPv6:::1]:26,smarthost"
        );
    }

    #[tokio::test]
    async fn literal_and_resolved_entries_need_no_dns() {
        let entries = [
            parse_mx_entry("[127.0.0.1]").unwrap(),
            parse_resolved("smarthost", "127.0.0.2:2525").unwrap(),
            parse_mx_entry("[IPv6:::1]:2026").unwrap(),
            parse_mx_entry("127.0.0.3:26").unwrap(), // a bare IP as "host" is used as-is
        ];
        let t = |name: &str, addr: &str| Target { name: name.into(), addr: addr.parse().unwrap() };
        assert_eq!(
            resolve_mx_list(&offline(), &entries, SMTP_PORT).await,
            Ok(vec![
                t("[127.0.0.1]", "127.0.0.1:25"),
                t("smarthost", "127.0.0.2:2525"),
                t("[IPv6:::1]", "[::1]:2026"),
                t("127.0.0.3", "127.0.0.3:26"),
            ])
        );
        assert_eq!(resolve_mx_list(&offline(), &[], SMTP_PORT).await, Err(ResolveError::NoHosts));
    }

    #[tokio::test]
    async fn system_resolver_builds_without_sending_anything() {
        assert_eq!(format!("{:?}", Resolver::from_system()), "Resolver"); // construction does no lookups
    }

    #[tokio::test]
    async fn domain_literal_with_port_needs_no_dns() {
        let r = offline();
        let want = Target { name: "[127.0.0.1]".into(), addr: "127.0.0.1:2525".parse().unwrap() };
        assert_eq!(resolve_domain(&r, "[127.0.0.1]:2525", SMTP_PORT).await, Ok(vec![want]));
        let want6 = Target { name: "[IPv6:::1]".into(), addr: "[::1]:25".parse().unwrap() };
        assert_eq!(resolve_domain(&r, "[IPv6:::1]", SMTP_PORT).await, Ok(vec![want6]));
        let err = resolve_domain(&r, "example.com:notaport", SMTP_PORT).await.unwrap_err();
        assert_eq!(err.to_string(), "failed to resolve example.com:notaport: bad port \"notaport\"");
    }
}
