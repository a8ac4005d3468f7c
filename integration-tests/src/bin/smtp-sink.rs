//! `smtp-sink --dir DIR [--listen 127.0.0.1:0] [--hostname sink.test]`: an ESMTP server that Ferry
//! delivers to in black-box tests. Everything it sees is written under DIR:
//!
//! - `sink.json`: `{"smtp":"127.0.0.1:PORT"}`, written once the listener is accepting;
//! - `messages/NNNNNNNN.json`: one file per accepted message (seq, mail_from, rcpt_to, data, helo, peer);
//! - `rejections.jsonl`: one line per 4xx/5xx sent for MAIL, RCPT or DATA;
//! - `connections`: the number of connections accepted so far; `open`: open now; `max_open`: the
//!   most that were open at once.
//!
//! Whole files are written to a temporary name in DIR and renamed, so readers never see partial ones.
//! Each file is written before the client gets the reply it matches, so once a client has read a
//! reply, the files already show it. The local part of an address picks the answer: see [`verdict`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

/// Longest incomplete line kept in the buffer; a client exceeding it is answered and disconnected.
const MAX_LINE: usize = 1 << 20;
/// Advertised in EHLO; not enforced.
const SIZE: usize = 64 << 20;
const USAGE: &str = "usage: smtp-sink --dir DIR [--listen 127.0.0.1:0] [--hostname sink.test] [--count-only]";

struct Args {
    dir: PathBuf,
    listen: String,
    hostname: String,
    /// Benchmarks: count messages in `DIR/count` instead of storing each one.
    count_only: bool,
}

fn parse_args() -> Result<Args> {
    let (mut dir, mut listen, mut hostname) = (None, "127.0.0.1:0".to_string(), "sink.test".to_string());
    let mut count_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--count-only" {
            count_only = true;
            continue;
        }
        let value = args.next().with_context(|| format!("{flag} needs a value; {USAGE}"))?;
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--listen" => listen = value,
            "--hostname" => hostname = value,
            _ => bail!("unknown argument {flag:?}; {USAGE}"),
        }
    }
    Ok(Args {
        dir: dir.with_context(|| format!("--dir is required; {USAGE}"))?,
        listen,
        hostname,
        count_only,
    })
}

/// State shared by all connections.
struct Sink {
    dir: PathBuf,
    count_only: bool,
    hostname: String,
    seq: AtomicU64,
    tmp: AtomicU64,
    /// (accepted in all, open now, most open at once)
    connections: Mutex<(u64, u64, u64)>,
    rejections: Mutex<File>,
}

impl Sink {
    /// Write `bytes` to a fresh temporary file in the sink's directory, then rename it to `dest`.
    async fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!(".tmp-{}", self.tmp.fetch_add(1, Ordering::Relaxed)));
        tokio::fs::write(&tmp, bytes).await.with_context(|| format!("write {}", tmp.display()))?;
        tokio::fs::rename(&tmp, dest).await.with_context(|| format!("rename to {}", dest.display()))
    }

    /// Count a new connection: `connections` (total), `open` and `max_open` (most at once).
    async fn count_connection(&self) -> Result<()> {
        let mut n = self.connections.lock().await;
        n.0 += 1;
        n.1 += 1;
        n.2 = n.2.max(n.1);
        self.write_atomic(&self.dir.join("connections"), n.0.to_string().as_bytes()).await?;
        self.write_atomic(&self.dir.join("max_open"), n.2.to_string().as_bytes()).await?;
        self.write_atomic(&self.dir.join("open"), n.1.to_string().as_bytes()).await
    }

    async fn connection_closed(&self) {
        let mut n = self.connections.lock().await;
        n.1 = n.1.saturating_sub(1);
        let _ = self.write_atomic(&self.dir.join("open"), n.1.to_string().as_bytes()).await;
    }

    async fn log_rejection(&self, command: &str, address: &str, code: u16, text: &str) -> Result<()> {
        let mut line =
            json!({"command": command, "address": address, "code": code, "text": text}).to_string();
        line.push('\n');
        let mut file = self.rejections.lock().await;
        file.write_all(line.as_bytes()).await?;
        file.flush().await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    tokio::fs::create_dir_all(args.dir.join("messages")).await.context("create DIR/messages")?;
    let rejections = OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.dir.join("rejections.jsonl"))
        .await
        .context("open DIR/rejections.jsonl")?;
    let listener = TcpListener::bind(&args.listen).await.with_context(|| format!("bind {}", args.listen))?;
    let addr = listener.local_addr()?;
    let sink = Arc::new(Sink {
        dir: args.dir,
        count_only: args.count_only,
        hostname: args.hostname,
        seq: AtomicU64::new(0),
        tmp: AtomicU64::new(0),
        connections: Mutex::new((0, 0, 0)),
        rejections: Mutex::new(rejections),
    });
    sink.write_atomic(&sink.dir.join("connections"), b"0").await?;
    if sink.count_only {
        let counter = Arc::clone(&sink);
        tokio::spawn(async move {
            loop {
                let n = counter.seq.load(Ordering::SeqCst).to_string();
                let _ = counter.write_atomic(&counter.dir.join("count"), n.as_bytes()).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
    }
    let ready = json!({"smtp": addr.to_string()}).to_string();
    sink.write_atomic(&sink.dir.join("sink.json"), ready.as_bytes()).await?;
    eprintln!("smtp-sink: listening on {addr}");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    if let Err(e) = serve(&sink, stream, peer).await {
                        eprintln!("smtp-sink: connection from {peer}: {e:#}");
                    }
                    sink.connection_closed().await;
                });
            }
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                eprintln!("smtp-sink: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the connection loop does after a command.
enum Next {
    Continue,
    /// 354 was queued: flush, then read message lines.
    Data,
    /// Flush and close (QUIT, 421).
    Close,
}

/// One SMTP session: the transaction so far and the replies not yet sent.
struct Session<'a> {
    sink: &'a Sink,
    peer: SocketAddr,
    helo: String,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    out: Vec<u8>,
}

async fn serve(sink: &Sink, mut stream: TcpStream, peer: SocketAddr) -> Result<()> {
    sink.count_connection().await?;
    let mut s =
        Session { sink, peer, helo: String::new(), mail_from: None, rcpt_to: Vec::new(), out: Vec::new() };
    s.reply(220, &format!("{} test sink", sink.hostname));
    let mut buf: Vec<u8> = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Answer every complete line in the buffer before sending anything (pipelining).
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let next = match body.as_mut() {
                Some(data) if line != b".\r\n" && line != b".\n" => {
                    data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                    Next::Continue
                }
                Some(_) => {
                    s.finish_data(body.take().unwrap_or_default()).await;
                    Next::Continue
                }
                None => s.command(&line).await,
            };
            match next {
                Next::Continue => {}
                Next::Data => {
                    body = Some(Vec::new());
                    s.flush(&mut stream).await?;
                }
                Next::Close => {
                    s.flush(&mut stream).await?;
                    return linger_close(stream).await;
                }
            }
        }
        if buf.len() > MAX_LINE {
            s.reply(500, "5.5.2 line too long");
            s.flush(&mut stream).await?;
            return linger_close(stream).await;
        }
        s.flush(&mut stream).await?;
        let n = stream.read(&mut chunk).await.context("read")?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Close after the last reply without resetting: send FIN, then read and discard what the client
/// still sends (for up to 2 s). Closing with unread input would send an RST, which can make the
/// client lose the reply (e.g. a 421 answering pipelined commands).
async fn linger_close(mut stream: TcpStream) -> Result<()> {
    stream.shutdown().await.context("shutdown")?;
    let mut scratch = [0u8; 16 * 1024];
    let drain = async {
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    Ok(())
}

/// The answer an address gets, from its local part (before the last '@', case-insensitive):
/// `None` accepts it, else the code, the text after the code, and whether to close the connection.
/// (`slow` is accepted, 1.5 s late: see the RCPT handling.)
fn verdict(address: &str) -> Option<(u16, String, bool)> {
    let local = address.rsplit_once('@').map_or(address, |(local, _)| local).to_ascii_lowercase();
    match local.as_str() {
        "tempfail" => return Some((400, "4.0.0 tempfail requested".into(), false)),
        "permfail" => return Some((500, "5.0.0 permfail requested".into(), false)),
        "full" => return Some((452, "4.2.2 mailbox full".into(), false)),
        "unknown" => {
            return Some((550, "5.1.1 <unknown>: Recipient address rejected: User unknown".into(), false));
        }
        _ => {}
    }
    [(450, "4.0.0"), (421, "4.0.0"), (550, "5.0.0")]
        .into_iter()
        .find(|(code, _)| local.starts_with(&format!("{code}-")))
        .map(|(code, enhanced)| (code, format!("{enhanced} {code} requested"), code == 421))
}

/// The address in `FROM:<a@b> PARAMS` / `TO:<a@b>` (prefix matched case-insensitively); a bare
/// address without brackets is accepted too. Parameters are ignored.
fn parse_path(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    match rest.strip_prefix('<') {
        Some(inner) => inner.find('>').map(|end| inner[..end].to_string()),
        None => rest.split_whitespace().next().map(str::to_string),
    }
}

impl Session<'_> {
    fn reply(&mut self, code: u16, text: &str) {
        self.out.extend_from_slice(format!("{code} {text}\r\n").as_bytes());
    }

    async fn flush(&mut self, stream: &mut TcpStream) -> Result<()> {
        if !self.out.is_empty() {
            stream.write_all(&self.out).await.context("write")?;
            self.out.clear();
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    /// Queue a 4xx/5xx reply and record it in rejections.jsonl.
    async fn refuse(&mut self, command: &str, address: &str, code: u16, text: &str) {
        self.reply(code, text);
        if let Err(e) = self.sink.log_rejection(command, address, code, text).await {
            eprintln!("smtp-sink: rejections.jsonl: {e:#}");
        }
    }

    async fn command(&mut self, raw: &[u8]) -> Next {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = line.split_once(' ').map_or((line, ""), |(v, a)| (v, a.trim()));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if arg.is_empty() => self.reply(501, "5.5.4 domain required"),
            verb @ ("EHLO" | "HELO") => {
                self.reset();
                self.helo = arg.to_string();
                let host = &self.sink.hostname;
                let text = match verb {
                    "EHLO" => format!(
                        "250-{host}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE {SIZE}\r\n250 ENHANCEDSTATUSCODES\r\n"
                    ),
                    _ => format!("250 {host}\r\n"),
                };
                self.out.extend_from_slice(text.as_bytes());
            }
            "MAIL" => return self.address_command("MAIL", arg).await,
            "RCPT" => return self.address_command("RCPT", arg).await,
            "DATA" => return self.data().await,
            "RSET" => {
                self.reset();
                self.reply(250, "2.0.0 OK");
            }
            "NOOP" => self.reply(250, "2.0.0 OK"),
            "QUIT" => {
                self.reply(221, "2.0.0 bye");
                return Next::Close;
            }
            _ => self.reply(500, "5.5.1 unrecognized"),
        }
        Next::Continue
    }

    /// MAIL FROM / RCPT TO: check the order, then answer by the address's local part.
    async fn address_command(&mut self, command: &str, arg: &str) -> Next {
        let (prefix, ok) = if command == "MAIL" { ("FROM:", "2.1.0 OK") } else { ("TO:", "2.1.5 OK") };
        let Some(address) = parse_path(arg, prefix) else {
            self.refuse(command, arg, 501, &format!("5.5.4 syntax: {command} {prefix}<address>")).await;
            return Next::Continue;
        };
        let out_of_order = match command {
            "MAIL" if self.mail_from.is_some() => Some("5.5.1 nested MAIL"),
            "RCPT" if self.mail_from.is_none() => Some("5.5.1 need MAIL"),
            _ => None,
        };
        if let Some(text) = out_of_order {
            self.refuse(command, &address, 503, text).await;
            return Next::Continue;
        }
        match verdict(&address) {
            Some((code, text, close)) => {
                self.refuse(command, &address, code, &text).await;
                if close {
                    return Next::Close;
                }
            }
            None if command == "MAIL" => {
                self.mail_from = Some(address);
                self.reply(250, ok);
            }
            None => {
                // `slow@...`: a destination that takes 1.5 s to accept a recipient (a stalled
                // delivery, for tests of what waits behind it).
                if address.rsplit_once('@').is_some_and(|(local, _)| local.eq_ignore_ascii_case("slow")) {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                self.rcpt_to.push(address);
                self.reply(250, ok);
            }
        }
        Next::Continue
    }

    async fn data(&mut self) -> Next {
        if self.mail_from.is_none() || self.rcpt_to.is_empty() {
            let from = self.mail_from.clone().unwrap_or_default();
            self.refuse("DATA", &from, 503, "5.5.1 no valid recipients").await;
            return Next::Continue;
        }
        self.reply(354, "end data with <CR><LF>.<CR><LF>");
        Next::Data
    }

    /// Store the message (before replying, so a client that saw 250 finds the file) and end the
    /// transaction.
    async fn finish_data(&mut self, data: Vec<u8>) {
        let seq = self.sink.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.mail_from.take().unwrap_or_default();
        if self.sink.count_only {
            self.rcpt_to.clear();
            return self.reply(250, &format!("2.0.0 OK id={seq}"));
        }
        let doc = json!({
            "seq": seq,
            "mail_from": from,
            "rcpt_to": std::mem::take(&mut self.rcpt_to),
            "data": String::from_utf8_lossy(&data),
            "helo": self.helo,
            "peer": self.peer.to_string(),
        });
        let path = self.sink.dir.join("messages").join(format!("{seq:08}.json"));
        match self.sink.write_atomic(&path, doc.to_string().as_bytes()).await {
            Ok(()) => self.reply(250, &format!("2.0.0 OK id={seq}")),
            Err(e) => {
                eprintln!("smtp-sink: storing message {seq}: {e:#}");
                self.refuse("DATA", &from, 451, "4.3.0 could not store message").await;
            }
        }
    }
}
