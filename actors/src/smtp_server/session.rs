//! One SMTP connection: reads commands, answers them, hands complete messages to [`Reception`].
//! Responses to pipelined commands are batched and flushed whenever the input runs dry, before
//! the 354 of DATA, and before closing (RFC 2920).
//!
//! A slow client cannot stretch a session: besides the per-read `idle_timeout`, a command line
//! must be complete within `command_timeout` and the DATA phase within `data_timeout`, however
//! the bytes trickle in, and a reply the client does not read fails after `write_timeout`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferry_config::{Cidr, InvalidLineEndings, cidr::any_contains};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::command::{self, Command};
use super::data::{DataOutcome, DataReader, MAX_TEXT_LINE};
use super::line::{Line, LineReader};
use super::reception::{Connection, Dispositions, Reception, Reply};
use super::stream::SessionStream;
use super::trace;
use crate::model::line_endings;
use crate::model::listener_domain::{ListenerDomain, RelayDisposition};
use crate::model::smtp_trace::{self, ServerTracePayload};
use crate::policy::PolicyError;
use crate::policy::smtp_events::CommandArg;
use crate::tls::TlsInfo;
use std::collections::HashMap;

/// Listener settings every session reads.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub idle_timeout: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub write_timeout: Duration,
    pub relay_hosts: Vec<Cidr>,
    pub invalid_line_endings: InvalidLineEndings,
    /// STARTTLS is offered when set (always, in `ferry serve`: a self-signed certificate if none
    /// is configured).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `auth_required`: MAIL before a successful AUTH gets 530.
    pub auth_required: bool,
    /// Text after the host name in the 220 greeting.
    pub banner: String,
    /// TLS from the first byte (port 465), with `tls`; STARTTLS is then not offered.
    pub implicit_tls: bool,
}

/// Protocol errors tolerated before the session is closed with 421.
const MAX_ERRORS: u32 = 10;

#[derive(Default)]
struct Transaction {
    sender: Option<String>,
    recipients: Vec<String>,
    /// How each recipient domain's mail is handled (only with a `get_listener_domain` handler).
    dispositions: Dispositions,
}

/// `get_listener_domain` answers a session keeps: an abusive client cannot grow it without bound
/// by trying many domains.
const MAX_CACHED_DOMAINS: usize = 64;

enum Input {
    Data,
    Closed,
    /// No byte for `idle_timeout`.
    TimedOut,
    /// The command line or DATA phase did not complete by its deadline.
    Deadline,
    ShuttingDown,
}

pub struct Session {
    stream: SessionStream,
    buf: BytesMut,
    out: Vec<u8>,
    settings: Arc<SessionSettings>,
    reception: Arc<Reception>,
    conn: Connection,
    shutdown: watch::Receiver<bool>,
    greeted: bool,
    tx: Transaction,
    errors: u32,
    auth_failures: u32,
    /// `get_listener_domain` per domain (None: no configuration for it).
    listener_domains: HashMap<String, Option<ListenerDomain>>,
}

impl Session {
    pub fn new(
        stream: TcpStream,
        conn: Connection,
        settings: Arc<SessionSettings>,
        reception: Arc<Reception>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            stream: SessionStream::Plain(stream),
            buf: BytesMut::with_capacity(16 * 1024),
            out: Vec::with_capacity(1024),
            settings,
            reception,
            conn,
            shutdown,
            greeted: false,
            tx: Transaction::default(),
            errors: 0,
            auth_failures: 0,
            listener_domains: HashMap::new(),
        }
    }

    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        if !line.ends_with("\r\n") {
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// Write the pending replies; a client that does not read them within `write_timeout` is
    /// cut off (its socket buffers are full: nothing more can reach it anyway).
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            trace::publish(&self.conn, || ServerTracePayload::Write(smtp_trace::bounded_text(&self.out)));
            let limit = self.settings.write_timeout;
            match tokio::time::timeout(limit, self.stream.write_all(&self.out)).await {
                Ok(written) => written?,
                Err(_) => {
                    tracing::info!(peer = %self.conn.peer, "client did not read its replies within smtp.write_timeout; disconnected");
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout"));
                }
            }
            self.stream.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Read whatever arrives next, giving up at `deadline` or after `idle_timeout` of silence.
    async fn read_more(&mut self, deadline: Instant) -> std::io::Result<Input> {
        if *self.shutdown.borrow() {
            return Ok(Input::ShuttingDown);
        }
        let idle = Instant::now() + self.settings.idle_timeout;
        let (until, expired) =
            if deadline < idle { (deadline, Input::Deadline) } else { (idle, Input::TimedOut) };
        tokio::select! {
            read = tokio::time::timeout_at(until, self.stream.read_buf(&mut self.buf)) => match read {
                Err(_) => Ok(expired),
                Ok(Ok(0)) => Ok(Input::Closed),
                Ok(Ok(_)) => Ok(Input::Data),
                Ok(Err(e)) => Err(e),
            },
            _ = self.shutdown.changed() => Ok(Input::ShuttingDown),
        }
    }

    /// Run the session to its end. I/O errors just end it: nothing half-received is kept.
    pub async fn run(mut self) -> std::io::Result<()> {
        trace::publish(&self.conn, || ServerTracePayload::Connected);
        let ended = self.converse().await;
        if let Err(e) = &ended {
            trace::diagnostic(&self.conn, "ERROR", || format!("I/O error: {e}"));
        }
        trace::publish(&self.conn, || ServerTracePayload::Closed);
        ended
    }

    async fn converse(&mut self) -> std::io::Result<()> {
        let hostname = self.settings.hostname.clone();
        if self.settings.implicit_tls && !self.handshake().await? {
            return Ok(());
        }
        self.reply(&format!("220 {hostname} {}", self.settings.banner));
        self.flush().await?;
        let mut lines = LineReader::default();
        // When the command line being read must be complete; set when we start waiting for one.
        let mut line_deadline: Option<Instant> = None;
        loop {
            while let Some(line) = lines.next(&mut self.buf) {
                line_deadline = None;
                let keep_going = match line {
                    Line::TooLong => {
                        self.reply("500 5.5.2 Line too long (the limit is 512 octets including CRLF)");
                        self.protocol_error()
                    }
                    Line::Command(bytes) => self.command(&bytes).await?,
                };
                if !keep_going {
                    self.flush().await?;
                    return Ok(());
                }
            }
            self.flush().await?;
            let deadline =
                *line_deadline.get_or_insert_with(|| Instant::now() + self.settings.command_timeout);
            match self.read_more(deadline).await? {
                Input::Data => {}
                Input::Closed => return Ok(()),
                Input::TimedOut => {
                    self.reply(&format!("421 4.4.2 {hostname} Idle timeout, closing connection"));
                    return self.flush().await;
                }
                Input::Deadline => {
                    tracing::info!(peer = %self.conn.peer, "command line not complete within smtp.command_timeout; disconnected");
                    self.reply(&format!("421 4.4.2 {hostname} Command timeout, closing connection"));
                    return self.flush().await;
                }
                Input::ShuttingDown => {
                    self.reply(&format!("421 4.3.2 {hostname} Service shutting down"));
                    return self.flush().await;
                }
            }
        }
    }

    /// Count a protocol error; false once there have been too many.
    fn protocol_error(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.reply("421 4.7.0 Too many errors, closing connection");
            return false;
        }
        true
    }

    /// Handle one command line; false ends the session.
    async fn command(&mut self, line: &[u8]) -> std::io::Result<bool> {
        trace::publish(&self.conn, || ServerTracePayload::Read(smtp_trace::redact_command(line)));
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                self.reply(&e.reply());
                return Ok(self.protocol_error());
            }
        };
        let hostname = self.settings.hostname.clone();
        match cmd {
            Command::Ehlo(domain) => {
                if let Err(reply) =
                    self.command_event("smtp_server_ehlo", CommandArg::Domain(domain.clone())).await
                {
                    self.reply(&reply.line());
                    return Ok(true);
                }
                self.conn.ehlo = domain.clone();
                self.greeted = true;
                self.tx = Transaction::default();
                let max = self.settings.max_message_size;
                let starttls = match (&self.settings.tls, &self.conn.tls) {
                    (Some(_), None) => "250-STARTTLS\r\n",
                    _ => "",
                };
                // AUTH only once the session is encrypted: a password never crosses in clear.
                let auth = if self.auth_offered() { "250-AUTH PLAIN LOGIN\r\n" } else { "" };
                self.reply(&format!(
                    "250-{hostname} Hello {domain}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE {max}\r\n{starttls}{auth}250 ENHANCEDSTATUSCODES"
                ));
            }
            Command::Helo(domain) => {
                if let Err(reply) =
                    self.command_event("smtp_server_ehlo", CommandArg::Domain(domain.clone())).await
                {
                    self.reply(&reply.line());
                    return Ok(true);
                }
                self.conn.ehlo = domain.clone();
                self.greeted = true;
                self.tx = Transaction::default();
                self.reply(&format!("250 {hostname} Hello {domain}"));
            }
            Command::MailFrom { address, size } => {
                if !self.greeted {
                    self.reply("503 5.5.1 Send EHLO or HELO first");
                    return Ok(self.protocol_error());
                }
                if self.tx.sender.is_some() {
                    self.reply("503 5.5.1 Sender already given; use RSET to start over");
                    return Ok(self.protocol_error());
                }
                if self.settings.auth_required && self.conn.auth.is_none() {
                    self.reply("530 5.7.0 Authentication required");
                    return Ok(self.protocol_error());
                }
                if size.is_some_and(|s| s > self.settings.max_message_size as u64) {
                    let reply = Reply::new(552, "5.3.4", "Message size exceeds fixed maximum message size");
                    self.reception.log_rejection(&self.conn, &address, "", &reply, "MAIL FROM");
                    self.reply(&reply.line());
                    return Ok(true);
                }
                if let Err(reply) =
                    self.command_event("smtp_server_mail_from", CommandArg::Address(address.clone())).await
                {
                    self.reception.log_rejection(&self.conn, &address, "", &reply, "MAIL FROM");
                    self.reply(&reply.line());
                    return Ok(true);
                }
                self.tx.sender = Some(address);
                self.reply("250 2.1.0 OK");
            }
            Command::RcptTo { address } => {
                let Some(sender) = self.tx.sender.clone() else {
                    self.reply("503 5.5.1 Need MAIL FROM first");
                    return Ok(self.protocol_error());
                };
                let disposition = match self.relay_disposition(&sender, &address).await {
                    Ok(d) => d,
                    Err(reply) => {
                        self.reception.log_rejection(&self.conn, &sender, &address, &reply, "RCPT TO");
                        self.reply(&reply.line());
                        return Ok(true);
                    }
                };
                let refusal = if !disposition.accepts_rcpt() {
                    Some(Reply::new(550, "5.7.1", format!("Relaying denied for <{address}>")))
                } else if self.tx.recipients.len() >= self.settings.max_recipients {
                    Some(Reply::new(452, "4.5.3", "Too many recipients"))
                } else {
                    self.command_event("smtp_server_rcpt_to", CommandArg::Address(address.clone()))
                        .await
                        .err()
                };
                match refusal {
                    Some(reply) => {
                        self.reception.log_rejection(&self.conn, &sender, &address, &reply, "RCPT TO");
                        self.reply(&reply.line());
                    }
                    None => {
                        self.tx.dispositions.entry(domain_of(&address)).or_insert(disposition);
                        self.tx.recipients.push(address);
                        self.reply("250 2.1.5 OK");
                    }
                }
            }
            Command::Data => return self.data().await,
            Command::Rset => {
                self.tx = Transaction::default();
                self.reply("250 2.0.0 OK");
            }
            Command::Noop => self.reply("250 2.0.0 OK"),
            Command::Vrfy => {
                self.reply("252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery")
            }
            Command::Help => self.reply("214 2.0.0 See RFC 5321"),
            Command::StartTls => return self.start_tls().await,
            Command::Auth { mechanism, initial } => return self.auth(&mechanism, initial).await,
            Command::Quit => {
                self.reply(&format!("221 2.0.0 {hostname} Bye"));
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// May this client send to `recipient`, and is its domain a report mailbox? `relay_hosts` and
    /// AUTH decide, widened by the policy's `get_listener_domain` for the sender's and the
    /// recipient's domains. A policy failure is a temporary refusal.
    async fn relay_disposition(&mut self, sender: &str, recipient: &str) -> Result<RelayDisposition, Reply> {
        let trusted =
            self.conn.auth.is_some() || any_contains(&self.settings.relay_hosts, self.conn.peer.ip());
        if !self.reception.policy.has_handler(crate::policy::listener_domain::EVENT) {
            return Ok(RelayDisposition { relay: trusted, ..Default::default() });
        }
        let from = self.listener_domain(&domain_of(sender)).await?;
        let to = self.listener_domain(&domain_of(recipient)).await?;
        Ok(RelayDisposition::decide(trusted, self.conn.peer.ip(), from.as_ref(), to.as_ref()))
    }

    /// `smtp_server_ehlo` / `smtp_server_mail_from` / `smtp_server_rcpt_to`, when the policy
    /// handles it: a `kumo.reject` in a handler is the command's reply; any other failure a 451.
    async fn command_event(&mut self, event: &'static str, arg: CommandArg) -> Result<(), Reply> {
        if !self.reception.policy.has_handler(event) {
            return Ok(());
        }
        let meta = self.conn.meta();
        let answer = self
            .reception
            .policy
            .call(crate::policy::Lane::Reception, move |state| state.smtp_command_event(event, arg, &meta))
            .await;
        match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(PolicyError::Rejected { code, text })) => {
                let code = if (400..600).contains(&code) { code } else { 550 };
                Err(Reply { code, enhanced: None, text })
            }
            Ok(Err(e)) => {
                tracing::error!(event, error = %e, "listener event failed; command refused with 451");
                Err(Reply::new(451, "4.3.0", "Temporary policy failure; try again later"))
            }
            Err(_) => Err(Reply::new(421, "4.3.2", "Service shutting down; try again later")),
        }
    }

    async fn listener_domain(&mut self, domain: &str) -> Result<Option<ListenerDomain>, Reply> {
        if domain.is_empty() {
            return Ok(None);
        }
        if let Some(known) = self.listener_domains.get(domain) {
            return Ok(known.clone());
        }
        let (d, listener, meta) = (domain.to_string(), self.conn.local.to_string(), self.conn.meta());
        let answer = self
            .reception
            .policy
            .call(crate::policy::Lane::Reception, move |state| {
                state.get_listener_domain(&d, &listener, &meta)
            })
            .await;
        match answer {
            Ok(Ok(found)) => {
                if self.listener_domains.len() >= MAX_CACHED_DOMAINS {
                    self.listener_domains.clear();
                }
                self.listener_domains.insert(domain.to_string(), found.clone());
                Ok(found)
            }
            Ok(Err(e)) => {
                tracing::error!(domain, error = %e, "get_listener_domain failed; recipient refused with 451");
                Err(Reply::new(451, "4.3.0", "Temporary policy failure; try again later"))
            }
            Err(_) => Err(Reply::new(421, "4.3.2", "Service shutting down; try again later")),
        }
    }

    fn auth_offered(&self) -> bool {
        self.conn.tls.is_some()
            && self.conn.auth.is_none()
            && self.reception.policy.has_handler("smtp_server_auth_plain")
    }

    /// AUTH PLAIN / LOGIN (RFC 4954, 4616) under TLS, decided by the policy's
    /// `smtp_server_auth_plain`. Each failure waits a little longer before its 535 (up to 5 s),
    /// so guessing passwords is slow; the 10-error limit then ends the session.
    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<bool> {
        if self.conn.tls.is_none() {
            self.reply("538 5.7.11 Encryption required: use STARTTLS first");
            return Ok(self.protocol_error());
        }
        if !self.auth_offered() || !self.greeted || self.tx.sender.is_some() {
            self.reply("503 5.5.1 AUTH is not possible now");
            return Ok(self.protocol_error());
        }
        let credentials = match mechanism {
            "PLAIN" => {
                let Some(response) = self.auth_response(initial, "").await? else { return Ok(false) };
                plain_credentials(&response)
            }
            "LOGIN" => {
                let Some(user) = self.auth_response(initial, "VXNlcm5hbWU6").await? else { return Ok(false) };
                let Some(pass) = self.auth_response(None, "UGFzc3dvcmQ6").await? else { return Ok(false) };
                match (decode64(&user), decode64(&pass)) {
                    (Some(u), Some(p)) => Some((String::new(), u, p)),
                    _ => None,
                }
            }
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication type (PLAIN and LOGIN are offered)");
                return Ok(self.protocol_error());
            }
        };
        let Some((authz, authc, password)) = credentials else {
            self.reply("501 5.5.2 Cannot decode the AUTH response");
            return Ok(self.protocol_error());
        };
        let meta = self.conn.meta();
        let (z, c) = (authz.clone(), authc.clone());
        let verdict = self
            .reception
            .policy
            .call(crate::policy::Lane::Reception, move |state| {
                state.smtp_server_auth_plain(&z, &c, &password, &meta)
            })
            .await;
        match verdict {
            Ok(Ok(true)) => {
                self.conn.auth = Some(crate::smtp_server::reception::Authenticated { authc, authz });
                self.reply("235 2.7.0 Authentication successful");
                Ok(true)
            }
            other => {
                if let Ok(Err(e)) = &other {
                    tracing::error!(error = %e, "smtp_server_auth_plain failed; authentication refused");
                }
                self.auth_failures += 1;
                let delay = Duration::from_secs(u64::from(self.auth_failures.min(5)));
                tracing::info!(peer = %self.conn.peer, user = %authc, failures = self.auth_failures, "authentication failed");
                tokio::time::sleep(delay).await;
                self.reply("535 5.7.8 Authentication credentials invalid");
                Ok(self.protocol_error())
            }
        }
    }

    /// The client's base64 response: `initial` if it gave one (`=` is an empty one), else a `334`
    /// challenge and the next line. None: the client cancelled (`*`) or went away.
    async fn auth_response(
        &mut self,
        initial: Option<String>,
        challenge: &str,
    ) -> std::io::Result<Option<String>> {
        if let Some(i) = initial {
            return Ok(Some(if i == "=" { String::new() } else { i }));
        }
        self.reply(&format!("334 {challenge}"));
        self.flush().await?;
        let deadline = Instant::now() + self.settings.command_timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(i + 1);
                trace::publish(&self.conn, || {
                    ServerTracePayload::Read(smtp_trace::REDACTED_AUTH_LINE.into())
                });
                let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
                if text == "*" {
                    self.reply("501 5.7.0 Authentication cancelled");
                    return Ok(None);
                }
                return Ok(Some(text));
            }
            if self.buf.len() > 12 * 1024 {
                self.reply("500 5.5.6 Authentication exchange line is too long");
                return Ok(None);
            }
            match self.read_more(deadline).await? {
                Input::Data => {}
                _ => return Ok(None),
            }
        }
    }

    /// STARTTLS (RFC 3207): 220, then the handshake; the session starts over (no greeting, no
    /// transaction), and whatever the client pipelined after the command is thrown away, so
    /// nothing sent in plaintext can be taken as said under TLS (command injection).
    async fn start_tls(&mut self) -> std::io::Result<bool> {
        if self.conn.tls.is_some() {
            self.reply("503 5.5.1 TLS is already active");
            return Ok(self.protocol_error());
        }
        if self.settings.tls.is_none() {
            self.reply("502 5.5.1 STARTTLS is not available");
            return Ok(true);
        }
        self.reply("220 2.0.0 Ready to start TLS");
        self.flush().await?;
        self.buf.clear();
        let upgraded = self.handshake().await?;
        if upgraded {
            self.greeted = false;
            self.conn.ehlo.clear();
            self.conn.auth = None;
            self.tx = Transaction::default();
        }
        Ok(upgraded)
    }

    /// The TLS handshake on the plain stream (after STARTTLS's 220, or first thing on an
    /// implicit-TLS listener); false: it failed and the session is over.
    async fn handshake(&mut self) -> std::io::Result<bool> {
        let Some(config) = self.settings.tls.clone() else { return Ok(false) };
        let SessionStream::Plain(plain) = std::mem::replace(&mut self.stream, SessionStream::Upgrading)
        else {
            return Ok(false);
        };
        let accept = tokio_rustls::TlsAcceptor::from(config).accept(plain);
        match tokio::time::timeout(self.settings.command_timeout, accept).await {
            Ok(Ok(tls)) => {
                self.conn.tls = Some(TlsInfo::of(tls.get_ref().1));
                trace::diagnostic(&self.conn, "INFO", || "TLS handshake complete".into());
                self.stream = SessionStream::Tls(Box::new(tls));
                Ok(true)
            }
            Ok(Err(e)) => {
                trace::diagnostic(&self.conn, "ERROR", || format!("TLS handshake failed: {e}"));
                tracing::info!(peer = %self.conn.peer, error = %e, "TLS handshake failed; disconnected");
                Ok(false)
            }
            Err(_) => {
                tracing::info!(peer = %self.conn.peer, "TLS handshake not done within smtp.command_timeout; disconnected");
                Ok(false)
            }
        }
    }

    /// `[smtp] invalid_line_endings` (SMTP smuggling): refuse, repair or keep a message holding a
    /// bare LF or bare CR, before any policy event sees it.
    fn line_endings(&self, body: Vec<u8>) -> Result<Vec<u8>, Reply> {
        match self.settings.invalid_line_endings {
            InvalidLineEndings::Allow => Ok(body),
            InvalidLineEndings::Fix => Ok(match line_endings::to_crlf(&body) {
                std::borrow::Cow::Borrowed(_) => body,
                std::borrow::Cow::Owned(fixed) => fixed,
            }),
            InvalidLineEndings::Deny => match line_endings::find_bare(&body) {
                None => Ok(body),
                Some((bare, at)) => Err(Reply::new(
                    552,
                    "5.6.0",
                    format!(
                        "Message refused: {} at octet {at} of the message data; every line must end with CRLF",
                        bare.name()
                    ),
                )),
            },
        }
    }

    async fn data(&mut self) -> std::io::Result<bool> {
        if self.tx.sender.is_none() {
            self.reply("503 5.5.1 Need MAIL FROM first");
            return Ok(self.protocol_error());
        }
        if self.tx.recipients.is_empty() {
            self.reply("503 5.5.1 No valid recipients");
            return Ok(self.protocol_error());
        }
        self.reply("354 Start mail input; end with <CRLF>.<CRLF>");
        self.flush().await?;
        let mut reader = DataReader::new(self.settings.max_message_size);
        let deadline = Instant::now() + self.settings.data_timeout;
        // Message content is never traced, only its size.
        let mut content_len = 0;
        let outcome = loop {
            let (used, done) = reader.feed(&self.buf);
            self.buf.advance(used);
            content_len += used;
            if let Some(outcome) = done {
                trace::publish(&self.conn, || ServerTracePayload::AbbreviatedRead {
                    snippet: smtp_trace::CONTENT_PLACEHOLDER.into(),
                    len: content_len,
                });
                break outcome;
            }
            match self.read_more(deadline).await? {
                Input::Data => {}
                // Mid-DATA disconnect or timeout: the partial message is simply dropped.
                Input::Closed => return Ok(false),
                Input::Deadline => {
                    tracing::info!(peer = %self.conn.peer, "DATA not complete within smtp.data_timeout; disconnected");
                    self.reply("421 4.4.2 DATA timeout (smtp.data_timeout); message not accepted");
                    return Ok(false);
                }
                Input::TimedOut | Input::ShuttingDown => {
                    self.reply("421 4.4.2 Timeout or shutdown during DATA; message not accepted");
                    return Ok(false);
                }
            }
        };
        let tx = std::mem::take(&mut self.tx);
        let sender = tx.sender.unwrap_or_default();
        let reply = match outcome {
            DataOutcome::TooBig => {
                Reply::new(552, "5.3.4", "Message size exceeds fixed maximum message size")
            }
            DataOutcome::LineTooLong => Reply::new(
                500,
                "5.5.2",
                format!("Message refused: a line exceeds {MAX_TEXT_LINE} octets (RFC 5321)"),
            ),
            DataOutcome::Complete(body) => match self.line_endings(body) {
                Ok(body) => {
                    let recipients = tx.recipients.clone();
                    self.reception
                        .receive(&self.conn, sender.clone(), recipients, body, &tx.dispositions)
                        .await
                }
                Err(reply) => reply,
            },
        };
        if reply.code >= 400 {
            let recipient = tx.recipients.first().cloned().unwrap_or_default();
            self.reception.log_rejection(&self.conn, &sender, &recipient, &reply, "DATA");
        }
        self.reply(&reply.line());
        Ok(true)
    }
}

/// The domain of an envelope address, lowercase (empty for the null sender).
fn domain_of(address: &str) -> String {
    address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default()
}

fn decode64(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// RFC 4616: `authzid NUL authcid NUL passwd`, base64.
fn plain_credentials(response: &str) -> Option<(String, String, String)> {
    let decoded = decode64(response)?;
    let mut parts = decoded.splitn(3, '\0');
    Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    #[test]
    fn plain_responses_decode_into_three_parts() {
        // "\0user\0secret" and "admin\0user\0pa ss"
        assert_eq!(
            plain_credentials("AHVzZXIAc2VjcmV0"),
            Some((String::new(), "user".into(), "secret".into()))
        );
        assert_eq!(
            plain_credentials("YWRtaW4AdXNlcgBwYSBzcw=="),
            Some(("admin".into(), "user".into(), "pa ss".into()))
        );
        assert_eq!(plain_credentials("dXNlcg=="), None, "no NULs");
        assert_eq!(plain_credentials("!!!"), None, "not base64");
    }
}
