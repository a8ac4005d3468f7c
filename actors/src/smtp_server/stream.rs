//! The byte stream under a session: plain TCP until STARTTLS, TLS after it (RFC 3207).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum SessionStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between giving up the plain stream and the end of the handshake.
    Upgrading,
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake in progress")
}

impl AsyncRead for SessionStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SessionStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            SessionStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            SessionStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for SessionStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SessionStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            SessionStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            SessionStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SessionStream::Plain(s) => Pin::new(s).poll_flush(cx),
            SessionStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            SessionStream::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SessionStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            SessionStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            SessionStream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}
