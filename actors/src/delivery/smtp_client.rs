//! One outbound SMTP connection and the per-recipient classification of SPEC §7.1.
//!
//! Built on lettre's low-level `AsyncSmtpConnection`, driven command by command: the high-level transport
//! aborts on the first refused RCPT, while SPEC §7.1 needs every recipient's own response. Server replies,
//! positive or negative, come back as `Response`s (they are logged and classified); only transport trouble
//! (connect failure, timeout, I/O, protocol garbage) is a `ClientError`, logged upstream as
//! `"KumoMTA internal: error in deliver_message: <err>"` (SPEC §3.1).

use std::fmt::Display;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response as SmtpReply;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::mx::Target;
use crate::model::record::{EnhancedCode, Response};

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub ehlo_name: String,
    pub connect_timeout: Duration,
    /// Per command; the greeting and EHLO share one such budget.
    pub command_timeout: Duration,
    /// Sending the message body and waiting for the final reply.
    pub data_timeout: Duration,
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
}

/// An open, greeted SMTP connection.
pub struct SmtpClient {
    conn: AsyncSmtpConnection,
    target: Target,
    settings: ClientSettings,
    reusable: bool,
}

/// Why one open attempt failed; a refused EHLO is kept apart because it triggers the HELO retry.
enum OpenError {
    Client(ClientError),
    HelloRefused(Response),
}

impl SmtpClient {
    /// TCP connect (connect_timeout), then greeting and EHLO (one command_timeout). A server that refuses
    /// EHLO with 5xx gets a second connection that greets with HELO (RFC 5321 §3.2).
    pub async fn connect(target: &Target, settings: &ClientSettings) -> Result<SmtpClient, ClientError> {
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
        let tcp = match timeout(settings.connect_timeout, TcpStream::connect(target.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return fail(ClientError::Connect(format!("{peer}: {e}"))),
            Err(_) => {
                let limit = settings.connect_timeout;
                return fail(ClientError::Connect(format!("{peer}: no TCP connection within {limit:?}")));
            }
        };
        // SMTP is request/response: without this, the final "." of DATA waits for a delayed ACK
        // (Nagle), costing ~40 ms per message.
        let _ = tcp.set_nodelay(true);
        let sent_any = Arc::new(AtomicBool::new(false));
        let stream = Box::new(Stream { tcp, helo, head_written: 0, sent_any: sent_any.clone() });
        let client_id = match settings.ehlo_name.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
            Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
            Err(_) => ClientId::Domain(settings.ehlo_name.clone()),
        };
        let hello = AsyncSmtpConnection::connect_with_transport(stream, &client_id);
        let opened = timeout(settings.command_timeout, hello).await;
        // Nothing written yet means lettre was still waiting for the greeting.
        let stage = match (sent_any.load(Ordering::Relaxed), helo) {
            (false, _) => "greeting",
            (true, false) => "EHLO",
            (true, true) => "HELO",
        };
        let err = match opened {
            Ok(Ok(conn)) => {
                let (target, settings) = (target.clone(), settings.clone());
                return Ok(SmtpClient { conn, target, settings, reusable: true });
            }
            Ok(Err(e)) => e,
            Err(_) => return fail(ClientError::Timeout(format!("{stage} with {peer}"))),
        };
        match server_reply(&err, stage) {
            Some(r) if stage != "greeting" => Err(OpenError::HelloRefused(r)),
            Some(r) if r.code == 421 => {
                fail(ClientError::Closed(format!("{peer} greeted {}", r.to_single_line())))
            }
            Some(r) => fail(ClientError::Connect(format!("{peer} greeted {}", r.to_single_line()))),
            None => fail(transport_error(&err, &format!("{stage} with {peer}"))),
        }
    }

    /// One transaction (SPEC §7.1): MAIL FROM, every RCPT (a refusal does not stop the others), then DATA
    /// if any RCPT was accepted, else RSET. Returns one Response per recipient, in order: its RCPT reply if
    /// refused, else the DATA or final "." reply; a refused MAIL FROM answers for everyone.
    /// `body` is the raw message ending in CRLF; lettre dot-stuffs it and appends CRLF.CRLF itself.
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
        let from = match sender {
            "" => None,
            _ => match sender.parse::<Address>() {
                Ok(a) => Some(a),
                Err(e) => return Ok(vec![bad_address("MAIL FROM", sender, "5.1.7", e); n]),
            },
        };
        let mut params = Vec::new();
        let info = self.conn.server_info();
        // Without the extension we still send and let the server decide rather than fail locally.
        if !body.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let utf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if utf8 && info.supports_feature(Extension::SmtpUtfEight) {
            params.push(MailParameter::SmtpUtfEight);
        }
        let limit = self.settings.command_timeout;
        let mail = self.command(Mail::new(from, params), limit).await?;
        if mail.code >= 400 {
            self.reset().await;
            return Ok(vec![mail; n]);
        }

        // None = accepted (or not yet tried); filled with the DATA / "." reply at the end.
        let mut results: Vec<Option<Response>> = vec![None; n];
        let mut accepted = 0;
        for (i, rcpt) in recipients.iter().enumerate() {
            let addr = match rcpt.parse::<Address>() {
                Ok(a) => a,
                Err(e) => {
                    results[i] = Some(bad_address("RCPT TO", rcpt, "5.1.3", e));
                    continue;
                }
            };
            let reply = self.command(Rcpt::new(addr, Vec::new()), limit).await?;
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

        let data = self.command(Data, limit).await?;
        if data.code >= 400 {
            self.reset().await;
            return Ok(fill(results, &data));
        }
        let body = body.strip_suffix(b"\r\n").unwrap_or(body);
        let sent = timeout(self.settings.data_timeout, self.conn.message(body)).await;
        let done = self.reply(sent, ".", "end of message data")?;
        Ok(fill(results, &done))
    }

    /// A connection can carry the next message unless it errored, timed out or got a 421.
    pub fn is_reusable(&self) -> bool {
        self.reusable && !self.conn.has_broken()
    }

    pub async fn quit(mut self) {
        if self.is_reusable() {
            let _ = timeout(self.settings.command_timeout, self.conn.quit()).await;
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Send one command and turn whatever the server says into a Response (command = the line sent).
    async fn command<C: Display>(&mut self, cmd: C, limit: Duration) -> Result<Response, ClientError> {
        let line = cmd.to_string().trim_end().to_string();
        let result = timeout(limit, self.conn.command(cmd)).await;
        self.reply(result, &line, &line)
    }

    /// lettre reports negative replies as errors; turn them back into the server's Response.
    fn reply(
        &mut self,
        result: Result<Result<SmtpReply, SmtpError>, tokio::time::error::Elapsed>,
        command: &str,
        what: &str,
    ) -> Result<Response, ClientError> {
        let reply = match result {
            Err(_) => Err(ClientError::Timeout(what.to_string())),
            Ok(Ok(r)) => Ok(make_response(r.code().into(), &reply_text(&r), command)),
            Ok(Err(e)) => server_reply(&e, command).ok_or_else(|| transport_error(&e, what)),
        };
        // After a timeout the stream may still deliver the late reply: never reuse it.
        self.reusable &= reply.as_ref().is_ok_and(|r| r.code != 421);
        reply
    }

    /// Abandon a transaction; a connection that cannot even RSET is not reused.
    async fn reset(&mut self) {
        if !self.reusable {
            return;
        }
        let ok = self.command(Rset, self.settings.command_timeout).await.is_ok_and(|r| r.code < 400);
        self.reusable &= ok;
    }
}

/// Every recipient without its own refusal gets `reply`.
fn fill(results: Vec<Option<Response>>, reply: &Response) -> Vec<Response> {
    results.into_iter().map(|r| r.unwrap_or_else(|| reply.clone())).collect()
}

/// An address lettre's `Address` refuses (no `@`, `a..b@x`, …) cannot be put on the wire safely; that
/// recipient gets a permanent 501 of our own instead of the whole transaction failing.
fn bad_address(verb: &str, addr: &str, enhanced: &str, e: impl Display) -> Response {
    let mut r =
        Response::new(501, Some(enhanced), format!("Ferry cannot send address <{addr}> over SMTP: {e}"));
    r.command = Some(format!("{verb}:<{addr}>"));
    r
}

/// Reply lines joined by spaces, dropping an enhanced code repeated on continuation lines (as lettre does
/// for negative replies, so both paths read the same).
fn reply_text(r: &SmtpReply) -> String {
    let mut lines = r.message();
    let first = lines.next().unwrap_or("");
    let code = first.split(' ').next().filter(|w| EnhancedCode::parse(w).is_some());
    let mut text = first.to_string();
    for line in lines {
        let rest = code.and_then(|c| line.strip_prefix(c)).and_then(|l| l.strip_prefix(' '));
        text.push(' ');
        text.push_str(rest.unwrap_or(line));
    }
    text
}

/// `"5.1.1 no such user"` → enhanced code + content (content excludes both codes).
fn make_response(code: u16, text: &str, command: &str) -> Response {
    let text = text.trim();
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut r = match EnhancedCode::parse(first) {
        Some(_) => Response::new(code, Some(first), rest.trim_start()),
        None => Response::new(code, None, text),
    };
    r.command = Some(command.to_string());
    r
}

/// The server's reply hidden in a lettre error (4xx/5xx), if this error is one.
fn server_reply(e: &SmtpError, command: &str) -> Option<Response> {
    let code = e.status()?;
    let text = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
    Some(make_response(code.into(), &text, command))
}

/// Anything that is not a server reply: lettre wraps I/O errors, and says "incomplete response" at EOF.
fn transport_error(e: &SmtpError, what: &str) -> ClientError {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>());
    match io.map(io::Error::kind) {
        Some(io::ErrorKind::TimedOut) => ClientError::Timeout(what.to_string()),
        Some(BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof) => {
            ClientError::Closed(format!("{e} during {what}"))
        }
        Some(_) => ClientError::Io(format!("{e} during {what}")),
        None if e.to_string().contains("incomplete response") => {
            ClientError::Closed(format!("the server closed the connection during {what}"))
        }
        None => ClientError::Protocol(format!("{e} during {what}")),
    }
}

/// The TCP stream handed to lettre. lettre always greets with EHLO; for the HELO retry this rewrites the
/// first bytes the client sends from "EHLO" to "HELO" (same length, so nothing else shifts). It also
/// records whether anything was sent, which tells a greeting timeout from an EHLO one.
#[derive(Debug)]
struct Stream {
    tcp: TcpStream,
    helo: bool,
    head_written: usize,
    sent_any: Arc<AtomicBool>,
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.sent_any.store(true, Ordering::Relaxed);
        if !this.helo || this.head_written >= 4 {
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        }
        let at = this.head_written;
        let mut head = [0u8; 4];
        let len = buf.len().min(4 - at);
        for (i, (out, b)) in head.iter_mut().zip(buf).take(len).enumerate() {
            *out = if *b == b"EHLO"[at + i] { b"HELO"[at + i] } else { *b };
        }
        let polled = Pin::new(&mut this.tcp).poll_write(cx, &head[..len]);
        if let Poll::Ready(Ok(n)) = polled {
            this.head_written += n;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Stream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }
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
    use std::sync::Mutex;
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
            let addr = cmd.split_once('<').and_then(|(_, a)| a.split_once('>')).map_or("", |(a, _)| a);
            let rule = script.rules.iter().find(|(a, _)| *a == addr).map(|(_, r)| r.to_string());
            reply = match cmd.get(..4).unwrap_or("") {
                "EHLO" => script.ehlo.to_string(),
                "MAIL" | "RCPT" => rule.unwrap_or_else(|| "250 2.1.0 ok".into()),
                "DATA" => {
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
                "HELO" | "RSET" => "250 ok".into(),
                _ => "500 5.5.2 what?".into(),
            };
        }
        tokio::time::sleep(Duration::from_secs(30)).await; // hold the connection open, silent
    }

    fn settings(ms: u64) -> ClientSettings {
        let t = Duration::from_millis(ms);
        ClientSettings {
            ehlo_name: "ferry.test".into(),
            connect_timeout: t,
            command_timeout: t,
            data_timeout: t,
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
