//! The ORPort: accept TCP, run TLS and the responder's link handshake
//! (tor-spec §4) on each connection within a deadline, a bounded number at
//! once, and hand the open channels to the node task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use braid_core::channel::{Initiator, ResponderHandshake, ResponderParams};
use braid_core::relay::Peer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::link::Link;
use super::msg::{OpenedLink, ToNode};
use crate::error::LinkError;

/// Bytes buffered below TLS on each connection.
pub(crate) const TCP_READ_BUF: usize = 64 * 1024;

/// What the accept loop needs.
#[derive(Debug, Clone)]
pub(crate) struct AcceptParams {
    /// Our addresses, for our NETINFO.
    pub(crate) my_addrs: Vec<IpAddr>,
    /// Most handshakes at once; more connections wait in the kernel's
    /// backlog.
    pub(crate) max_handshakes: usize,
    /// How long a connection may take from accept to an open channel.
    pub(crate) timeout: Duration,
}

/// Accept connections on `listener` until the node task is gone.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    link: watch::Receiver<Arc<Link>>,
    params: AcceptParams,
    to_node: mpsc::Sender<ToNode>,
) {
    let permits = Arc::new(Semaphore::new(params.max_handshakes));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, mostly: wait for some to close.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if to_node.is_closed() {
            return;
        }
        let link = Arc::clone(&link.borrow());
        let (params, to_node) = (params.clone(), to_node.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let r = tokio::time::timeout(params.timeout, respond(tcp, addr, &link, &params)).await;
            match r {
                Ok(Ok(opened)) => {
                    let _ = to_node.send(ToNode::Opened(Box::new(opened))).await;
                }
                Ok(Err(e)) => tracing::debug!("inbound {addr}: {e}"),
                Err(_) => tracing::debug!("inbound {addr}: {}", LinkError::Timeout(params.timeout)),
            }
        });
    }
}

/// TLS and the responder's link handshake on `tcp`.
async fn respond(
    tcp: TcpStream,
    addr: SocketAddr,
    link: &Link,
    params: &AcceptParams,
) -> Result<OpenedLink, LinkError> {
    let _ = tcp.set_nodelay(true);
    let tcp = BufReader::with_capacity(TCP_READ_BUF, tcp);
    let mut tls = TlsAcceptor::from(Arc::clone(&link.server))
        .accept(tcp)
        .await?;
    let hparams = ResponderParams::new(Arc::clone(&link.keys))
        .with_peer_addr(addr.ip())
        .with_my_addrs(params.my_addrs.clone())
        .with_timeout(params.timeout);
    let mut h = ResponderHandshake::new(hparams, &mut rand::rng(), Instant::now());
    let mut buf = vec![0; 16 * 1024];
    loop {
        if let Some(out) = h.poll_transmit() {
            tls.write_all(&out).await?;
            tls.flush().await?;
        }
        if h.is_open() {
            break;
        }
        if let Some(req) = h.tls_export_request() {
            // tor-spec §4.4.2: TLSSECRETS, with the initiator's CID as the
            // context.
            let material = tls
                .get_ref()
                .1
                .export_keying_material([0; 32], req.label, Some(&req.context))
                .map_err(LinkError::Export)?;
            h.handle_tls_export(SystemTime::now(), material)?;
            continue;
        }
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Err(LinkError::Eof);
        }
        h.handle_bytes(SystemTime::now(), buf.get(..n).unwrap_or_default())?;
    }
    let opened = h.finish()?;
    let peer = match opened.outcome.initiator {
        Initiator::Unauthenticated => Peer::Client,
        Initiator::Relay(id) => Peer::Relay {
            rsa: id.rsa,
            ed: Some(id.ed25519),
        },
    };
    Ok(OpenedLink {
        peer,
        initiator: false,
        connect: None,
        stream: tls.into(),
        codec: opened.codec,
        unsent: opened.unsent,
        addr,
    })
}
