//! A minimal SOCKS5 client (RFC 1928, username/password per RFC 1929), for
//! downloads through a Tor client's SocksPort in tests and benchmarks.
//!
//! tor uses the SOCKS username and password for stream isolation, so a
//! fresh pair asks it for a fresh circuit (or Conflux set).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::TestnetError;

/// Opens a stream to `target` through the SOCKS5 proxy at `proxy`.
pub async fn connect(
    proxy: SocketAddr,
    target: SocketAddr,
    auth: Option<(&str, &str)>,
) -> Result<TcpStream, TestnetError> {
    let err = |detail: String| TestnetError::Socks {
        addr: proxy.to_string(),
        detail,
    };
    let io = |e: std::io::Error| err(e.to_string());
    let mut s = TcpStream::connect(proxy).await.map_err(io)?;
    s.set_nodelay(true).map_err(io)?;
    let method = if auth.is_some() { 0x02 } else { 0x00 };
    s.write_all(&[0x05, 0x01, method]).await.map_err(io)?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await.map_err(io)?;
    if reply != [0x05, method] {
        return Err(err(format!(
            "refused authentication method {method}: {reply:?}"
        )));
    }
    if let Some((user, pass)) = auth {
        let (u, p) = (user.as_bytes(), pass.as_bytes());
        let (Ok(ulen), Ok(plen)) = (u8::try_from(u.len()), u8::try_from(p.len())) else {
            return Err(err("username or password longer than 255 bytes".into()));
        };
        let mut msg = vec![0x01, ulen];
        msg.extend_from_slice(u);
        msg.push(plen);
        msg.extend_from_slice(p);
        s.write_all(&msg).await.map_err(io)?;
        s.read_exact(&mut reply).await.map_err(io)?;
        if reply[1] != 0 {
            return Err(err("username/password rejected".into()));
        }
    }
    let mut req = vec![0x05, 0x01, 0x00];
    match target {
        SocketAddr::V4(a) => {
            req.push(0x01);
            req.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            req.push(0x04);
            req.extend_from_slice(&a.ip().octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(io)?;
    if head[1] != 0 {
        return Err(err(format!(
            "CONNECT {target} failed: {}",
            reply_text(head[1])
        )));
    }
    let skip = match head[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => usize::from(s.read_u8().await.map_err(io)?),
        other => return Err(err(format!("bad address type {other} in reply"))),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest).await.map_err(io)?;
    Ok(s)
}

fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot SOCKS5 server that checks the request and then echoes.
    async fn fake_proxy(expect_auth: bool, reply_code: u8) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut greet = [0u8; 3];
            s.read_exact(&mut greet).await.unwrap();
            assert_eq!(greet[2], if expect_auth { 2 } else { 0 });
            s.write_all(&[5, greet[2]]).await.unwrap();
            if expect_auth {
                let mut hdr = [0u8; 2];
                s.read_exact(&mut hdr).await.unwrap();
                let mut user = vec![0u8; hdr[1] as usize];
                s.read_exact(&mut user).await.unwrap();
                let plen = s.read_u8().await.unwrap();
                let mut pass = vec![0u8; plen as usize];
                s.read_exact(&mut pass).await.unwrap();
                assert_eq!((&user[..], &pass[..]), (&b"u"[..], &b"p"[..]));
                s.write_all(&[1, 0]).await.unwrap();
            }
            let mut req = [0u8; 10];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(&req[..4], &[5, 1, 0, 1]);
            assert_eq!(&req[4..], &[127, 0, 0, 1, 0x1f, 0x90]);
            s.write_all(&[5, reply_code, 0, 1, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            let mut buf = [0u8; 5];
            if s.read_exact(&mut buf).await.is_ok() {
                s.write_all(&buf).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn connects_with_and_without_auth() {
        let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for auth in [None, Some(("u", "p"))] {
            let proxy = fake_proxy(auth.is_some(), 0).await;
            let mut s = connect(proxy, target, auth).await.unwrap();
            s.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 5];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
        }
    }

    #[tokio::test]
    async fn failure_reply_is_an_error() {
        let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let proxy = fake_proxy(false, 5).await;
        let err = connect(proxy, target, None).await.unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
}
