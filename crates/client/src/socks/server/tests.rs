//! The SOCKS listener with a direct connector (no Tor): bytes relayed,
//! replies in both versions, and names refused before the connector is
//! ever asked.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::socks::SocksCommand;

use super::*;

/// Connects directly (no Tor), counting what it was asked: for testing the
/// server alone. "localhost" is 127.0.0.1; other names fail.
#[derive(Default)]
struct Direct {
    calls: AtomicUsize,
}

impl Connector for Direct {
    type Stream = TcpStream;

    async fn connect(&self, request: &SocksRequest) -> Result<TcpStream, SocksReply> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let ip = match &request.target {
            SocksTarget::Ip(ip, _) => *ip,
            SocksTarget::Hostname(h, _) if h == "localhost" => IpAddr::from([127, 0, 0, 1]),
            SocksTarget::Hostname(..) => return Err(SocksReply::HostUnreachable),
        };
        TcpStream::connect((ip, request.target.port()))
            .await
            .map_err(|_| SocksReply::ConnectionRefused)
    }

    async fn resolve(&self, request: &SocksRequest) -> Result<SocksTarget, SocksReply> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match (request.command, &request.target) {
            (SocksCommand::Resolve, SocksTarget::Hostname(h, _)) if h == "localhost" => {
                Ok(SocksTarget::Ip(IpAddr::from([127, 0, 0, 1]), 0))
            }
            (SocksCommand::ResolvePtr, SocksTarget::Ip(ip, _)) if ip.is_loopback() => {
                Ok(SocksTarget::Hostname("localhost".into(), 0))
            }
            _ => Err(SocksReply::HostUnreachable),
        }
    }
}

async fn start(extended: bool) -> (SocketAddr, Arc<Direct>, tokio::sync::oneshot::Sender<()>) {
    let server = SocksServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .extended_errors(extended);
    let addr = server.local_addr().unwrap();
    let direct = Arc::new(Direct::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(direct.clone(), async {
        let _ = rx.await;
    }));
    (addr, direct, tx)
}

fn connect_msg(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut m = vec![5, 1, 0, 5, 1, 0, 1];
    m.extend_from_slice(&ip);
    m.extend_from_slice(&port.to_be_bytes());
    m
}

/// A SOCKS5 greeting (no auth) and a request for `host` with `cmd`.
fn hostname_msg(cmd: u8, host: &str, port: u16) -> Vec<u8> {
    let mut m = vec![5, 1, 0, 5, cmd, 0, 3, u8::try_from(host.len()).unwrap()];
    m.extend_from_slice(host.as_bytes());
    m.extend_from_slice(&port.to_be_bytes());
    m
}

/// Send `msg`, read everything until the server closes.
async fn exchange(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(msg).await.unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).await.unwrap();
    reply
}

/// An echo server for one connection of 5 bytes.
async fn echo_once() -> u16 {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = echo.accept().await.unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
    });
    port
}

#[tokio::test]
async fn connect_relays_bytes_both_ways() {
    let echo_port = echo_once().await;
    let (addr, _, _stop) = start(false).await;
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
async fn socks4a_and_socks4_on_the_same_port() {
    let (addr, _, _stop) = start(false).await;
    // SOCKS4a: a hostname, and a user id.
    let echo_port = echo_once().await;
    let mut m = vec![4, 1];
    m.extend_from_slice(&echo_port.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1]);
    m.extend_from_slice(b"user\0localhost\0");
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&m).await.unwrap();
    let mut reply = [0u8; 8];
    c.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply, [0, 0x5A, 0, 0, 0, 0, 0, 0]);
    c.write_all(b"socks").await.unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"socks");

    // SOCKS4 with an address nothing listens on: rejected.
    // Port 1: nothing listens there (a port freed here could be taken by
    // a test running beside this one).
    let port: u16 = 1;
    let mut m = vec![4, 1];
    m.extend_from_slice(&port.to_be_bytes());
    m.extend_from_slice(&[127, 0, 0, 1, 0]);
    assert_eq!(exchange(addr, &m).await, [0, 0x5B, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn refused_connect_and_resolve_get_their_codes() {
    // Port 1: nothing listens there (a port freed here could be taken by
    // a test running beside this one).
    let port: u16 = 1;
    let (addr, _, _stop) = start(false).await;
    let reply = exchange(addr, &connect_msg([127, 0, 0, 1], port)).await;
    assert_eq!(reply[..4], [5, 0, 5, SocksReply::ConnectionRefused as u8]);

    let reply = exchange(addr, &hostname_msg(0xf0, "localhost", 0)).await;
    assert_eq!(reply, [5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 0]);
}

#[tokio::test]
async fn resolve_ptr_answers_a_name() {
    let (addr, direct, _stop) = start(false).await;
    let mut m = vec![5, 1, 0, 5, 0xf1, 0, 1, 127, 0, 0, 1, 0, 0];
    let mut want = vec![5, 0, 5, 0, 0, 3, 9];
    want.extend_from_slice(b"localhost");
    want.extend_from_slice(&[0, 0]);
    assert_eq!(exchange(addr, &m).await, want);
    // Its in-addr.arpa name is the same question.
    m = hostname_msg(0xf1, "1.0.0.127.in-addr.arpa", 0);
    assert_eq!(exchange(addr, &m).await, want);
    assert_eq!(direct.calls.load(Ordering::SeqCst), 2);
    // A name is no address: refused here.
    let reply = exchange(addr, &hostname_msg(0xf1, "localhost", 0)).await;
    assert_eq!(reply[2..4], [5, SocksReply::HostUnreachable as u8]);
    assert_eq!(direct.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn resolve_of_an_address_is_answered_here() {
    let (addr, direct, _stop) = start(false).await;
    let reply = exchange(addr, &hostname_msg(0xf0, "192.0.2.9", 0)).await;
    assert_eq!(reply, [5, 0, 5, 0, 0, 1, 192, 0, 2, 9, 0, 0]);
    assert_eq!(direct.calls.load(Ordering::SeqCst), 0);
}

/// The Tor Project's onion address.
const ONION: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

#[tokio::test]
async fn onion_and_exit_names_never_reach_the_connector() {
    let (addr, direct, _stop) = start(false).await;
    let t = Instant::now();
    let reply = exchange(addr, &hostname_msg(1, ONION, 443)).await;
    let took = t.elapsed();
    assert_eq!(reply[2..4], [5, SocksReply::HostUnreachable as u8]);
    assert!(took < Duration::from_millis(100), "{took:?}");
    let reply = exchange(addr, &hostname_msg(0xf0, ONION, 0)).await;
    assert_eq!(reply[2..4], [5, SocksReply::HostUnreachable as u8]);
    let reply = exchange(addr, &hostname_msg(1, "bad.onion", 80)).await;
    assert_eq!(reply[2..4], [5, SocksReply::GeneralFailure as u8]);
    let reply = exchange(addr, &hostname_msg(1, "example.com.relay.exit", 80)).await;
    assert_eq!(reply[2..4], [5, SocksReply::GeneralFailure as u8]);
    // SOCKS4a too.
    let mut m = vec![4, 1, 0, 80, 0, 0, 0, 1, 0];
    m.extend_from_slice(ONION.as_bytes());
    m.push(0);
    assert_eq!(exchange(addr, &m).await, [0, 0x5B, 0, 0, 0, 0, 0, 0]);
    assert_eq!(direct.calls.load(Ordering::SeqCst), 0, "no connector call");
}

#[tokio::test]
async fn extended_errors_when_the_port_has_them() {
    let (plain, _, _stop1) = start(false).await;
    let (extended, _, _stop2) = start(true).await;
    let bad = hostname_msg(1, "bad.onion", 80);
    assert_eq!(exchange(plain, &bad).await[3], 0x01);
    assert_eq!(exchange(extended, &bad).await[3], 0xF6);
    // A well-formed onion address: C-tor sets no extended code when it
    // may not fetch descriptors.
    let good = hostname_msg(1, ONION, 80);
    assert_eq!(exchange(extended, &good).await[3], 0x04);
}

#[tokio::test]
async fn garbage_and_silence_end_the_connection() {
    let (addr, _, _stop) = start(false).await;
    assert!(exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await.is_empty());
}
