//! The HTTP CONNECT listener (C-tor's HTTPTunnelPort): accepts
//! connections, reads each one's request with [`HttpConnectParser`] (with a
//! deadline), carries it out as the SOCKS listener does (names refused or
//! through the [`Connector`]), answers `HTTP/1.0 200 OK` and relays bytes
//! both ways, or answers the failure and closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::listener::{HANDSHAKE_TIMEOUT, Listener, Outcome, carry_out, relay};
use crate::socks::{Connector, SocksCommand, SocksReply, SocksRequest};

use super::proto::{
    HttpConnectError, HttpConnectParser, HttpConnectRequest, SUCCESS, failure_response,
};

/// A bound HTTP CONNECT listener.
#[derive(Debug)]
pub struct HttpConnectServer {
    listener: Listener,
}

impl HttpConnectServer {
    /// Listen on `addr` (with a warning in the log if it is not a
    /// loopback address).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: Listener::bind(addr, "HTTP CONNECT").await?,
        })
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
        self.listener
            .serve(shutdown, |client| {
                let connector = connector.clone();
                async move { handle(client, connector.as_ref()).await }
            })
            .await
    }
}

/// One client connection, start to end.
async fn handle<C: Connector>(mut client: TcpStream, connector: &C) -> io::Result<()> {
    let (request, early) =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_request(&mut client)).await {
            Ok(Ok(Ok(r))) => r,
            Ok(Ok(Err(e))) => {
                client.write_all(&e.response()).await?;
                client.shutdown().await?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "HTTP CONNECT request timeout",
                ));
            }
        };
    let request = SocksRequest {
        command: SocksCommand::Connect,
        target: request.target,
        isolation: request.isolation,
    };
    match carry_out(connector, &request, "HTTP CONNECT").await {
        Outcome::Stream(mut stream) => {
            client.write_all(SUCCESS).await?;
            relay(&mut client, &mut stream, &early).await
        }
        Outcome::Failed { failure, why } => {
            client
                .write_all(&failure_response(failure.reply, &why))
                .await?;
            client.shutdown().await
        }
        // Only RESOLVE requests are answered without a stream.
        Outcome::Answer(_) => {
            let why = "a CONNECT answered without a stream";
            client
                .write_all(&failure_response(SocksReply::GeneralFailure, why))
                .await?;
            client.shutdown().await
        }
    }
}

/// The request and the bytes after its head; an I/O error, or the
/// request's refusal.
async fn read_request(
    client: &mut TcpStream,
) -> io::Result<Result<(HttpConnectRequest, Vec<u8>), HttpConnectError>> {
    let mut parser = HttpConnectParser::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed during the HTTP CONNECT request",
            ));
        }
        match parser.handle_bytes(buf.get(..n).unwrap_or_default()) {
            Ok(Some(request)) => return Ok(Ok((request, parser.take_early_data()))),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests;
