//! HTTP responses from DirPorts, read as the client reads them
//! (`braid_client::http::read_response`, the read loop of `http::get`):
//! the input's response bytes, repeated up to 64 times so that responses
//! pass the head limit (16 KiB) and the body limit, handed over in reads
//! of arbitrary sizes; `max_body` chosen by the input (0 to 8 KiB).
//!
//! Invariants: the future completes at once on a reader that never blocks;
//! a response over the head limit plus `max_body` is refused as too large,
//! having buffered at most one read past that limit; an accepted body is
//! exactly the bytes after the first blank line of a response whose status
//! line is "HTTP/1.x 200", at most `max_body` long; a 200 response with a
//! longer body is refused as too large.
#![no_main]

use std::future::Future as _;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use braid_client::FetchError;
use braid_client::http::{MAX_HEAD, READ_CHUNK, read_response};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// A reader that hands out `data` in reads of the sizes in `sizes`
/// (cycled; 0 means as much as asked), never blocking.
struct Reads<'a> {
    data: &'a [u8],
    sizes: &'a [u16],
    next: usize,
    consumed: usize,
}

impl AsyncRead for Reads<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = match self.sizes.get(self.next % self.sizes.len().max(1)) {
            Some(&s) if s > 0 => usize::from(s),
            _ => usize::MAX,
        };
        self.next += 1;
        let n = size
            .min(buf.remaining())
            .min(self.data.len() - self.consumed);
        let start = self.consumed;
        buf.put_slice(&self.data[start..start + n]);
        self.consumed += n;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: (u8, u8, Vec<u16>, &[u8])| {
    let (max_sel, reps, sizes, data) = input;
    let max_body = usize::from(max_sel) * 32;
    let response = data.repeat(1 + usize::from(reps % 64));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let mut reader = Reads {
        data: &response,
        sizes: &sizes,
        next: 0,
        consumed: 0,
    };
    let result = {
        let mut fut = pin!(read_response(addr, &mut reader, max_body));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("read_response waited on a reader that never blocks"),
        }
    };
    let limit = MAX_HEAD + max_body;
    assert!(
        reader.consumed <= limit + READ_CHUNK,
        "read {} bytes with a limit of {limit}",
        reader.consumed
    );
    if response.len() > limit {
        assert!(
            matches!(result, Err(FetchError::TooLarge { .. })),
            "a {}-byte response with limit {limit}: {result:?}",
            response.len()
        );
        return;
    }
    assert_eq!(reader.consumed, response.len());
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n");
    // The status line as parse_response reads it.
    let ok_status = head_end.is_some_and(|end| {
        let Ok(head) = std::str::from_utf8(&response[..end]) else {
            return false;
        };
        let mut parts = head.lines().next().unwrap_or_default().splitn(3, ' ');
        parts.next().is_some_and(|v| v.starts_with("HTTP/1."))
            && parts.next().and_then(|c| c.parse::<u16>().ok()) == Some(200)
    });
    match result {
        Ok(body) => {
            let end = head_end.expect("an accepted response has a blank line");
            assert!(ok_status, "accepted a response whose status is not 200");
            assert!(body.len() <= max_body);
            assert_eq!(body.as_bytes(), &response[end + 4..]);
        }
        Err(FetchError::TooLarge { .. }) => {
            let end = head_end.expect("a body too large follows a blank line");
            assert!(
                response.len() - end - 4 > max_body,
                "refused a body within the limit"
            );
        }
        Err(_) => {
            if let Some(end) = head_end
                && ok_status
                && end <= MAX_HEAD
                && std::str::from_utf8(&response[..end]).is_ok()
            {
                // A 200 head within the limit is refused only for its
                // Content-Encoding or a body that is too long or not UTF-8.
                let body = &response[end + 4..];
                let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                assert!(
                    head.contains("content-encoding")
                        || body.len() > max_body
                        || std::str::from_utf8(body).is_err(),
                    "a plain 200 response was refused"
                );
            }
        }
    }
});
