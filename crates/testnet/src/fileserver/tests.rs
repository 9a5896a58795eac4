//! Tests of [`super`]: generated file contents, request and upload parsing, and the server end to end.

use super::*;

/// Starts a file server on an ephemeral loopback port.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(run_fileserver(listener));
    addr
}

/// Sends `request` as is, half-closes, and returns the status code, the headers
/// (lowercased names) and the body, read until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&response[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    (status, headers, response[end + 4..].to_vec())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

#[test]
fn fill_is_deterministic_and_offset_consistent() {
    let mut full = vec![0; 1000];
    fill(7, 0, &mut full);
    let mut again = vec![0; 1000];
    fill(7, 0, &mut again);
    assert_eq!(full, again);
    for offset in 0..40 {
        for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 100, 901] {
            let mut part = vec![0; len];
            fill(7, offset as u64, &mut part);
            assert_eq!(
                part,
                full[offset..offset + len],
                "offset {offset} len {len}"
            );
        }
    }
    // Other seeds give other bytes, not a shifted copy.
    let mut other = vec![0; 1000];
    fill(8, 0, &mut other);
    assert_ne!(other, full);
    assert!(!full.windows(16).any(|w| w == &other[..16]));
    // Far offsets work without wrapping problems.
    let mut far = [0; 13];
    fill(1, u64::MAX - 5, &mut far);
    fill(1, (1 << 40) - 3, &mut far);
    // Not all zero, nor constant.
    assert!(full.iter().any(|&b| b != full[0]));
}

#[test]
fn expected_sha256_matches_fill() {
    for size in [0, 1, 7, 8, 9, 100_000, 3 * 65_536 + 5] {
        let mut bytes = vec![0; size];
        fill(3, 0, &mut bytes);
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(expected_sha256(size as u64, 3), digest, "size {size}");
    }
    assert_eq!(
        hex(&expected_sha256(0, 0)),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn helpers() {
    assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    assert_eq!(file_path(1000, 7), "/bytes/1000?seed=7");
    assert_eq!(parse_seed(""), Some(0));
    assert_eq!(parse_seed("seed=12"), Some(12));
    assert_eq!(parse_seed("x=1&seed=12"), Some(12));
    assert_eq!(parse_seed("seed=-1"), None);
    assert_eq!(parse_seed("seed=1&seed=2"), None);
    assert_eq!(parse_seed("seed="), None);
}

#[test]
fn parses_requests() {
    let parse = |s: &str| parse_request(s.as_bytes());
    assert_eq!(
        parse("GET /bytes/10 HTTP/1.1\r\nHost: x"),
        Ok(Request::Bytes {
            size: 10,
            seed: 0,
            head: false
        })
    );
    assert_eq!(
        parse("HEAD /sha256/10?seed=4 HTTP/1.0"),
        Ok(Request::Sha256 {
            size: 10,
            seed: 4,
            head: true
        })
    );
    assert_eq!(
        parse(&format!("GET /bytes/{MAX_SIZE} HTTP/1.1")),
        Ok(Request::Bytes {
            size: MAX_SIZE,
            seed: 0,
            head: false
        })
    );
    for bad in [
        "",
        "GET",
        "GET /bytes/10",
        "GET /bytes/10 HTTP/2.0",
        "GET  /bytes/10 HTTP/1.1",
        "GET /bytes/10 HTTP/1.1\r\nno colon",
        "GET /bytes/ HTTP/1.1",
        "GET /bytes/+10 HTTP/1.1",
        "GET /bytes/1x HTTP/1.1",
        "GET /bytes/99999999999999999999999 HTTP/1.1",
        "GET /bytes/10?seed=x HTTP/1.1",
        "get /bytes/10 HTTP/1.1",
        "GET bytes/10 HTTP/1.1",
    ] {
        assert_eq!(parse(bad), Err(Refusal::BadRequest), "{bad:?}");
    }
    assert_eq!(
        parse(&format!("GET /bytes/{} HTTP/1.1", MAX_SIZE + 1)),
        Err(Refusal::BadRequest)
    );
    assert_eq!(parse("GET / HTTP/1.1"), Err(Refusal::NotFound));
    assert_eq!(parse("GET /bytes HTTP/1.1"), Err(Refusal::NotFound));
    assert_eq!(
        parse("POST /bytes/1 HTTP/1.1"),
        Err(Refusal::MethodNotAllowed { allow: "GET, HEAD" })
    );
    assert_eq!(
        parse_request(b"GET /\xff HTTP/1.1"),
        Err(Refusal::BadRequest)
    );
}

#[test]
fn parses_uploads() {
    let parse = |s: &str| parse_request(s.as_bytes());
    let upload = |size, seed| Ok(Request::Upload { size, seed });
    assert_eq!(
        parse("POST /upload/10?seed=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 10"),
        upload(10, 3)
    );
    assert_eq!(
        parse("POST /upload/0 HTTP/1.0\r\ncontent-length:\t0 "),
        upload(0, 0)
    );
    // A repeated header with the same value is fine.
    assert_eq!(
        parse("POST /upload/5 HTTP/1.1\r\nContent-Length: 5\r\nCONTENT-LENGTH: 5"),
        upload(5, 0)
    );
    assert_eq!(
        parse(&format!(
            "POST /upload/{MAX_SIZE} HTTP/1.1\r\nContent-Length: {MAX_SIZE}"
        )),
        upload(MAX_SIZE, 0)
    );
    for bad in [
        "POST /upload/10 HTTP/1.1\r\nContent-Length: 11",
        "POST /upload/10 HTTP/1.1\r\nContent-Length: +10",
        "POST /upload/10 HTTP/1.1\r\nContent-Length: ",
        "POST /upload/10 HTTP/1.1\r\nContent-Length: 10, 10",
        "POST /upload/10 HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 9",
        "POST /upload/x HTTP/1.1\r\nContent-Length: 10",
        "POST /upload/10?seed=y HTTP/1.1\r\nContent-Length: 10",
    ] {
        assert_eq!(parse(bad), Err(Refusal::BadRequest), "{bad:?}");
    }
    let too_big = MAX_SIZE + 1;
    assert_eq!(
        parse(&format!(
            "POST /upload/{too_big} HTTP/1.1\r\nContent-Length: {too_big}"
        )),
        Err(Refusal::BadRequest)
    );
    assert_eq!(
        parse("POST /upload/10 HTTP/1.1\r\nHost: x"),
        Err(Refusal::LengthRequired)
    );
    assert_eq!(
        parse("POST /upload/10 HTTP/1.1\r\nTransfer-Encoding: chunked"),
        Err(Refusal::NotImplemented)
    );
    assert_eq!(
        parse("POST /upload/10 HTTP/1.1\r\nContent-Length: 10\r\ntransfer-encoding: chunked"),
        Err(Refusal::NotImplemented)
    );
    assert_eq!(
        parse("GET /upload/10 HTTP/1.1"),
        Err(Refusal::MethodNotAllowed { allow: "POST" })
    );
    assert_eq!(parse("POST /uploads HTTP/1.1"), Err(Refusal::NotFound));
    assert_eq!(upload_path(1000, 7), "/upload/1000?seed=7");
}

/// The head and body of an upload of the file of `size` bytes for `seed`.
fn upload_request(size: u64, seed: u64) -> Vec<u8> {
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n",
        upload_path(size, seed)
    )
    .into_bytes();
    let start = request.len();
    request.resize(start + size as usize, 0);
    fill(seed, 0, &mut request[start..]);
    request
}

/// Checks an upload's answer against the file of `size` bytes for `seed`
/// and returns the microseconds it reports.
fn check_answer(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    size: u64,
    seed: u64,
) -> u64 {
    assert_eq!(status, 200);
    assert_eq!(header(headers, "content-type"), Some("text/plain"));
    let body = std::str::from_utf8(body).unwrap();
    assert_eq!(
        header(headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    let line = body.strip_suffix('\n').unwrap();
    assert!(!line.contains('\n'), "{body:?}");
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "{body:?}");
    assert_eq!(fields[0], hex(&expected_sha256(size, seed)));
    assert_eq!(fields[1], size.to_string());
    fields[2].parse().unwrap()
}

#[tokio::test]
async fn receives_uploads() {
    let addr = server().await;
    // Large (many reads), small (the body comes with the head) and empty.
    for (size, seed) in [(1_000_000, 7), (100, 3), (0, 0)] {
        let (status, headers, body) = exchange(addr, &upload_request(size, seed)).await;
        let micros = check_answer(status, &headers, &body, size, seed);
        if size == 0 {
            assert_eq!(micros, 0);
        }
    }
    // A different body gets a different digest: the server hashes what
    // arrives, whatever the seed in the path says.
    let mut request = upload_request(1000, 1);
    let body_start = request.len() - 1000;
    fill(2, 0, &mut request[body_start..]);
    let (status, _, body) = exchange(addr, &request).await;
    assert_eq!(status, 200);
    let want = format!("{} 1000 ", hex(&expected_sha256(1000, 2)));
    assert!(String::from_utf8(body).unwrap().starts_with(&want));
}

#[tokio::test]
async fn receives_uploads_in_small_pieces() {
    let addr = server().await;
    let size = 200_000;
    let request = upload_request(size, 9);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    // Pieces of varying sizes, some splitting the head, one holding the
    // end of the head and the start of the body; a pause in the middle of
    // the body must show in the server's timing.
    let pieces = [1, 7, 100, 1500, 3, 64, 999];
    let mut at = 0;
    let mut writes = 0;
    while at < request.len() {
        let n = pieces[writes % pieces.len()].min(request.len() - at);
        stream.write_all(&request[at..at + n]).await.unwrap();
        at += n;
        writes += 1;
        if writes % 50 == 0 {
            tokio::task::yield_now().await;
        }
        if writes == 300 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    assert!(writes > 300);
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&response[..end]).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let micros = check_answer(200, &headers, &response[end + 4..], size, 9);
    assert!(micros >= 30_000, "{micros} µs despite a 30 ms pause");
}

#[tokio::test]
async fn refuses_bad_uploads() {
    let addr = server().await;
    let post = |extra: &str| {
        format!("POST /upload/10?seed=1 HTTP/1.1\r\nHost: x\r\n{extra}\r\n0123456789").into_bytes()
    };
    let (status, _, _) = exchange(addr, &post("Content-Length: 9\r\n")).await;
    assert_eq!(status, 400);
    let (status, _, _) = exchange(addr, &post("")).await;
    assert_eq!(status, 411);
    let (status, _, _) = exchange(addr, &post("Transfer-Encoding: chunked\r\n")).await;
    assert_eq!(status, 501);
    let (status, headers, _) = exchange(addr, &get("/upload/10")).await;
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("POST"));
    let (status, headers, _) = exchange(addr, &post("Content-Length: 10\r\n")[1..]).await;
    assert_eq!(status, 405, "OST is not a method of /upload");
    assert_eq!(header(&headers, "allow"), Some("POST"));
    // The same request with the right length is fine.
    let (status, _, body) = exchange(addr, &post("Content-Length: 10\r\n")).await;
    assert_eq!(status, 200);
    let want = format!("{} 10 ", hex(&Sha256::digest(b"0123456789")));
    assert!(String::from_utf8(body).unwrap().starts_with(&want));
}

#[tokio::test]
async fn survives_uploads_that_stop_early() {
    let addr = server().await;
    let request = upload_request(1_000_000, 4);
    let head_len = request.len() - 1_000_000;
    // Half of the body, then a half-close: the server drops the
    // connection without an answer, and does not wait for the rest.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&request[..head_len + 500_000])
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the server keeps an abandoned upload open")
        .unwrap();
    assert!(
        response.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    // A client that vanishes after a little of the body.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request[..head_len + 1000]).await.unwrap();
    drop(stream);
    // The server still answers.
    let (status, headers, body) = exchange(addr, &upload_request(5000, 4)).await;
    check_answer(status, &headers, &body, 5000, 4);
}

#[tokio::test]
async fn upload_bodies_with_early_bytes_stalls_and_extra_bytes() {
    let mut all = vec![0; 10_000];
    fill(5, 0, &mut all);
    let digest = |bytes: &[u8]| -> [u8; 32] { Sha256::digest(bytes).into() };
    // Part with the head, the rest from the stream, then bytes past the
    // body that are not read.
    let (mut client, mut server) = tokio::io::duplex(1 << 16);
    client.write_all(&all[3000..]).await.unwrap();
    client.write_all(b"next request").await.unwrap();
    let got = receive_upload(&mut server, &all[..3000], 10_000, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.sha256, digest(&all));
    assert_eq!(got.bytes, 10_000);
    let mut after = [0; 12];
    server.read_exact(&mut after).await.unwrap();
    assert_eq!(&after, b"next request");
    // Everything with the head, and more than the body.
    let got = receive_upload(&mut server, &all, 4000, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.sha256, digest(&all[..4000]));
    assert_eq!((got.bytes, got.micros), (4000, 0));
    assert_eq!(
        got.answer(),
        format!("{} 4000 0\n", hex(&digest(&all[..4000])))
    );
    // A stall ends the upload without an answer.
    client.write_all(&all[..10]).await.unwrap();
    let started = Instant::now();
    let got = receive_upload(&mut server, &[], 100, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(got, None);
    assert!(started.elapsed() >= Duration::from_millis(200));
    // So does the end of the stream.
    drop(client);
    let got = receive_upload(&mut server, &[], 100, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, None);
}

#[tokio::test]
async fn serves_files_and_digests() {
    let addr = server().await;
    let expected = hex(&expected_sha256(1_000_000, 7));

    let (status, headers, body) = exchange(addr, &get(&file_path(1_000_000, 7))).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), Some("1000000"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(body.len(), 1_000_000);
    assert_eq!(hex(&Sha256::digest(&body)), expected);

    let (status, headers, body) = exchange(addr, &get("/sha256/1000000?seed=7")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
    assert_eq!(String::from_utf8(body).unwrap(), expected);

    // The default seed is 0.
    let (status, _, body) = exchange(addr, &get("/bytes/100")).await;
    assert_eq!(status, 200);
    let mut want = vec![0; 100];
    fill(0, 0, &mut want);
    assert_eq!(body, want);

    // HEAD: headers only.
    let request = b"HEAD /bytes/5000 HTTP/1.0\r\n\r\n";
    let (status, headers, body) = exchange(addr, request).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), Some("5000"));
    assert!(body.is_empty());

    let (status, _, body) = exchange(addr, &get("/bytes/0")).await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
}

#[tokio::test]
async fn refuses_bad_requests() {
    let addr = server().await;
    let (status, _, _) = exchange(addr, b"\x16\x03\x01 garbage\r\n\r\n").await;
    assert_eq!(status, 400);
    let (status, _, _) = exchange(addr, &get("/nothing/here")).await;
    assert_eq!(status, 404);
    let (status, _, _) = exchange(addr, &get("/bytes/2000000000000")).await;
    assert_eq!(status, 400);
    let (status, headers, _) = exchange(addr, b"DELETE /bytes/1 HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));

    // A request head over 8 KiB.
    let mut big = b"GET /bytes/1 HTTP/1.1\r\nX-Filler: ".to_vec();
    big.resize(MAX_HEAD + 1000, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let (status, _, _) = exchange(addr, &big).await;
    assert_eq!(status, 431);

    // A client that closes mid-head gets a 400 and the server survives.
    let (status, _, _) = exchange(addr, b"GET /bytes/1 HT").await;
    assert_eq!(status, 400);
    let (status, _, _) = exchange(addr, &get("/bytes/1")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn survives_clients_that_leave_early() {
    let addr = server().await;
    // Ask for a large file and hang up after a little of it.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&get("/bytes/100000000")).await.unwrap();
    let mut buf = [0; 1000];
    stream.read_exact(&mut buf).await.unwrap();
    drop(stream);
    // Connect and close without a word.
    drop(TcpStream::connect(addr).await.unwrap());
    let (status, _, body) = exchange(addr, &get("/bytes/10")).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 10);
}
