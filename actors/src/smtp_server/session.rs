//! One SMTP connection: reads commands, answers them, hands complete messages to [`Reception`].
//! Responses to pipelined commands are batched and flushed whenever the input runs dry, before
//! the 354 of DATA, and before closing (RFC 2920).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferry_config::{Cidr, cidr::any_contains};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::command::{self, Command};
use super::data::{DataOutcome, DataReader, MAX_TEXT_LINE};
use super::line::{Line, LineReader};
use super::reception::{Connection, Reception, Reply};

/// Listener settings every session reads.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub idle_timeout: Duration,
    pub relay_hosts: Vec<Cidr>,
}

/// Protocol errors tolerated before the session is closed with 421.
const MAX_ERRORS: u32 = 10;

#[derive(Default)]
struct Transaction {
    sender: Option<String>,
    recipients: Vec<String>,
}

enum Input {
    Data,
    Closed,
    TimedOut,
    ShuttingDown,
}

pub struct Session<S> {
    stream: S,
    buf: BytesMut,
    out: Vec<u8>,
    settings: Arc<SessionSettings>,
    reception: Arc<Reception>,
    conn: Connection,
    shutdown: watch::Receiver<bool>,
    greeted: bool,
    tx: Transaction,
    errors: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        stream: S,
        conn: Connection,
        settings: Arc<SessionSettings>,
        reception: Arc<Reception>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            out: Vec::with_capacity(1024),
            settings,
            reception,
            conn,
            shutdown,
            greeted: false,
            tx: Transaction::default(),
            errors: 0,
        }
    }

    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        if !line.ends_with("\r\n") {
            self.out.extend_from_slice(b"\r\n");
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    async fn read_more(&mut self) -> std::io::Result<Input> {
        if *self.shutdown.borrow() {
            return Ok(Input::ShuttingDown);
        }
        let timeout = self.settings.idle_timeout;
        tokio::select! {
            read = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf)) => match read {
                Err(_) => Ok(Input::TimedOut),
                Ok(Ok(0)) => Ok(Input::Closed),
                Ok(Ok(_)) => Ok(Input::Data),
                Ok(Err(e)) => Err(e),
            },
            _ = self.shutdown.changed() => Ok(Input::ShuttingDown),
        }
    }

    /// Run the session to its end. I/O errors just end it: nothing half-received is kept.
    pub async fn run(mut self) -> std::io::Result<()> {
        let hostname = self.settings.hostname.clone();
        self.reply(&format!("220 {hostname} ESMTP Ferry"));
        self.flush().await?;
        let mut lines = LineReader::default();
        loop {
            while let Some(line) = lines.next(&mut self.buf) {
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
            match self.read_more().await? {
                Input::Data => {}
                Input::Closed => return Ok(()),
                Input::TimedOut => {
                    self.reply(&format!("421 4.4.2 {hostname} Idle timeout, closing connection"));
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
                self.conn.ehlo = domain.clone();
                self.greeted = true;
                self.tx = Transaction::default();
                let max = self.settings.max_message_size;
                self.reply(&format!(
                    "250-{hostname} Hello {domain}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE {max}\r\n250 ENHANCEDSTATUSCODES"
                ));
            }
            Command::Helo(domain) => {
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
                if size.is_some_and(|s| s > self.settings.max_message_size as u64) {
                    let reply = Reply::new(552, "5.3.4", "Message size exceeds fixed maximum message size");
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
                let refusal = if !any_contains(&self.settings.relay_hosts, self.conn.peer.ip()) {
                    Some(Reply::new(550, "5.7.1", format!("Relaying denied for <{address}>")))
                } else if self.tx.recipients.len() >= self.settings.max_recipients {
                    Some(Reply::new(452, "4.5.3", "Too many recipients"))
                } else {
                    None
                };
                match refusal {
                    Some(reply) => {
                        self.reception.log_rejection(&self.conn, &sender, &address, &reply, "RCPT TO");
                        self.reply(&reply.line());
                    }
                    None => {
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
            Command::StartTls => self.reply("502 5.5.1 STARTTLS is not available"),
            Command::Quit => {
                self.reply(&format!("221 2.0.0 {hostname} Bye"));
                return Ok(false);
            }
        }
        Ok(true)
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
        let outcome = loop {
            let (used, done) = reader.feed(&self.buf);
            self.buf.advance(used);
            if let Some(outcome) = done {
                break outcome;
            }
            match self.read_more().await? {
                Input::Data => {}
                // Mid-DATA disconnect or timeout: the partial message is simply dropped.
                Input::Closed => return Ok(false),
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
            DataOutcome::Complete(body) => {
                self.reception.receive(&self.conn, sender.clone(), tx.recipients.clone(), body).await
            }
        };
        if reply.code >= 400 {
            let recipient = tx.recipients.first().cloned().unwrap_or_default();
            self.reception.log_rejection(&self.conn, &sender, &recipient, &reply, "DATA");
        }
        self.reply(&reply.line());
        Ok(true)
    }
}
