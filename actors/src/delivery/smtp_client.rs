//! One outbound SMTP connection and the per-recipient classification of SPEC §7.1.
//!
//! Driven command by command over our own reply reader (RFC 5321 §4.2): SPEC §7.1 needs every
//! recipient's own response, and the message body must go out exactly as
//! [`smtp_data_payload`] shapes it (CRLF line ends, dot-stuffed, one terminator) so no bare LF or
//! bare CR ever reaches a peer, whatever the spool holds. Server replies, positive or negative,
//! come back as `Response`s (they are logged and classified); only transport trouble (connect
//! failure, timeout, I/O, protocol garbage) is a `ClientError`, logged upstream as
//! `"KumoMTA internal: error in deliver_message: <err>"` (SPEC §3.1).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use super::client_trace::ClientTrace;
pub use super::client_trace::TraceLabels;
use super::mx::Target;
use crate::model::egress_path::EnableTls;
use crate::model::line_endings::smtp_data_payload;
use crate::model::record::{EnhancedCode, Response};
use crate::model::smtp_trace::{self, ClientTracePayload};
use crate::model::tls_policy::{self, TlsStep};
use crate::tls::{ClientTls, TlsInfo};
use rustls::pki_types::ServerName;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub ehlo_name: String,
    /// The egress source's address to bind before connecting; None: the kernel chooses.
    pub source_address: Option<IpAddr>,
    pub timeouts: Timeouts,
    /// Send MAIL, every RCPT and DATA in one write when the server offers PIPELINING (RFC 2920).
    pub pipelining: bool,
    pub tls: TlsSettings,
    /// Names the connection in `trace-smtp-client`.
    pub trace: TraceLabels,
}

/// Outbound STARTTLS: the egress path's `enable_tls`, its reconnect flag and timeout, and the
/// client configs to use (None: no TLS at all).
#[derive(Clone)]
pub struct TlsSettings {
    pub mode: EnableTls,
    pub reconnect_plain_on_failure: bool,
    pub starttls_timeout: Duration,
    pub configs: Option<Arc<ClientTls>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsSettings({:?})", self.mode)
    }
}

impl TlsSettings {
    pub fn disabled() -> TlsSettings {
        TlsSettings {
            mode: EnableTls::Disabled,
            reconnect_plain_on_failure: false,
            starttls_timeout: Duration::from_secs(5),
            configs: None,
        }
    }
}

/// An egress path's client timeouts (KumoMTA's names).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Waiting for the 220 greeting.
    pub banner: Duration,
    pub ehlo: Duration,
    pub mail_from: Duration,
    pub rcpt_to: Duration,
    /// The `DATA` command's 354.
    pub data: Duration,
    /// Sending the message and waiting for the final reply.
    pub data_dot: Duration,
    /// RSET and QUIT.
    pub rset: Duration,
}

impl Timeouts {
    pub fn uniform(d: Duration) -> Timeouts {
        Timeouts { connect: d, banner: d, ehlo: d, mail_from: d, rcpt_to: d, data: d, data_dot: d, rset: d }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("failed to connect: {0}")]
    Connect(String),
    #[error("timed out at {0}")]
    Timeout(String),
    #[error("I/O error: {0}")]
    Io(String),
    /// The server said 421 or closed the connection.
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("SMTP protocol error: {0}")]
    Protocol(String),
    /// TLS was required and could not be had (not offered, STARTTLS refused).
    #[error("TLS: {0}")]
    Tls(String),
    /// The STARTTLS handshake failed (certificate name, issuer, expiry, protocol).
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(String),
}

/// A reply line longer than this is garbage, not a reply (RFC 5321 allows 512 octets).
const MAX_REPLY_LINE: u64 = 4096;
/// Lines in one multi-line reply (an EHLO reply has a dozen or so).
const MAX_REPLY_LINES: usize = 100;

/// One server reply: its code and the text of each line (after the code and separator).
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

/// An open, greeted SMTP connection.
pub struct SmtpClient {
    stream: BufReader<ClientStream>,
    /// What STARTTLS negotiated, once it has.
    tls: Option<TlsInfo>,
    /// Our end of the connection (the source address actually used, and its port).
    local: Option<SocketAddr>,
    /// EHLO keywords the server announced, upper-cased (empty after HELO).
    extensions: HashSet<String>,
    target: Target,
    settings: ClientSettings,
    reusable: bool,
    trace: ClientTrace,
}

/// Why one open attempt failed; a refused EHLO is kept apart because it triggers the HELO retry.
enum OpenError {
    Client(ClientError),
    HelloRefused(Response),
}

impl SmtpClient {
    /// TCP connect, greeting and EHLO, each within its timeout. A server that refuses
    /// EHLO with 5xx gets a second connection that greets with HELO (RFC 5321 §3.2).
    /// A failed STARTTLS handshake is final for that connection; with an opportunistic policy and
    /// `opportunistic_tls_reconnect_on_failed_handshake`, one more connection goes without TLS.
    pub async fn connect(target: &Target, settings: &ClientSettings) -> Result<SmtpClient, ClientError> {
        match Self::connect_once(target, settings).await {
            Err(ClientError::TlsHandshake(why))
                if tls_policy::reconnect_plain(
                    settings.tls.mode,
                    settings.tls.reconnect_plain_on_failure,
                ) =>
            {
                tracing::info!(host = %target.name, %why, "TLS handshake failed; reconnecting without TLS");
                let plain = ClientSettings { tls: TlsSettings::disabled(), ..settings.clone() };
                Self::connect_once(target, &plain).await
            }
            other => other,
        }
    }

    async fn connect_once(target: &Target, settings: &ClientSettings) -> Result<SmtpClient, ClientError> {
        let opened = match Self::open(target, settings, false).await {
            Err(OpenError::HelloRefused(r)) if r.code >= 500 => Self::open(target, settings, true).await,
            other => other,
        };
        opened.map_err(|e| match e {
            OpenError::Client(e) => e,
            OpenError::HelloRefused(r) => {
                let msg = format!("{} got {}", r.command.as_deref().unwrap_or("EHLO"), r.to_single_line());
                if r.code == 421 { ClientError::Closed(msg) } else { ClientError::Protocol(msg) }
            }
        })
    }

    async fn open(target: &Target, settings: &ClientSettings, helo: bool) -> Result<SmtpClient, OpenError> {
        let peer = format!("{} [{}]", target.name, target.addr);
        let fail = |e: ClientError| Err(OpenError::Client(e));
        let t = settings.timeouts;
        let trace = ClientTrace::new();
        trace.publish(&settings.trace, target, None, || ClientTracePayload::BeginSession);
        let connect_failed = |why: String| {
            trace.publish(&settings.trace, target, None, || diagnostic("ERROR", why.clone()));
            trace.publish(&settings.trace, target, None, || ClientTracePayload::Closed);
            fail(ClientError::Connect(why))
        };
        let tcp = match timeout(t.connect, connect_from(settings.source_address, target.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return connect_failed(format!("{peer}: {e}")),
            Err(_) => {
                let limit = t.connect;
                return connect_failed(format!("{peer}: no TCP connection within {limit:?}"));
            }
        };
        // SMTP is request/response: without this, the final "." of DATA waits for a delayed ACK
        // (Nagle), costing ~40 ms per message.
        let _ = tcp.set_nodelay(true);
        let mut client = SmtpClient {
            local: tcp.local_addr().ok(),
            stream: BufReader::new(ClientStream::Plain(tcp)),
            tls: None,
            extensions: HashSet::new(),
            target: target.clone(),
            settings: settings.clone(),
            reusable: true,
            trace,
        };
        client.publish(|| ClientTracePayload::Connected);
        let greeting = match timeout(t.banner, client.read_reply()).await {
            Err(_) => return fail(ClientError::Timeout(format!("greeting with {peer}"))),
            Ok(Err(e)) => return fail(e.during(&format!("greeting with {peer}"))),
            Ok(Ok(r)) => r,
        };
        if greeting.code != 220 {
            let text = response(&greeting, "").to_single_line();
            return fail(match greeting.code {
                421 => ClientError::Closed(format!("{peer} greeted {text}")),
                _ => ClientError::Connect(format!("{peer} greeted {text}")),
            });
        }
        let verb = if helo { "HELO" } else { "EHLO" };
        let line = format!("{verb} {}", client_id(&settings.ehlo_name));
        let hello = match timeout(t.ehlo, client.exchange(line.as_bytes(), false)).await {
            Err(_) => return fail(ClientError::Timeout(format!("{verb} with {peer}"))),
            Ok(Err(e)) => return fail(e.during(&format!("{verb} with {peer}"))),
            Ok(Ok(r)) => r,
        };
        if hello.code != 250 {
            return Err(OpenError::HelloRefused(response(&hello, &line)));
        }
        client.extensions = extensions(&hello);
        if !helo {
            client.start_tls(&settings.tls, &line).await.map_err(OpenError::Client)?;
        }
        Ok(client)
    }

    /// STARTTLS as the egress path's `enable_tls` says (model::tls_policy), then EHLO again
    /// (RFC 3207: what the server said before TLS no longer counts).
    async fn start_tls(&mut self, tls: &TlsSettings, ehlo: &str) -> Result<(), ClientError> {
        let Some(configs) = &tls.configs else { return Ok(()) };
        let peer = format!("{} [{}]", self.target.name, self.target.addr);
        let verify = match tls_policy::step(tls.mode, self.extensions.contains("STARTTLS")) {
            TlsStep::Plain => return Ok(()),
            TlsStep::Refuse(why) => return Err(ClientError::Tls(format!("{peer}: {why}"))),
            TlsStep::StartTls { verify } => verify,
        };
        let reply = self.transact(b"STARTTLS", "STARTTLS", "STARTTLS", tls.starttls_timeout).await?;
        if reply.code != 220 {
            return Err(ClientError::Tls(format!("{peer} refused STARTTLS: {}", reply.to_single_line())));
        }
        if !self.stream.buffer().is_empty() {
            return Err(ClientError::Protocol(format!("{peer} sent data after its STARTTLS reply")));
        }
        let ClientStream::Plain(tcp) = std::mem::replace(self.stream.get_mut(), ClientStream::Upgrading)
        else {
            return Err(ClientError::Protocol("STARTTLS on a connection that is not plaintext".into()));
        };
        let name = server_name(&self.target)?;
        let config = if verify { configs.verifying.clone() } else { configs.insecure.clone() };
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
        let tls_stream = match timeout(tls.starttls_timeout, handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.reusable = false;
                self.publish(|| diagnostic("ERROR", format!("TLS handshake failed: {e}")));
                return Err(ClientError::TlsHandshake(format!("{peer}: {e}")));
            }
            Err(_) => {
                self.reusable = false;
                return Err(ClientError::TlsHandshake(format!(
                    "{peer}: no handshake within starttls_timeout"
                )));
            }
        };
        self.tls = Some(TlsInfo::of(tls_stream.get_ref().1));
        *self.stream.get_mut() = ClientStream::Tls(Box::new(tls_stream));
        self.publish(|| diagnostic("INFO", "TLS handshake complete".into()));
        let hello = match timeout(self.settings.timeouts.ehlo, self.exchange(ehlo.as_bytes(), false)).await {
            Err(_) => return Err(ClientError::Timeout(format!("{ehlo} after STARTTLS with {peer}"))),
            Ok(Err(e)) => return Err(e.during(&format!("{ehlo} after STARTTLS with {peer}"))),
            Ok(Ok(r)) => r,
        };
        if hello.code != 250 {
            let text = response(&hello, ehlo).to_single_line();
            return Err(ClientError::Protocol(format!("{ehlo} after STARTTLS got {text}")));
        }
        self.extensions = extensions(&hello);
        Ok(())
    }

    /// Publish a trace event about this connection, if anyone is tracing.
    #[inline]
    fn publish(&self, payload: impl FnOnce() -> ClientTracePayload) {
        self.trace.publish(&self.settings.trace, &self.target, self.local, payload);
    }

    /// Tell `trace-smtp-client` subscribers which message (of scheduled queue `queue`) the
    /// next [`send`](Self::send) carries.
    pub fn trace_message(&mut self, sender: &str, recipients: &[String], queue: &str) {
        if self.trace.obtained(sender, recipients, queue) {
            self.publish(|| ClientTracePayload::MessageObtained);
        }
    }

    /// What STARTTLS negotiated on this connection, if it did.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// One transaction (SPEC §7.1): MAIL FROM, every RCPT (a refusal does not stop the others), then DATA
    /// if any RCPT was accepted, else RSET. Returns one Response per recipient, in order: its RCPT reply if
    /// refused, else the DATA or final "." reply; a refused MAIL FROM answers for everyone.
    /// `body` is the message as spooled; it is sent as [`smtp_data_payload`] makes it.
    pub async fn send(
        &mut self,
        sender: &str,
        recipients: &[String],
        body: &[u8],
    ) -> Result<Vec<Response>, ClientError> {
        if !self.is_reusable() {
            return Err(ClientError::Closed("connection already failed; it cannot send again".to_string()));
        }
        let n = recipients.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Empty sender = null reverse-path (bounces): `MAIL FROM:<>`.
        if !sender.is_empty()
            && let Err(e) = check_address(sender)
        {
            return Ok(vec![bad_address("MAIL FROM", sender, "5.1.7", e); n]);
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        // Without the extension we still send and let the server decide rather than fail locally.
        if !body.is_ascii() && self.extensions.contains("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        let utf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if utf8 && self.extensions.contains("SMTPUTF8") {
            mail.push_str(" SMTPUTF8");
        }
        if self.settings.pipelining && self.extensions.contains("PIPELINING") {
            return self.send_pipelined(&mail, recipients, body).await;
        }
        let t = self.settings.timeouts;
        let mail = self.command(&mail, t.mail_from).await?;
        if mail.code >= 400 {
            self.reset().await;
            return Ok(vec![mail; n]);
        }

        // None = accepted (or not yet tried); filled with the DATA / "." reply at the end.
        let mut results: Vec<Option<Response>> = vec![None; n];
        let mut accepted = 0;
        for (i, rcpt) in recipients.iter().enumerate() {
            if let Err(e) = check_address(rcpt) {
                results[i] = Some(bad_address("RCPT TO", rcpt, "5.1.3", e));
                continue;
            }
            let reply = self.command(&format!("RCPT TO:<{rcpt}>"), t.rcpt_to).await?;
            if reply.code == 421 {
                return Ok(fill(results, &reply)); // the server is going away: no DATA for anyone left
            }
            match reply.code < 400 {
                true => accepted += 1,
                false => results[i] = Some(reply),
            }
        }
        if accepted == 0 {
            self.reset().await;
            return Ok(fill(results, &mail));
        }

        let data = self.command("DATA", t.data).await?;
        if data.code != 354 {
            if data.code < 400 {
                self.reusable = false;
                return Err(ClientError::Protocol(format!("DATA got {}", data.to_single_line())));
            }
            self.reset().await;
            return Ok(fill(results, &data));
        }
        let payload = smtp_data_payload(body);
        let done = self.transact(&payload, ".", "end of message data", t.data_dot).await?;
        Ok(fill(results, &done))
    }

    /// [`send`](Self::send) with RFC 2920 pipelining: MAIL, the RCPTs and DATA go out in one
    /// write, then their replies are read in order, each within its own timeout. Outcomes are the
    /// same as the one-by-one exchange: a refused RCPT does not stop the others, a refused MAIL
    /// answers for everyone, a 421 ends the transaction and the connection.
    async fn send_pipelined(
        &mut self,
        mail: &str,
        recipients: &[String],
        body: &[u8],
    ) -> Result<Vec<Response>, ClientError> {
        let t = self.settings.timeouts;
        let mut results: Vec<Option<Response>> = vec![None; recipients.len()];
        let mut batch = format!("{mail}\r\n");
        let mut sent = Vec::with_capacity(recipients.len());
        for (i, rcpt) in recipients.iter().enumerate() {
            match check_address(rcpt) {
                Err(e) => results[i] = Some(bad_address("RCPT TO", rcpt, "5.1.3", e)),
                Ok(()) => {
                    let line = format!("RCPT TO:<{rcpt}>");
                    batch.push_str(&line);
                    batch.push_str("\r\n");
                    sent.push((i, line));
                }
            }
        }
        if sent.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        batch.push_str("DATA\r\n");
        let mail_reply = self.transact(batch.as_bytes(), mail, mail, t.mail_from).await?;
        if mail_reply.code == 421 {
            return Ok(fill(results, &mail_reply));
        }
        let mut accepted = 0;
        for (i, line) in &sent {
            let reply = self.read_response(line, t.rcpt_to).await?;
            if reply.code == 421 {
                return Ok(fill(results, &reply));
            }
            if mail_reply.code >= 400 {
                results[*i] = Some(mail_reply.clone());
            } else if reply.code < 400 {
                accepted += 1;
            } else {
                results[*i] = Some(reply);
            }
        }
        let data = self.read_response("DATA", t.data).await?;
        match data.code {
            354 if accepted > 0 => {
                let payload = smtp_data_payload(body);
                let done = self.transact(&payload, ".", "end of message data", t.data_dot).await?;
                Ok(fill(results, &done))
            }
            // A server that takes DATA with no recipient: end the empty message (RFC 2920 §3.1).
            354 => {
                self.transact(b".\r\n", ".", "end of message data", t.data_dot).await?;
                self.reset().await;
                Ok(fill(results, &mail_reply))
            }
            code if code < 400 => {
                self.reusable = false;
                Err(ClientError::Protocol(format!("DATA got {}", data.to_single_line())))
            }
            _ => {
                self.reset().await;
                Ok(fill(results, if accepted == 0 { &mail_reply } else { &data }))
            }
        }
    }

    /// Read the reply to a command already sent (pipelining).
    async fn read_response(&mut self, command: &str, limit: Duration) -> Result<Response, ClientError> {
        let result = match timeout(limit, self.read_reply()).await {
            Err(_) => Err(ClientError::Timeout(command.to_string())),
            Ok(Err(e)) => Err(e.during(command)),
            Ok(Ok(reply)) => Ok(response(&reply, command)),
        };
        self.reusable &= result.as_ref().is_ok_and(|r| r.code != 421);
        result
    }

    /// A connection can carry the next message unless it errored, timed out or got a 421.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    pub async fn quit(mut self) {
        if self.is_reusable() {
            let _ = self.command("QUIT", self.settings.timeouts.rset).await;
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The local address and port this connection leaves from.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Send one command and turn whatever the server says into a Response (command = the line sent).
    async fn command(&mut self, line: &str, limit: Duration) -> Result<Response, ClientError> {
        self.transact(line.as_bytes(), line, line, limit).await
    }

    /// Write `bytes` (CRLF added unless they are a DATA payload), read the reply within `limit`.
    async fn transact(
        &mut self,
        bytes: &[u8],
        command: &str,
        what: &str,
        limit: Duration,
    ) -> Result<Response, ClientError> {
        // The DATA payload (and its lone terminator) goes to the trace as a size only.
        let content = command == ".";
        let result = match timeout(limit, self.exchange(bytes, content)).await {
            Err(_) => Err(ClientError::Timeout(what.to_string())),
            Ok(Err(e)) => Err(e.during(what)),
            Ok(Ok(reply)) => Ok(response(&reply, command)),
        };
        // After a timeout the stream may still deliver the late reply: never reuse it.
        self.reusable &= result.as_ref().is_ok_and(|r| r.code != 421);
        result
    }

    /// Write a command line (or a whole DATA payload, which carries its own line ends) and read
    /// the reply.
    async fn exchange(&mut self, bytes: &[u8], content: bool) -> Result<Reply, ReadError> {
        self.publish(|| match content {
            true => ClientTracePayload::AbbreviatedWrite {
                snippet: smtp_trace::CONTENT_PLACEHOLDER.into(),
                len: bytes.len(),
            },
            false if bytes.ends_with(b"\r\n") => ClientTracePayload::Write(smtp_trace::bounded_text(bytes)),
            false => ClientTracePayload::Write(smtp_trace::bounded_text(&[bytes, b"\r\n"].concat())),
        });
        let stream = self.stream.get_mut();
        stream.write_all(bytes).await.map_err(ReadError::Io)?;
        if !bytes.ends_with(b"\r\n") {
            stream.write_all(b"\r\n").await.map_err(ReadError::Io)?;
        }
        stream.flush().await.map_err(ReadError::Io)?;
        self.read_reply().await
    }

    /// Read one (possibly multi-line) reply: `ddd-text` lines then a `ddd text` line, one code.
    async fn read_reply(&mut self) -> Result<Reply, ReadError> {
        let mut lines = Vec::new();
        let mut code = 0;
        let mut raw = Vec::with_capacity(128);
        // The reply as read, kept only while someone traces.
        let mut traced: Option<Vec<u8>> = crate::smtp_trace::CLIENT.is_active().then(Vec::new);
        loop {
            raw.clear();
            let n = (&mut self.stream).take(MAX_REPLY_LINE).read_until(b'\n', &mut raw).await;
            match n.map_err(ReadError::Io)? {
                0 => return Err(ReadError::Closed),
                _ if !raw.ends_with(b"\n") => {
                    return Err(ReadError::Garbage("a reply line longer than 4096 octets".into()));
                }
                _ => {}
            }
            if let Some(t) = traced.as_mut() {
                t.extend_from_slice(&raw);
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let bad = || ReadError::Garbage(format!("not an SMTP reply: {:?}", truncate(line)));
            let this: u16 = match line.get(..3) {
                Some(d) if d.bytes().all(|b| b.is_ascii_digit()) => d.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            if !lines.is_empty() && this != code {
                return Err(bad());
            }
            code = this;
            let (last, text) = match line.as_bytes().get(3) {
                None => (true, ""),
                Some(b' ') => (true, &line[4..]),
                Some(b'-') => (false, &line[4..]),
                Some(_) => return Err(bad()),
            };
            lines.push(text.to_string());
            if last {
                if let Some(t) = traced {
                    self.publish(|| ClientTracePayload::Read(smtp_trace::bounded_text(&t)));
                }
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ReadError::Garbage(format!("a reply of more than {MAX_REPLY_LINES} lines")));
            }
        }
    }

    /// Abandon a transaction; a connection that cannot even RSET is not reused.
    async fn reset(&mut self) {
        if !self.reusable {
            return;
        }
        let ok = self.command("RSET", self.settings.timeouts.rset).await.is_ok_and(|r| r.code < 400);
        self.reusable &= ok;
    }
}

impl Drop for SmtpClient {
    fn drop(&mut self) {
        self.publish(|| ClientTracePayload::Closed);
    }
}

fn diagnostic(level: &str, message: String) -> ClientTracePayload {
    ClientTracePayload::Diagnostic { level: level.to_string(), message }
}

/// EHLO keywords, upper-cased: the first line is the server's name, each further one a keyword
/// and its parameters.
fn extensions(hello: &Reply) -> HashSet<String> {
    hello
        .lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The name the certificate must carry: the MX host name, or its address for a literal.
fn server_name(target: &Target) -> Result<ServerName<'static>, ClientError> {
    if target.name.starts_with('[') {
        return Ok(ServerName::IpAddress(target.addr.ip().into()));
    }
    ServerName::try_from(target.name.trim_end_matches('.').to_string())
        .map_err(|e| ClientError::Tls(format!("{} is not a name a certificate can carry: {e}", target.name)))
}

/// The connection under the client: plaintext until STARTTLS.
enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Upgrading,
}

impl tokio::io::AsyncRead for ClientStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Upgrading => std::task::Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl tokio::io::AsyncWrite for ClientStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Upgrading => std::task::Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Upgrading => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Upgrading => std::task::Poll::Ready(Ok(())),
        }
    }
}

/// Connect to `to`, first binding `source` (an egress source's address) when given. A source
/// address that is not on this host fails here, and the error says which address it was.
async fn connect_from(source: Option<IpAddr>, to: SocketAddr) -> io::Result<TcpStream> {
    let Some(ip) = source else { return TcpStream::connect(to).await };
    let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket
        .bind(SocketAddr::new(ip, 0))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind source address {ip}: {e}")))?;
    socket.connect(to).await
}

/// What went wrong reading or writing, before we know which exchange it was part of.
#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Closed,
    Garbage(String),
}

impl ReadError {
    fn during(self, what: &str) -> ClientError {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match self {
            ReadError::Closed => {
                ClientError::Closed(format!("the server closed the connection during {what}"))
            }
            ReadError::Io(e) => match e.kind() {
                io::ErrorKind::TimedOut => ClientError::Timeout(what.to_string()),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof => {
                    ClientError::Closed(format!("{e} during {what}"))
                }
                _ => ClientError::Io(format!("{e} during {what}")),
            },
            ReadError::Garbage(why) => ClientError::Protocol(format!("{why} during {what}")),
        }
    }
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(80).map_or(s, |(i, _)| &s[..i])
}

/// EHLO/HELO argument: our name, or an address literal when it is an IP (RFC 5321 §4.1.3).
fn client_id(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
        Ok(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        Err(_) => name.to_string(),
    }
}

/// An address we can put between `<` and `>` on a command line: the listener's mailbox rule
/// (model::address), which also keeps out anything that could end or split the line.
fn check_address(addr: &str) -> Result<(), &'static str> {
    crate::model::address::check_mailbox(addr).map_err(|e| e.reason())
}

/// Every recipient without its own refusal gets `reply`.
fn fill(results: Vec<Option<Response>>, reply: &Response) -> Vec<Response> {
    results.into_iter().map(|r| r.unwrap_or_else(|| reply.clone())).collect()
}

/// An address we refuse (no `@`, `a..b@x`, a CR inside, …) cannot be put on the wire safely; that
/// recipient gets a permanent 501 of our own instead of the whole transaction failing.
fn bad_address(verb: &str, addr: &str, enhanced: &str, e: impl std::fmt::Display) -> Response {
    let shown = addr.escape_debug().to_string();
    let mut r =
        Response::new(501, Some(enhanced), format!("Ferry cannot send address <{shown}> over SMTP: {e}"));
    r.command = Some(format!("{verb}:<{shown}>"));
    r
}

/// A reply as a Response: its lines joined by spaces, dropping an enhanced code repeated on
/// continuation lines; the enhanced code of the first line kept apart (SPEC §3.2).
fn response(reply: &Reply, command: &str) -> Response {
    let first = reply.lines.first().map(String::as_str).unwrap_or("");
    let code = first.split(' ').next().filter(|w| EnhancedCode::parse(w).is_some());
    let mut text = first.to_string();
    for line in reply.lines.iter().skip(1) {
        let rest = code.and_then(|c| line.strip_prefix(c)).and_then(|l| l.strip_prefix(' '));
        text.push(' ');
        text.push_str(rest.unwrap_or(line));
    }
    let text = text.trim();
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut r = match EnhancedCode::parse(first) {
        Some(_) => Response::new(reply.code, Some(first), rest.trim_start()),
        None => Response::new(reply.code, None, text),
    };
    if !command.is_empty() {
        r.command = Some(command.to_string());
    }
    r
}

/// SPEC §7.1 classification of one recipient's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Delivered,
    Transient,
    TooManyRecipients,
    Permanent,
}

/// SPEC §7.1: 2xx delivered; 3xx, 4xx, 503 transient; 452/552 to RCPT without an enhanced code transient
/// (old servers' "too many recipients"); 452 4.5.3 to RCPT retried at once in a new transaction; other 5xx
/// permanent. Codes outside 2xx–5xx are garbage and treated as transient rather than bounced.
pub fn classify(r: &Response) -> Disposition {
    let to_rcpt =
        r.command.as_deref().is_some_and(|c| c.get(..4).is_some_and(|v| v.eq_ignore_ascii_case("RCPT")));
    let too_many = EnhancedCode { class: 4, subject: 5, detail: 3 };
    match r.code {
        200..=299 => Disposition::Delivered,
        452 if to_rcpt && r.enhanced_code == Some(too_many) => Disposition::TooManyRecipients,
        552 if to_rcpt && r.enhanced_code.is_none() => Disposition::Transient,
        503 => Disposition::Transient,
        500..=599 => Disposition::Permanent,
        _ => Disposition::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// The fake server's script. `rules` maps an address in MAIL FROM / RCPT TO to its reply line;
    /// "HANG" (also as the greeting) means never answer.
    struct Script {
        greeting: &'static str,
        ehlo: &'static str,
        rules: Vec<(&'static str, &'static str)>,
    }
    const OK: Script =
        Script { greeting: "220 fake ESMTP", ehlo: "250-fake\r\n250 8BITMIME", rules: Vec::new() };

    /// What the server saw: connections, command lines, DATA as on the wire, bodies after unstuffing.
    type Seen = Arc<Mutex<(usize, Vec<String>, String, Vec<String>)>>;

    async fn fake_server(script: Script) -> (Target, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target { name: "fake".into(), addr: listener.local_addr().unwrap() };
        let (seen, script) = (Seen::default(), Arc::new(script));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                seen2.lock().unwrap().0 += 1;
                tokio::spawn(session(sock, script.clone(), seen2.clone()));
            }
        });
        (target, seen)
    }

    async fn session(sock: TcpStream, script: Arc<Script>, seen: Seen) {
        let (rd, mut wr) = sock.into_split();
        let (mut rd, mut line, mut reply) = (BufReader::new(rd), String::new(), script.greeting.to_string());
        // (MAIL accepted, some RCPT accepted): a real server refuses DATA without both.
        let mut tx = (false, false);
        while reply != "HANG" {
            wr.write_all(format!("{reply}\r\n").as_bytes()).await.unwrap();
            line.clear();
            if reply.starts_with("421")
                || reply.starts_with("221")
                || rd.read_line(&mut line).await.unwrap() == 0
            {
                return;
            }
            let cmd = line.trim_end().to_string();
            seen.lock().unwrap().1.push(cmd.clone());
            // The client's RCPTs and DATA arrived with its MAIL, before any reply: pipelined.
            if cmd.starts_with("MAIL") && String::from_utf8_lossy(rd.buffer()).contains("DATA\r\n") {
                seen.lock().unwrap().1.push("(pipelined)".into());
            }
            let addr = cmd.split_once('<').and_then(|(_, a)| a.split_once('>')).map_or("", |(a, _)| a);
            let rule = script.rules.iter().find(|(a, _)| *a == addr).map(|(_, r)| r.to_string());
            reply = match cmd.get(..4).unwrap_or("") {
                "EHLO" => script.ehlo.to_string(),
                "MAIL" | "RCPT" => {
                    let r = rule.unwrap_or_else(|| "250 2.1.0 ok".into());
                    let ok = r.starts_with('2');
                    if cmd.starts_with("MAIL") {
                        tx = (ok, false)
                    } else {
                        tx.1 |= ok && tx.0
                    }
                    r
                }
                "DATA" if tx != (true, true) => "554 5.5.1 no valid recipients".into(),
                "DATA" => {
                    tx = (false, false);
                    wr.write_all(b"354 go ahead\r\n").await.unwrap();
                    let mut body = String::new();
                    loop {
                        line.clear();
                        if rd.read_line(&mut line).await.unwrap() == 0 || line == ".\r\n" {
                            break;
                        }
                        seen.lock().unwrap().2.push_str(&line);
                        body.push_str(line.strip_prefix('.').unwrap_or(&line));
                    }
                    seen.lock().unwrap().3.push(body);
                    "250 2.0.0 queued as 1".into()
                }
                "QUIT" => "221 2.0.0 bye".into(),
                "HELO" | "RSET" => {
                    tx = (false, false);
                    "250 ok".into()
                }
                _ => "500 5.5.2 what?".into(),
            };
        }
        tokio::time::sleep(Duration::from_secs(30)).await; // hold the connection open, silent
    }

    fn settings(ms: u64) -> ClientSettings {
        let t = Duration::from_millis(ms);
        ClientSettings {
            ehlo_name: "ferry.test".into(),
            source_address: None,
            timeouts: Timeouts::uniform(t),
            pipelining: true,
            tls: TlsSettings::disabled(),
            trace: TraceLabels::default(),
        }
    }

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn refused_rcpt_does_not_stop_the_others() {
        let (target, seen) =
            fake_server(Script { rules: vec![("bad@x.com", "550 5.1.1 no such user")], ..OK }).await;
        let mut client = SmtpClient::connect(&target, &settings(5000)).await.unwrap();
        let body = "Subject: hi\r\n\r\n.leading dot\r\nlast line\r\n";
        let out = client.send("s@x.com", &rcpts(&["bad@x.com", "ok@x.com"]), body.as_bytes()).await.unwrap();
        assert_eq!((out.len(), out[0].code, out[0].content.as_str()), (2, 550, "no such user"));
        assert_eq!(out[0].enhanced_code, EnhancedCode::parse("5.1.1"));
        assert_eq!(out[0].command.as_deref(), Some("RCPT TO:<bad@x.com>"));
        assert_eq!(
            (out[1].to_single_line(), out[1].command.as_deref()),
            ("250 2.0.0 queued as 1".into(), Some("."))
        );
        assert_eq!(
            out.iter().map(classify).collect::<Vec<_>>(),
            [Disposition::Permanent, Disposition::Delivered]
        );
        client.quit().await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.3, [body]); // intact after unstuffing, trailing CRLF not doubled
        assert!(seen.2.contains("\r\n..leading dot\r\n"), "dot-stuffed on the wire: {:?}", seen.2);
        assert_eq!(seen.1.last().map(String::as_str), Some("QUIT"));
    }

    /// Issue #12: whatever the spool holds, no bare LF or bare CR reaches the peer, and a line
    /// that starts with "." after a bare LF is stuffed, so the smuggled "message" stays content.
    #[tokio::test]
    async fn bare_line_endings_are_normalised_on_the_wire() {
        let (target, seen) = fake_server(OK).await;
        let mut client = SmtpClient::connect(&target, &settings(5000)).await.unwrap();
        let body = "Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<spoof@bank.test>\r\nlone\rcr";
        let out = client.send("s@x.com", &rcpts(&["a@x.com"]), body.as_bytes()).await.unwrap();
        assert_eq!(classify(&out[0]), Disposition::Delivered);
        client.quit().await;
        let seen = seen.lock().unwrap();
        let wire = &seen.2;
        assert_eq!(wire, "Subject: x\r\n\r\nhello\r\n..\r\nMAIL FROM:<spoof@bank.test>\r\nlone\r\ncr\r\n");
        // One transaction only: the server never saw the smuggled MAIL FROM as a command.
        assert_eq!(seen.1.iter().filter(|c| c.starts_with("MAIL")).count(), 1, "{:?}", seen.1);
    }

    #[tokio::test]
    async fn one_connection_carries_several_transactions() {
        let (target, seen) =
            fake_server(Script { rules: vec![("blocked@x.com", "550 5.7.1 blocked")], ..OK }).await;
        let mut client = SmtpClient::connect(&target, &settings(5000)).await.unwrap();
        let out = client.send("", &rcpts(&["a@x.com"]), b"one\r\n").await.unwrap();
        assert_eq!(classify(&out[0]), Disposition::Delivered);
        // A refused MAIL FROM answers for every recipient, then RSET.
        let out = client.send("blocked@x.com", &rcpts(&["a@x.com", "b@x.com"]), b"x\r\n").await.unwrap();
        assert!(
            out.iter().all(|r| r.code == 550 && r.command.as_deref() == Some("MAIL FROM:<blocked@x.com>"))
        );
        // An address lettre refuses gets our own 501 and never reaches the server.
        let out = client.send("s@x.com", &rcpts(&["no-at-sign", "ok@x.com"]), b"two\r\n").await.unwrap();
        assert_eq!((out[0].code, out[0].command.as_deref()), (501, Some("RCPT TO:<no-at-sign>")));
        assert_eq!((classify(&out[0]), classify(&out[1])), (Disposition::Permanent, Disposition::Delivered));
        assert!(client.is_reusable());
        let seen = seen.lock().unwrap();
        assert_eq!((seen.0, &seen.3[..]), (1, &["one\r\n".to_string(), "two\r\n".to_string()][..]));
        assert!(seen.1.contains(&"MAIL FROM:<>".to_string()) && seen.1.contains(&"RSET".to_string()));
        assert!(!seen.1.iter().any(|c| c.contains("no-at-sign")));
    }

    /// With PIPELINING offered, the same outcomes as one by one: refused RCPTs keep their own
    /// answers, the others get the final reply, and a refused MAIL answers for everyone.
    #[tokio::test]
    async fn pipelined_transactions_keep_per_recipient_outcomes() {
        let script = Script {
            ehlo: "250-fake\r\n250-PIPELINING\r\n250 8BITMIME",
            rules: vec![("bad@x.com", "550 5.1.1 no such user"), ("blocked@x.com", "550 5.7.1 blocked")],
            ..OK
        };
        let (target, seen) = fake_server(script).await;
        let mut client = SmtpClient::connect(&target, &settings(5000)).await.unwrap();
        let out =
            client.send("s@x.com", &rcpts(&["a@x.com", "bad@x.com", "c@x.com"]), b"hi\r\n").await.unwrap();
        let codes: Vec<u16> = out.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 550, 250]);
        assert_eq!(out[1].command.as_deref(), Some("RCPT TO:<bad@x.com>"));
        // Only refused recipients: DATA is refused by the server, then RSET; the connection lives on.
        let out = client.send("s@x.com", &rcpts(&["bad@x.com"]), b"x\r\n").await.unwrap();
        assert_eq!(out[0].code, 550);
        let out = client.send("blocked@x.com", &rcpts(&["a@x.com", "c@x.com"]), b"x\r\n").await.unwrap();
        assert!(
            out.iter().all(|r| r.code == 550 && r.command.as_deref() == Some("MAIL FROM:<blocked@x.com>"))
        );
        let out = client.send("s@x.com", &rcpts(&["z@x.com"]), b"last\r\n").await.unwrap();
        assert_eq!(out[0].code, 250);
        assert!(client.is_reusable());
        let seen = seen.lock().unwrap();
        assert_eq!((seen.0, &seen.3[..]), (1, &["hi\r\n".to_string(), "last\r\n".to_string()][..]));
        assert_eq!(seen.1.iter().filter(|c| *c == "(pipelined)").count(), 4, "{:?}", seen.1);
    }

    #[tokio::test]
    async fn rcpt_421_answers_for_everyone_left_and_ends_reuse() {
        let (target, seen) =
            fake_server(Script { rules: vec![("b@x.com", "421 4.3.2 shutting down")], ..OK }).await;
        let mut client = SmtpClient::connect(&target, &settings(5000)).await.unwrap();
        let out = client.send("s@x.com", &rcpts(&["a@x.com", "b@x.com", "c@x.com"]), b"x\r\n").await.unwrap();
        assert!(out.iter().all(|r| r.code == 421 && r.command.as_deref() == Some("RCPT TO:<b@x.com>")));
        assert!(!client.is_reusable());
        assert!(!seen.lock().unwrap().1.iter().any(|c| c == "DATA" || c.contains("c@x.com")));
    }

    #[tokio::test]
    async fn greeting_421_is_an_error_with_the_server_text() {
        let (target, _) = fake_server(Script { greeting: "421 4.3.2 too busy", ..OK }).await;
        let err = SmtpClient::connect(&target, &settings(5000)).await.err();
        assert!(matches!(&err, Some(ClientError::Closed(m)) if m.contains("421 4.3.2 too busy")), "{err:?}");
    }

    #[tokio::test]
    async fn silent_server_times_out_within_command_timeout() {
        let (target, _) = fake_server(Script { greeting: "HANG", ..OK }).await;
        let start = tokio::time::Instant::now();
        let err = SmtpClient::connect(&target, &settings(200)).await.err();
        assert!(matches!(&err, Some(ClientError::Timeout(w)) if w.starts_with("greeting")), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        // Mid-transaction too; the connection is then never reused.
        let (target, _) = fake_server(Script { rules: vec![("slow@x.com", "HANG")], ..OK }).await;
        let mut client = SmtpClient::connect(&target, &settings(200)).await.unwrap();
        let err = client.send("s@x.com", &rcpts(&["slow@x.com"]), b"x\r\n").await.err();
        assert!(matches!(&err, Some(ClientError::Timeout(c)) if c == "RCPT TO:<slow@x.com>"), "{err:?}");
        assert!(!client.is_reusable());
    }

    #[tokio::test]
    async fn ehlo_refused_falls_back_to_helo() {
        let (target, seen) = fake_server(Script { ehlo: "502 5.5.1 EHLO not implemented", ..OK }).await;
        let mut client = SmtpClient::connect(&target, &settings(5000)).await.unwrap();
        let out = client.send("s@x.com", &rcpts(&["a@x.com"]), b"x\r\n").await.unwrap();
        assert_eq!(classify(&out[0]), Disposition::Delivered);
        let seen = seen.lock().unwrap();
        assert!(seen.0 == 2 && seen.1.contains(&"HELO ferry.test".to_string()), "{:?}", seen.1);
    }

    #[test]
    fn classification_follows_spec_7_1() {
        let r =
            |code, enh, cmd: &str| Response { command: Some(cmd.into()), ..Response::new(code, enh, "x") };
        use Disposition::*;
        for (resp, want) in [
            (r(250, Some("2.0.0"), "."), Delivered),
            (r(354, None, "DATA"), Transient),
            (r(451, Some("4.4.4"), "."), Transient),
            (r(421, None, "MAIL FROM:<a@b.c>"), Transient),
            (r(503, Some("5.5.1"), "DATA"), Transient),
            (r(452, None, "RCPT TO:<a@b.c>"), Transient),
            (r(552, None, "RCPT TO:<a@b.c>"), Transient),
            (r(452, Some("4.5.3"), "RCPT TO:<a@b.c>"), TooManyRecipients),
            (r(452, Some("4.5.3"), "MAIL FROM:<a@b.c>"), Transient),
            (r(452, Some("4.2.2"), "RCPT TO:<a@b.c>"), Transient),
            (r(552, Some("5.2.2"), "RCPT TO:<a@b.c>"), Permanent),
            (r(552, None, "."), Permanent),
            (r(550, Some("5.1.1"), "RCPT TO:<a@b.c>"), Permanent),
            (r(554, None, "."), Permanent),
        ] {
            assert_eq!(classify(&resp), want, "{resp:?}");
        }
    }
}
