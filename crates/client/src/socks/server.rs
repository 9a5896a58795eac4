//! The SOCKS listener (SOCKS5 and SOCKS4a on one port): accepts
//! connections, runs [`SocksHandshake`] on each (with a deadline), carries
//! the request out (refused, answered, or through a [`Connector`]) and
//! relays bytes both ways. Concurrent connections are bounded; past the
//! bound new ones wait in the kernel's accept queue.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::listener::{HANDSHAKE_TIMEOUT, MAX_CONNECTIONS};
use crate::listener::{Listener, Outcome, carry_out, relay};

use super::proto::{SocksHandshake, SocksRequest, SocksTarget, SocksVersion};
use super::reply::{SocksReply, encode_reply};

/// What opens streams for the proxy's listeners: the Tor client, or a
/// direct connector in tests. Requests reach it only after
/// [`crate::names::route`] let them through (never a `.onion` or `.exit`
/// name).
pub trait Connector: Send + Sync + 'static {
    /// A bidirectional byte stream to the target.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Open a stream for a CONNECT request; on failure, the SOCKS reply to
    /// send (e.g. `ConnectionRefused` for an exit's END reason).
    fn connect(
        &self,
        request: &SocksRequest,
    ) -> impl Future<Output = Result<Self::Stream, SocksReply>> + Send;

    /// Answer a RESOLVE (a hostname) or RESOLVE_PTR (an address) request
    /// with an address or a name.
    fn resolve(
        &self,
        request: &SocksRequest,
    ) -> impl Future<Output = Result<SocksTarget, SocksReply>> + Send;
}

/// A bound SOCKS listener.
#[derive(Debug)]
pub struct SocksServer {
    listener: Listener,
    extended_errors: bool,
}

impl SocksServer {
    /// Listen on `addr` (with a warning in the log if it is not a
    /// loopback address).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: Listener::bind(addr, "SOCKS").await?,
            extended_errors: false,
        })
    }

    /// Send prop 304's extended SOCKS5 reply codes where one applies (C-tor's
    /// `ExtendedErrors` SocksPort flag; off by default, as applications
    /// that do not know the codes may take them for garbage).
    #[must_use]
    pub fn extended_errors(mut self, on: bool) -> Self {
        self.extended_errors = on;
        self
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` completes; connections in progress are
    /// dropped then (their streams end).
    pub async fn serve<C: Connector>(
        self,
        connector: Arc<C>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let extended = self.extended_errors;
        self.listener
            .serve(shutdown, |client| {
                let connector = connector.clone();
                async move { handle(client, connector.as_ref(), extended).await }
            })
            .await
    }
}

/// One client connection, start to end.
async fn handle<C: Connector>(
    mut client: TcpStream,
    connector: &C,
    extended_errors: bool,
) -> io::Result<()> {
    let (request, version) =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut client)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "SOCKS handshake timeout",
                ));
            }
        };
    match carry_out(connector, &request, "SOCKS").await {
        Outcome::Stream(mut stream) => {
            client.write_all(&encode_reply(version, 0, None)).await?;
            relay(&mut client, &mut stream, &[]).await
        }
        Outcome::Answer(answer) => {
            client
                .write_all(&encode_reply(version, 0, Some(&answer)))
                .await?;
            client.shutdown().await
        }
        Outcome::Failed { failure, .. } => {
            let code = failure.code(extended_errors);
            client.write_all(&encode_reply(version, code, None)).await?;
            client.shutdown().await
        }
    }
}

async fn handshake(client: &mut TcpStream) -> io::Result<(SocksRequest, SocksVersion)> {
    let mut hs = SocksHandshake::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed during the SOCKS handshake",
            ));
        }
        let result = hs.handle_bytes(buf.get(..n).unwrap_or_default());
        if let Some(out) = hs.poll_transmit() {
            client.write_all(&out).await?;
        }
        match result {
            Ok(Some(request)) => {
                // Known from the first byte, before any request.
                let version = hs
                    .version()
                    .ok_or_else(|| io::Error::other("a SOCKS request of no version"))?;
                return Ok((request, version));
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

#[cfg(test)]
mod tests;
