//! Compressed directory bodies (dir-spec §4: `Accept-Encoding` and
//! `Content-Encoding`, a `.z` URL for deflate): which encodings we accept,
//! recognising one from its magic bytes as C-tor does when the header and
//! the body disagree, and decoding with a hard cap on the size that comes
//! out, so a compression bomb is an error and not an allocation.

use std::fmt;
use std::io::Read;

use thiserror::Error;

/// The `Accept-Encoding` a Braid client sends on one-hop directory
/// requests, best first (C-tor's `client_meth_pref` less LZMA, which we do
/// not decode).
pub const ACCEPT_ENCODING: &str = "x-zstd, deflate, gzip, identity";

/// Output of at most this many bytes is always allowed, whatever the ratio
/// (C-tor `CHECK_FOR_COMPRESSION_BOMB_AFTER`).
pub const BOMB_CHECK_AFTER: usize = 1 << 20;
/// Past [`BOMB_CHECK_AFTER`], output more than this many times the input is
/// a compression bomb (C-tor `MAX_UNCOMPRESSION_FACTOR`).
pub const MAX_RATIO: usize = 25;
/// The largest zstd window we let a frame ask for.
const MAX_ZSTD_WINDOW: u64 = 16 << 20;
/// Bytes decoded at a time.
const CHUNK: usize = 64 * 1024;

/// A content encoding of a directory response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// zlib (RFC 1950), what C-tor calls deflate and serves for `.z` URLs.
    Deflate,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard (RFC 8878), `x-zstd`.
    Zstd,
}

impl Encoding {
    /// The encoding named by a `Content-Encoding` value (C-tor's names);
    /// `None` for one we do not decode (`x-tor-lzma`, anything else).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Self::Identity),
            "deflate" => Some(Self::Deflate),
            "gzip" | "x-gzip" => Some(Self::Gzip),
            "x-zstd" | "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The encoding a body's first bytes announce, if any (C-tor
    /// `detect_compression_method`): the zlib header, the gzip magic, the
    /// zstd frame magic.
    pub fn sniff(body: &[u8]) -> Option<Self> {
        match body {
            [0x1f, 0x8b, ..] => Some(Self::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Self::Zstd),
            // CMF 0x78 (deflate, 32 KiB window) and a header checksum that
            // holds (RFC 1950 §2.2).
            [0x78, flg, ..] if (0x7800_u16 | u16::from(*flg)).is_multiple_of(31) => {
                Some(Self::Deflate)
            }
            _ => None,
        }
    }

    /// Its `Content-Encoding` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Deflate => "deflate",
            Self::Gzip => "gzip",
            Self::Zstd => "x-zstd",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not valid data of its encoding (or is cut short).
    #[error("bad {encoding} data: {detail}")]
    Corrupt {
        /// The encoding tried.
        encoding: Encoding,
        /// What the decoder said.
        detail: String,
    },
    /// Decoding produced more than the cap: the document limit, or
    /// [`MAX_RATIO`] times the input past [`BOMB_CHECK_AFTER`].
    #[error(
        "compression bomb: {encoding} body of {input} bytes decodes to more than {limit} bytes"
    )]
    Bomb {
        /// The encoding.
        encoding: Encoding,
        /// Compressed bytes.
        input: usize,
        /// The cap that was passed.
        limit: usize,
    },
}

/// The most `input` compressed bytes may decode to: `max_output`, and no
/// more than [`MAX_RATIO`] times the input once past [`BOMB_CHECK_AFTER`]
/// (C-tor `tor_compress_is_compression_bomb`).
pub fn output_limit(input: usize, max_output: usize) -> usize {
    max_output.min(BOMB_CHECK_AFTER.max(input.saturating_mul(MAX_RATIO)))
}

/// Decode `body` as `encoding`, producing at most [`output_limit`] bytes.
/// Identity bodies are returned as they are (up to `max_output`).
pub fn decode(encoding: Encoding, body: &[u8], max_output: usize) -> Result<Vec<u8>, DecodeError> {
    let limit = match encoding {
        Encoding::Identity => max_output,
        _ => output_limit(body.len(), max_output),
    };
    let bomb = || DecodeError::Bomb {
        encoding,
        input: body.len(),
        limit,
    };
    let corrupt = |e: &dyn fmt::Display| DecodeError::Corrupt {
        encoding,
        detail: e.to_string(),
    };
    let out = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(bomb());
            }
            return Ok(body.to_vec());
        }
        Encoding::Deflate => {
            read_capped(flate2::read::ZlibDecoder::new(body), limit).map_err(|e| corrupt(&e))?
        }
        Encoding::Gzip => {
            read_capped(flate2::read::MultiGzDecoder::new(body), limit).map_err(|e| corrupt(&e))?
        }
        Encoding::Zstd => decode_zstd(body, limit).map_err(|e| corrupt(&e))?,
    };
    out.ok_or_else(bomb)
}

/// `data` encoded as `encoding`, for a directory cache's answers; `None`
/// for zstd, which we decode but do not make.
pub fn encode(encoding: Encoding, data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    // Fast levels: a cache compresses answers as it serves them.
    let level = flate2::Compression::fast();
    match encoding {
        Encoding::Identity => Some(data.to_vec()),
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).ok()?;
            e.finish().ok()
        }
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).ok()?;
            e.finish().ok()
        }
        Encoding::Zstd => None,
    }
}

/// Read `r` to its end: `Some(bytes)` if they were at most `limit`,
/// `None` as soon as there are more (never holding more than `limit` plus
/// one chunk).
fn read_capped(mut r: impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut chunk = vec![0_u8; CHUNK];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(Some(out));
        }
        if out.len().saturating_add(n) > limit {
            return Ok(None);
        }
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Zstandard frames one after the other (RFC 8878 §3.1), within `limit`
/// bytes in all.
fn decode_zstd(body: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut rest = body;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
            &mut rest,
            MAX_ZSTD_WINDOW,
        )
        .map_err(std::io::Error::other)?;
        let left = limit.saturating_sub(out.len());
        match read_capped(decoder, left)? {
            Some(frame) => out.extend_from_slice(&frame),
            None => return Ok(None),
        }
    }
    if body.is_empty() {
        return Err(std::io::Error::other("empty zstd body"));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::io::Write as _;

    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"router status line\n"[i % 19]).collect()
    }

    #[test]
    fn each_encoding_round_trips_and_is_recognised() {
        let data = text(300_000);
        for (enc, body) in [
            (Encoding::Deflate, zlib(&data)),
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Zstd, zstd(&data)),
        ] {
            assert_eq!(Encoding::sniff(&body), Some(enc));
            assert_eq!(Encoding::from_name(enc.name()), Some(enc));
            assert_eq!(decode(enc, &body, 1 << 20).unwrap(), data, "{enc}");
        }
        assert_eq!(decode(Encoding::Identity, &data, 1 << 20).unwrap(), data);
        assert_eq!(Encoding::sniff(b"network-status-version 3"), None);
        assert_eq!(Encoding::from_name("x-tor-lzma"), None);
        // Two zstd frames back to back.
        let mut two = zstd(b"first ");
        two.extend(zstd(b"second"));
        assert_eq!(decode(Encoding::Zstd, &two, 100).unwrap(), b"first second");
    }

    #[test]
    fn what_a_cache_encodes_decodes_to_the_same() {
        let data = text(300_000);
        for enc in [Encoding::Identity, Encoding::Deflate, Encoding::Gzip] {
            let body = encode(enc, &data).unwrap();
            if enc != Encoding::Identity {
                assert_eq!(Encoding::sniff(&body), Some(enc));
                assert!(body.len() < data.len() / 2, "{enc}: {}", body.len());
            }
            assert_eq!(decode(enc, &body, 1 << 20).unwrap(), data, "{enc}");
        }
        assert_eq!(encode(Encoding::Zstd, &data), None);
        assert_eq!(
            decode(
                Encoding::Deflate,
                &encode(Encoding::Deflate, b"").unwrap(),
                10
            )
            .unwrap(),
            b""
        );
    }

    /// 64 MiB of zeros compress to a few KiB: every encoding stops at the
    /// cap (the document limit, or 25 times the input past 1 MiB) with a
    /// clear error, having held no more than the cap.
    #[test]
    fn a_compression_bomb_is_refused_at_the_cap() {
        let zeros = vec![0_u8; 64 << 20];
        for (enc, body) in [
            (Encoding::Deflate, zlib(&zeros)),
            (Encoding::Gzip, gzip(&zeros)),
            (Encoding::Zstd, zstd(&zeros)),
        ] {
            assert!(body.len() < 1 << 20, "{enc}: {}", body.len());
            let e = decode(enc, &body, 16 << 20).unwrap_err();
            assert!(
                matches!(e, DecodeError::Bomb { limit, .. } if limit == BOMB_CHECK_AFTER.max(body.len() * MAX_RATIO)),
                "{enc}: {e}"
            );
            assert!(e.to_string().contains("compression bomb"), "{e}");
        }
        // Within the ratio, the hard cap rules.
        let data = text(200_000);
        let e = decode(Encoding::Deflate, &zlib(&data), 100_000).unwrap_err();
        assert!(matches!(e, DecodeError::Bomb { limit: 100_000, .. }), "{e}");
        let e = decode(Encoding::Identity, &data, 100_000).unwrap_err();
        assert!(matches!(e, DecodeError::Bomb { .. }), "{e}");
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors() {
        let data = text(100_000);
        for (enc, body) in [
            (Encoding::Deflate, zlib(&data)),
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Zstd, zstd(&data)),
        ] {
            let cut = &body[..body.len() / 2];
            let e = decode(enc, cut, 1 << 20).unwrap_err();
            assert!(matches!(e, DecodeError::Corrupt { .. }), "{enc}: {e}");
            assert!(decode(enc, b"garbage that is not compressed", 1 << 20).is_err());
        }
        assert!(decode(Encoding::Zstd, b"", 10).is_err());
    }
}
