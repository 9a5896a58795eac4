//! Channels we open to extend circuits (`NodeEvent::Connect`): TCP to the
//! relay's addresses, TLS (any certificate: the CERTS cell proves who it
//! is), and the initiator's link handshake authenticating as our relay
//! (CERTS with type 6, AUTHENTICATE AUTH0003; tor-spec §4.4), which checks
//! that the peer holds the identities asked for.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use braid_core::channel::{
    AUTH0003_EXPORTER_LABEL, ClientHandshake, ExpectedIdentity, HandshakeParams, InitiatorAuth,
};
use braid_core::relay::Peer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::accept::TCP_READ_BUF;
use super::link::Link;
use super::msg::OpenedLink;
use crate::error::LinkError;

/// How long one TCP connect may take.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Open a channel to the relay with `expected` identities at one of
/// `addrs` (tried in order).
pub(crate) async fn connect(
    link: &Link,
    expected: ExpectedIdentity,
    addrs: &[SocketAddr],
    my_addrs: Vec<IpAddr>,
) -> Result<OpenedLink, LinkError> {
    let mut errors = Vec::new();
    let mut found = None;
    for addr in addrs {
        match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                found = Some((tcp, *addr));
                break;
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no answer in {TCP_CONNECT_TIMEOUT:?}")),
        }
    }
    let Some((tcp, addr)) = found else {
        return Err(LinkError::Unreachable(if errors.is_empty() {
            "no address given".into()
        } else {
            errors.join("; ")
        }));
    };
    let _ = tcp.set_nodelay(true);
    let tcp = BufReader::with_capacity(TCP_READ_BUF, tcp);
    let mut tls = TlsConnector::from(Arc::clone(&link.client))
        .connect(super::tls::server_name(), tcp)
        .await?;
    let (_, session) = tls.get_ref();
    let peer_cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or(LinkError::NoPeerCertificate)?;
    // tor-spec §4.4.2: TLSSECRETS, with our CID as the context.
    let exporter = session
        .export_keying_material(
            [0; 32],
            AUTH0003_EXPORTER_LABEL,
            Some(&link.keys.auth0003_exporter_context()),
        )
        .map_err(LinkError::Export)?;
    let auth = InitiatorAuth::new(Arc::clone(&link.keys), exporter, my_addrs, &mut rand::rng());
    let params = HandshakeParams::new(expected, peer_cert)
        .with_peer_addr(addr.ip())
        .with_relay_auth(auth);
    let mut h = ClientHandshake::new(params, Instant::now());
    let mut buf = vec![0; 16 * 1024];
    while !h.is_open() {
        if let Some(out) = h.poll_transmit() {
            tls.write_all(&out).await?;
            tls.flush().await?;
        }
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Err(LinkError::Eof);
        }
        h.handle_bytes(SystemTime::now(), buf.get(..n).unwrap_or_default())?;
    }
    let opened = h.finish()?;
    let id = opened.outcome.peer;
    Ok(OpenedLink {
        peer: Peer::Relay {
            rsa: id.rsa,
            ed: Some(id.ed25519),
        },
        initiator: true,
        connect: None,
        stream: tls.into(),
        codec: opened.codec,
        unsent: opened.unsent,
        addr,
    })
}
