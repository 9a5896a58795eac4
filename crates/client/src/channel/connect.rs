//! Opening a channel: TCP, TLS, then braid-core's [`ClientHandshake`]
//! driven over the TLS stream until it is open, then the reactor.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use braid_core::channel::{ClientHandshake, ExpectedIdentity, HandshakeParams};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::config::ChannelConfig;
use super::error::{ChannelDriverError, CloseReason, ConnectPhase};
use super::handle::{ChannelHandle, ChannelInfo};
use super::reactor;
use super::tls;

/// Bytes read from a channel's TCP socket at once, below TLS.
const TCP_READ_BUFFER: usize = 64 * 1024;

/// Opens channels. See [`Channel::connect`].
#[derive(Debug, Clone, Copy)]
pub struct Channel;

impl Channel {
    /// Open a channel to the relay at `addr` that must prove `expected`:
    /// TCP connect, TLS, the link handshake (VERSIONS, CERTS checked
    /// against the TLS certificate and `expected`, NETINFO), all within
    /// `timeout`; then start the reactor task.
    ///
    /// Returns the handle and the reactor's task, which ends with the
    /// channel (awaiting it is optional; dropping it detaches the task).
    pub async fn connect(
        addr: SocketAddr,
        expected: ExpectedIdentity,
        timeout: Duration,
    ) -> Result<(ChannelHandle, JoinHandle<CloseReason>), ChannelDriverError> {
        let config = ChannelConfig::default().with_connect_timeout(timeout);
        Self::connect_with(addr, expected, &config).await
    }

    /// [`connect`](Self::connect) with every limit from `config`.
    pub async fn connect_with(
        addr: SocketAddr,
        expected: ExpectedIdentity,
        config: &ChannelConfig,
    ) -> Result<(ChannelHandle, JoinHandle<CloseReason>), ChannelDriverError> {
        let start = Instant::now();
        let deadline = start + config.connect_timeout;
        let timed_out = |phase| ChannelDriverError::Timeout {
            addr,
            phase,
            after: start.elapsed(),
        };

        let tcp = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out(ConnectPhase::Tcp))?
            .map_err(|source| ChannelDriverError::Connect { addr, source })?;
        // Cells are batched by the reactor; Nagle would only add delay.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%addr, "cannot set TCP_NODELAY: {e}");
        }
        let tcp_time = start.elapsed();

        // rustls reads the socket 4 KiB at a time: one recvfrom per 8
        // cells. Through a 64 KiB buffer, one call takes whatever has
        // arrived (an unshaped download made 5 times fewer calls).
        let tcp = tokio::io::BufReader::with_capacity(TCP_READ_BUFFER, tcp);
        let tls_config = tls::client_config()?;
        let (mut stream, tls_info) = timeout_at(deadline, tls::connect(tls_config, tcp, addr))
            .await
            .map_err(|_| timed_out(ConnectPhase::Tls))??;
        let tls_time = start.elapsed();

        let params = HandshakeParams::new(expected, tls_info.peer_cert.clone())
            .with_peer_addr(addr.ip())
            .with_timeout(deadline.saturating_duration_since(Instant::now()));
        let handshake = ClientHandshake::new(params, std::time::Instant::now());
        let handshake_deadline = Instant::from_std(handshake.deadline()).min(deadline);
        let handshake = timeout_at(
            handshake_deadline,
            run_handshake(handshake, &mut stream, addr, config.handshake_nudge),
        )
        .await
        .map_err(|_| timed_out(ConnectPhase::LinkHandshake))??;
        let opened = handshake
            .finish()
            .map_err(|source| ChannelDriverError::Handshake { addr, source })?;
        let handshake_time = start.elapsed();

        let info = ChannelInfo {
            addr,
            tls: tls_info,
            outcome: opened.outcome,
            tcp_time,
            tls_time,
            handshake_time,
        };
        tracing::debug!(
            %addr,
            link_version = info.outcome.link_version,
            rsa = %info.outcome.peer.rsa,
            tls = ?info.tls.version,
            ?handshake_time,
            "channel open"
        );
        Ok(reactor::spawn(
            stream,
            opened.codec,
            opened.unsent,
            info,
            config.clone(),
        ))
    }
}

/// An empty VPADDING cell framed for link protocol 4 and later (we offer
/// only 4 and 5, so that is the framing after our VERSIONS).
const VPADDING_CELL: [u8; 7] = [0, 0, 0, 0, 128, 0, 0];

/// Feed the handshake with what the relay sends and send what it says,
/// until it is open. No timeout here: the caller sets one.
///
/// With `nudge`, an empty VPADDING cell follows our VERSIONS if the relay
/// has not answered after that long (see
/// [`ChannelConfig::handshake_nudge`]).
async fn run_handshake<S>(
    mut handshake: ClientHandshake,
    stream: &mut S,
    addr: SocketAddr,
    nudge: Option<Duration>,
) -> Result<ClientHandshake, ChannelDriverError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io_err = |source| ChannelDriverError::Io { addr, source };
    let mut buf = vec![0_u8; 16 * 1024];
    let mut nudge_at = nudge.map(|d| Instant::now() + d);
    loop {
        let mut wrote = false;
        while let Some(out) = handshake.poll_transmit() {
            stream.write_all(&out).await.map_err(io_err)?;
            wrote = true;
        }
        if wrote {
            stream.flush().await.map_err(io_err)?;
        }
        if handshake.is_open() {
            return Ok(handshake);
        }
        let read = match nudge_at {
            Some(at) => tokio::select! {
                r = stream.read(&mut buf) => r,
                () = tokio::time::sleep_until(at) => {
                    nudge_at = None;
                    // tor-spec §4: VPADDING may be sent at any time.
                    stream.write_all(&VPADDING_CELL).await.map_err(io_err)?;
                    stream.flush().await.map_err(io_err)?;
                    continue;
                }
            },
            None => stream.read(&mut buf).await,
        };
        nudge_at = None;
        let n = match read {
            Ok(0) => return Err(ChannelDriverError::HandshakeEof { addr }),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ChannelDriverError::HandshakeEof { addr });
            }
            Err(e) => return Err(io_err(e)),
        };
        let data = buf.get(..n).unwrap_or_default();
        handshake
            .handle_bytes(SystemTime::now(), data)
            .map_err(|source| ChannelDriverError::Handshake { addr, source })?;
    }
}
