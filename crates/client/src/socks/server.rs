//! The SOCKS5 listener: accepts connections, runs [`SocksHandshake`] on
//! each (with a deadline), asks a [`Connector`] for the stream and relays
//! bytes both ways. Concurrent connections are bounded; past the bound new
//! ones wait in the kernel's accept queue.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::proto::{
    SocksCommand, SocksHandshake, SocksReply, SocksRequest, SocksTarget, encode_reply,
};

/// How long a client may take to send its greeting and request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Copy buffer per direction between the application and its stream.
const COPY_BUF: usize = 64 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// What opens streams for the SOCKS server: the Tor client, or a direct
/// connector in tests.
pub trait Connector: Send + Sync + 'static {
    /// A bidirectional byte stream to the target.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Open a stream for a CONNECT request; on failure, the SOCKS reply to
    /// send (e.g. `ConnectionRefused` for an exit's END reason).
    fn connect(
        &self,
        request: &SocksRequest,
    ) -> impl Future<Output = Result<Self::Stream, SocksReply>> + Send;

    /// Answer a RESOLVE or RESOLVE_PTR request with an address or a name.
    fn resolve(
        &self,
        request: &SocksRequest,
    ) -> impl Future<Output = Result<SocksTarget, SocksReply>> + Send;
}

/// A bound SOCKS listener.
#[derive(Debug)]
pub struct SocksServer {
    listener: TcpListener,
    limit: Arc<Semaphore>,
}

impl SocksServer {
    /// Listen on `addr`.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
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
                        tracing::warn!("SOCKS accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let connector = connector.clone();
            tasks.spawn(async move {
                if let Err(e) = handle(stream, connector.as_ref()).await {
                    tracing::debug!("SOCKS connection from {peer}: {e}");
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        tasks.shutdown().await;
        Ok(())
    }
}

/// One client connection, start to end.
async fn handle<C: Connector>(mut client: TcpStream, connector: &C) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let request = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut client)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "SOCKS handshake timeout",
            ));
        }
    };
    match request.command {
        SocksCommand::Connect => match connector.connect(&request).await {
            Ok(mut stream) => {
                client
                    .write_all(&encode_reply(SocksReply::Succeeded, None))
                    .await?;
                if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut stream,
                    COPY_BUF,
                    COPY_BUF,
                )
                .await
                {
                    // A stream that broke (its circuit died, the exit reset
                    // it) is reset toward the application too, so it is
                    // not taken for a complete one.
                    let _ = client.set_zero_linger();
                    return Err(e);
                }
                Ok(())
            }
            Err(reply) => {
                client.write_all(&encode_reply(reply, None)).await?;
                client.shutdown().await
            }
        },
        SocksCommand::Resolve | SocksCommand::ResolvePtr => {
            let reply = match connector.resolve(&request).await {
                Ok(answer) => encode_reply(SocksReply::Succeeded, Some(answer)),
                Err(reply) => encode_reply(reply, None),
            };
            client.write_all(&reply).await?;
            client.shutdown().await
        }
    }
}

async fn handshake(client: &mut TcpStream) -> io::Result<SocksRequest> {
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
            Ok(Some(request)) => return Ok(request),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// Connects directly (no Tor): for testing the server alone.
    struct Direct;

    impl Connector for Direct {
        type Stream = TcpStream;

        async fn connect(&self, request: &SocksRequest) -> Result<TcpStream, SocksReply> {
            match &request.target {
                SocksTarget::Ip(ip, port) => TcpStream::connect((*ip, *port))
                    .await
                    .map_err(|_| SocksReply::ConnectionRefused),
                SocksTarget::Hostname(..) => Err(SocksReply::HostUnreachable),
            }
        }

        async fn resolve(&self, request: &SocksRequest) -> Result<SocksTarget, SocksReply> {
            match &request.target {
                SocksTarget::Hostname(h, _) if h == "localhost" => {
                    Ok(SocksTarget::Ip(IpAddr::from([127, 0, 0, 1]), 0))
                }
                _ => Err(SocksReply::HostUnreachable),
            }
        }
    }

    async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let server = SocksServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(Arc::new(Direct), async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    fn connect_msg(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut m = vec![5, 1, 0, 5, 1, 0, 1];
        m.extend_from_slice(&ip);
        m.extend_from_slice(&port.to_be_bytes());
        m
    }

    #[tokio::test]
    async fn connect_relays_bytes_both_ways() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let (addr, _stop) = start().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&connect_msg([127, 0, 0, 1], echo_port))
            .await
            .unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).await.unwrap();
        assert_eq!(head[..2], [5, 0]);
        assert_eq!(head[2..4], [5, 0], "succeeded");
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
    }

    #[tokio::test]
    async fn refused_connect_and_resolve_get_their_codes() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let (addr, _stop) = start().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&connect_msg([127, 0, 0, 1], port))
            .await
            .unwrap();
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply[..4], [5, 0, 5, SocksReply::ConnectionRefused as u8]);

        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut m = vec![5, 1, 0, 5, 0xf0, 0, 3, 9];
        m.extend_from_slice(b"localhost");
        m.extend_from_slice(&[0, 0]);
        c.write_all(&m).await.unwrap();
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, [5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 0]);
    }

    #[tokio::test]
    async fn garbage_and_silence_end_the_connection() {
        let (addr, _stop) = start().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).await.unwrap();
        assert!(reply.is_empty());
    }
}
