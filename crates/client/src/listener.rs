//! What the SOCKS and HTTP CONNECT listeners share: a bound listener with a
//! bound on concurrent connections and a warning when it is reachable from
//! beyond this host, the accept loop, carrying out a request (its route is
//! [`crate::names`]'s decision, the stream the [`Connector`]'s), and the
//! byte relay between the application and its stream.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::names::{Route, route};
use crate::safelog::sensitive;
use crate::socks::{Connector, Failure, SocksCommand, SocksReply, SocksRequest, SocksTarget};

/// How long a client may take to send its handshake and request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Copy buffer per direction between the application and its stream.
const COPY_BUF: usize = 64 * 1024;
/// Connections served at once, per listener.
pub const MAX_CONNECTIONS: usize = 1024;

/// The warning for a proxy listening on `addr`, if that is not a loopback
/// address: anyone who can reach it can use the proxy (C-tor warns the
/// same for a SocksPort on a public address).
pub fn exposure_warning(addr: SocketAddr, what: &str) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "the {what} listener on {addr} is reachable from beyond this host: \
             anyone who can reach it can use this proxy (as an open proxy into Tor); \
             listen on a loopback address unless that is what you want"
        )
    })
}

/// A bound listener and its connection bound.
#[derive(Debug)]
pub(crate) struct Listener {
    listener: TcpListener,
    limit: Arc<Semaphore>,
    what: &'static str,
}

impl Listener {
    /// Listen on `addr` for the `what` protocol (for messages), warning
    /// when the address is not a loopback one.
    pub(crate) async fn bind(addr: SocketAddr, what: &'static str) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        if let Some(warning) = exposure_warning(listener.local_addr()?, what) {
            tracing::warn!("{warning}");
        }
        Ok(Self {
            listener,
            limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            what,
        })
    }

    /// The address listened on.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections and run `handle` on each until `shutdown`
    /// completes; connections in progress are dropped then (their streams
    /// end). Past [`MAX_CONNECTIONS`] new ones wait in the kernel's accept
    /// queue.
    pub(crate) async fn serve<H, F>(
        self,
        shutdown: impl Future<Output = ()>,
        handle: H,
    ) -> io::Result<()>
    where
        H: Fn(TcpStream) -> F,
        F: Future<Output = io::Result<()>> + Send + 'static,
    {
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = self.limit.clone().acquire_owned() => p.map_err(io::Error::other)?,
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!("{} accept failed: {e}", self.what);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let work = handle(stream);
            let what = self.what;
            tasks.spawn(async move {
                if let Err(e) = work.await {
                    // The application's address is the user's: scrubbed.
                    tracing::debug!("{what} connection from {}: {e}", sensitive(peer));
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        tasks.shutdown().await;
        Ok(())
    }
}

/// What became of a request.
#[derive(Debug)]
pub(crate) enum Outcome<S> {
    /// A stream, to answer "succeeded" and relay.
    Stream(S),
    /// The answer of a RESOLVE or RESOLVE_PTR.
    Answer(SocksTarget),
    /// The failure to tell the application, and why in words.
    Failed {
        /// The reply codes.
        failure: Failure,
        /// The refusal, or the reply code, in words.
        why: String,
    },
}

/// Carry out `request`: refused or answered here as [`route`] decides,
/// else through `connector`. `what` names the front end in the log.
pub(crate) async fn carry_out<C: Connector>(
    connector: &C,
    request: &SocksRequest,
    what: &str,
) -> Outcome<C::Stream> {
    let target = match route(request.command, &request.target) {
        Route::Refuse(why) => {
            tracing::info!(
                "{what} request for {} refused: {why}",
                sensitive(&request.target)
            );
            return Outcome::Failed {
                failure: Failure {
                    reply: why.socks5_reply(),
                    extended: why.extended_error(),
                },
                why: why.to_string(),
            };
        }
        Route::Answer(answer) => return Outcome::Answer(answer),
        Route::Exit(target) => target,
    };
    tracing::debug!("{what} {:?} for {}", request.command, sensitive(&target));
    let request = SocksRequest {
        command: request.command,
        target,
        isolation: request.isolation.clone(),
    };
    match request.command {
        SocksCommand::Connect => match connector.connect(&request).await {
            Ok(stream) => Outcome::Stream(stream),
            Err(reply) => failed(reply),
        },
        SocksCommand::Resolve | SocksCommand::ResolvePtr => {
            match connector.resolve(&request).await {
                Ok(answer) => Outcome::Answer(answer),
                Err(reply) => failed(reply),
            }
        }
    }
}

fn failed<S>(reply: SocksReply) -> Outcome<S> {
    Outcome::Failed {
        failure: reply.into(),
        why: reply.to_string(),
    }
}

/// Relay bytes both ways between the application and its stream until
/// both sides are done, after sending `early` (what the application sent
/// before its stream was open) to the stream.
pub(crate) async fn relay<S>(client: &mut TcpStream, stream: &mut S, early: &[u8]) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = async {
        if !early.is_empty() {
            stream.write_all(early).await?;
        }
        tokio::io::copy_bidirectional_with_sizes(client, stream, COPY_BUF, COPY_BUF).await
    }
    .await;
    if let Err(e) = result {
        // A stream that broke (its circuit died, the exit reset it) is
        // reset toward the application too, so it is not taken for a
        // complete one.
        let _ = client.set_zero_linger();
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn only_loopback_is_quiet() {
        for quiet in ["127.0.0.1:9150", "127.5.0.1:1", "[::1]:9150"] {
            assert_eq!(exposure_warning(quiet.parse().unwrap(), "SOCKS"), None);
        }
        for loud in [
            "0.0.0.0:9150",
            "192.168.1.2:9150",
            "[::]:8118",
            "203.0.113.1:1",
        ] {
            let w = exposure_warning(loud.parse().unwrap(), "HTTP CONNECT").unwrap();
            assert!(w.contains("HTTP CONNECT listener"), "{w}");
            assert!(w.contains(loud), "{w}");
        }
    }
}
