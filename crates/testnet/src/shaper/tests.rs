//! Tests of [`super`]: CONNECT heads, loopback-only targets, rate caps, delays and the token bucket.

use super::*;

use std::time::Instant as StdInstant;

/// Binds a listener on an ephemeral loopback port.
async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An echo server: every connection gets its bytes back, and a
/// half-close once the client half-closes.
async fn echo_server() -> SocketAddr {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.set_nodelay(true).unwrap();
                let (mut r, mut w) = stream.into_split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// A sink: reads everything, then answers with the byte count as 8 bytes.
async fn sink_server() -> SocketAddr {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                let mut total = 0u64;
                loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                stream.write_all(&total.to_be_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// Starts a shaper in front of `target` and returns its address.
async fn shaper(target: SocketAddr, spec: ShapeSpec) -> SocketAddr {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    let config = ShaperConfig {
        name: "test".into(),
        target,
        spec,
    };
    tokio::spawn(run_shaper(listener, config));
    addr
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Sends `data`, half-closes, and returns everything read back.
async fn round_trip(stream: TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = stream.into_split();
    let data = data.to_vec();
    let send = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    send.await.unwrap();
    back
}

/// Sends `len` bytes to a sink through `stream`; returns the sink's count.
async fn send_to_sink(mut stream: TcpStream, len: usize) -> u64 {
    stream.write_all(&pattern(len)).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut count = [0; 8];
    stream.read_exact(&mut count).await.unwrap();
    u64::from_be_bytes(count)
}

/// Reads an HTTP response head byte by byte, so that nothing after it
/// is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn direct_connection_passes_bytes_both_ways() {
    let shaper = shaper(echo_server().await, ShapeSpec::default()).await;
    // Starts like a TLS record, and is large enough for many chunks.
    let mut data = pattern(300_000);
    data[0] = 0x16;
    let stream = TcpStream::connect(shaper).await.unwrap();
    assert_eq!(round_trip(stream, &data).await, data);

    // A single byte is forwarded too, even before anything else comes.
    let mut stream = TcpStream::connect(shaper).await.unwrap();
    stream.write_all(b"C").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"C");
}

#[tokio::test]
async fn connect_reaches_loopback_and_keeps_early_bytes() {
    let echo = echo_server().await;
    // The direct target is a sink, so that echoes prove CONNECT was used.
    let shaper = shaper(sink_server().await, ShapeSpec::default()).await;
    let mut stream = TcpStream::connect(shaper).await.unwrap();
    let request = format!("CONNECT {echo} HTTP/1.0\r\nHost: {echo}\r\n\r\nearly bytes");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert_eq!(head, "HTTP/1.0 200 Connection established\r\n\r\n");
    let more = pattern(100_000);
    let back = round_trip(stream, &more).await;
    let mut expected = b"early bytes".to_vec();
    expected.extend_from_slice(&more);
    assert_eq!(back, expected);
}

#[tokio::test]
async fn connect_elsewhere_is_forbidden() {
    let shaper = shaper(sink_server().await, ShapeSpec::default()).await;
    for dest in [
        "10.0.0.1:80",
        "192.0.2.1:443",
        "localhost:80",
        "[::1]:80",
        "127.0.0.1:0",
    ] {
        let started = StdInstant::now();
        let mut stream = TcpStream::connect(shaper).await.unwrap();
        let request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"HTTP/1.0 403 Forbidden\r\n\r\n", "{dest}");
        // A connection attempt to 10.0.0.1 would hang far longer.
        assert!(started.elapsed() < Duration::from_secs(2), "{dest}");
    }

    // Garbage after "CONNECT " is a bad request.
    let mut stream = TcpStream::connect(shaper).await.unwrap();
    stream.write_all(b"CONNECT nonsense\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"HTTP/1.0 400 Bad Request\r\n\r\n");
}

#[tokio::test]
async fn oversized_connect_head_is_refused() {
    let shaper = shaper(sink_server().await, ShapeSpec::default()).await;
    let mut stream = TcpStream::connect(shaper).await.unwrap();
    let mut request = b"CONNECT 127.0.0.1:1 HTTP/1.0\r\nX: ".to_vec();
    request.resize(MAX_CONNECT_HEAD + 100, b'a');
    stream.write_all(&request).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"HTTP/1.0 400 Bad Request\r\n\r\n");
}

#[test]
fn parses_connect_heads() {
    let ok = parse_connect_head(b"CONNECT 127.0.0.1:5003 HTTP/1.0\r\nHost: 127.0.0.1:5003\r\n\r\n");
    assert_eq!(ok, Ok(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 5003)));
    let ok = parse_connect_head(b"CONNECT 127.1.2.3:9 HTTP/1.1\r\n\r\n");
    assert_eq!(ok, Ok(SocketAddrV4::new(Ipv4Addr::new(127, 1, 2, 3), 9)));
    for bad in [
        &b"CONNECT 127.0.0.1:5003\r\n\r\n"[..],
        b"CONNECT 127.0.0.1:5003 HTTP/2\r\n\r\n",
        b"CONNECT 127.0.0.1 HTTP/1.0\r\n\r\n",
        b"CONNECT 127.0.0.1:99999 HTTP/1.0\r\n\r\n",
        b"CONNECT  127.0.0.1:5003 HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"CONNECT \xff:1 HTTP/1.0\r\n\r\n",
    ] {
        assert_eq!(parse_connect_head(bad), Err(ConnectError::Malformed));
    }
    assert!(matches!(
        parse_connect_head(b"CONNECT 128.0.0.1:80 HTTP/1.0\r\n\r\n"),
        Err(ConnectError::Forbidden(_))
    ));
}

#[tokio::test]
async fn refuses_non_loopback_target() {
    let config = ShaperConfig {
        name: "test".into(),
        target: "10.0.0.1:9001".parse().unwrap(),
        spec: ShapeSpec::default(),
    };
    let err = run_shaper(listen().await, config).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn rate_cap_limits_throughput() {
    let spec = ShapeSpec {
        rate_in: Some(200 * 1024),
        ..ShapeSpec::default()
    };
    let shaper = shaper(sink_server().await, spec).await;
    let started = StdInstant::now();
    let stream = TcpStream::connect(shaper).await.unwrap();
    assert_eq!(send_to_sink(stream, 400 * 1024).await, 400 * 1024);
    // (400 KiB - 16 KiB burst) / 200 KiB/s = 1.92 s
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
}

#[tokio::test]
async fn connections_share_the_bucket() {
    let spec = ShapeSpec {
        rate_in: Some(200 * 1024),
        ..ShapeSpec::default()
    };
    let shaper = shaper(sink_server().await, spec).await;
    let started = StdInstant::now();
    let transfers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(shaper).await.unwrap();
                send_to_sink(stream, 200 * 1024).await
            })
        })
        .collect();
    for transfer in transfers {
        assert_eq!(transfer.await.unwrap(), 200 * 1024);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
}

#[tokio::test]
async fn delay_applies_in_both_directions() {
    let spec = ShapeSpec {
        delay_in_us: 100_000,
        delay_out_us: 100_000,
        ..ShapeSpec::default()
    };
    let shaper = shaper(echo_server().await, spec).await;
    let mut stream = TcpStream::connect(shaper).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for _ in 0..2 {
        let started = StdInstant::now();
        stream.write_all(b"x").await.unwrap();
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(&byte, b"x");
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
}

#[tokio::test]
async fn delay_does_not_throttle_below_rate() {
    // Without pipelining, one 16 KiB chunk per 50 ms would be 320 KiB/s.
    let spec = ShapeSpec {
        rate_in: Some(2 * 1024 * 1024),
        delay_in_us: 50_000,
        ..ShapeSpec::default()
    };
    let shaper = shaper(sink_server().await, spec).await;
    let started = StdInstant::now();
    let stream = TcpStream::connect(shaper).await.unwrap();
    assert_eq!(send_to_sink(stream, 2 * 1024 * 1024).await, 2 * 1024 * 1024);
    // About 1 s plus the delay; 6.4 s without pipelining.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn token_bucket_lends_and_waits() {
    let start = Instant::now();
    let mut bucket = TokenBucket::new(100 * 1024);
    // The burst goes out at once...
    assert_eq!(bucket.reserve(16 * 1024, start), start);
    // ...then each reservation waits for its bytes.
    let at = bucket.reserve(10 * 1024, start);
    assert_eq!(at - start, Duration::from_millis(100));
    let at = bucket.reserve(10 * 1024, start);
    assert_eq!(at - start, Duration::from_millis(200));
    // Idle time refills the bucket, but only up to the burst.
    let later = start + Duration::from_secs(10);
    assert_eq!(bucket.reserve(16 * 1024, later), later);
    assert!(bucket.reserve(1, later) > later);
}

#[test]
fn queue_cap_bounds() {
    assert_eq!(queue_cap(None, Duration::ZERO), 256 * 1024);
    assert_eq!(queue_cap(Some(1 << 30), Duration::ZERO), 256 * 1024);
    assert_eq!(
        queue_cap(Some(1024), Duration::from_millis(100)),
        256 * 1024
    );
    assert_eq!(
        queue_cap(Some(10 << 20), Duration::from_millis(100)),
        2 << 20
    );
    assert_eq!(queue_cap(Some(u64::MAX), Duration::MAX), 64 << 20);
    assert_eq!(queue_cap(None, Duration::from_millis(1)), 8 << 20);
}
