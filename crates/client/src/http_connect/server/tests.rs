//! The HTTP CONNECT listener with a direct connector (no Tor): a tunnel
//! with early data, the isolation key handed to the connector, refusals
//! before the connector is asked, and C-tor's answers.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::sync::Mutex;

use tokio::net::TcpListener;

use crate::socks::{IsolationKey, SocksTarget};

use super::*;

/// Connects directly to addresses, remembering the isolation keys it was
/// asked with.
#[derive(Default)]
struct Direct {
    keys: Mutex<Vec<IsolationKey>>,
}

impl Connector for Direct {
    type Stream = TcpStream;

    async fn connect(&self, request: &SocksRequest) -> Result<TcpStream, SocksReply> {
        self.keys.lock().unwrap().push(request.isolation.clone());
        let SocksTarget::Ip(ip, port) = request.target else {
            return Err(SocksReply::HostUnreachable);
        };
        TcpStream::connect((ip, port))
            .await
            .map_err(|_| SocksReply::ConnectionRefused)
    }

    async fn resolve(&self, _: &SocksRequest) -> Result<SocksTarget, SocksReply> {
        Err(SocksReply::CommandNotSupported)
    }
}

async fn start() -> (SocketAddr, Arc<Direct>, tokio::sync::oneshot::Sender<()>) {
    let server = HttpConnectServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let direct = Arc::new(Direct::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(direct.clone(), async {
        let _ = rx.await;
    }));
    (addr, direct, tx)
}

async fn exchange(addr: SocketAddr, msg: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(msg).await.unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).await.unwrap();
    String::from_utf8(reply).unwrap()
}

#[tokio::test]
async fn tunnel_with_early_data_and_isolation() {
    // An upper-casing echo: what arrives first is the early data.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut b = [0u8; 10];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b.to_ascii_uppercase()).await.unwrap();
    });
    let (addr, direct, _stop) = start().await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Proxy-Authorization: Basic dTpw\r\nX-Tor-Stream-Isolation: 7\r\n\r\nearly"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut ok = [0u8; 19];
    c.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"HTTP/1.0 200 OK\r\n\r\n");
    c.write_all(b"later").await.unwrap();
    let mut back = [0u8; 10];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"EARLYLATER");
    let keys = direct.keys.lock().unwrap().clone();
    assert_eq!(
        keys,
        vec![IsolationKey {
            username: b"Basic dTpw".to_vec(),
            password: b"7".to_vec(),
        }]
    );
}

#[tokio::test]
async fn failures_get_c_tor_answers() {
    let (addr, direct, _stop) = start().await;
    // Port 1: nothing listens there (a port freed here could be taken by
    // a test running beside this one).
    let port: u16 = 1;
    let reply = exchange(
        addr,
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.0 403 Forbidden (connection refused)\r\n"),
        "{reply}"
    );
    let reply = exchange(
        addr,
        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.0 405 Method Not Allowed\r\n"),
        "{reply}"
    );
    assert!(reply.contains("not an HTTP proxy"), "{reply}");
    let reply = exchange(addr, b"CONNECT nowhere HTTP/1.1\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{reply}");
    // Only the closed port reached the connector.
    assert_eq!(direct.keys.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn onion_and_exit_names_are_refused_here() {
    let (addr, direct, _stop) = start().await;
    let onion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";
    let reply = exchange(
        addr,
        format!("CONNECT {onion}:443 HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.0 404 Not Found (resolve failed)\r\n"),
        "{reply}"
    );
    assert!(reply.contains("does not reach onion services"), "{reply}");
    let reply = exchange(
        addr,
        b"CONNECT www.example.com.relay.exit:443 HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.0 502 Bad Gateway\r\n"), "{reply}");
    assert!(direct.keys.lock().unwrap().is_empty());
}
