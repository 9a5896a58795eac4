//! A directory client's side of a fetch (dir-spec §4, §5): the HTTP
//! request it sends, the response it reads back with its compression
//! undone under a hard cap, and consensus diffs. Pure functions: the
//! driver moves the bytes, [`crate::bootstrap`] decides what to ask.
//!
//! - [`compress`]: `Accept-Encoding`, deflate, gzip and zstd bodies, the
//!   compression bomb cap.
//! - [`http`]: the GET request and the response parser.
//! - [`diff`]: `X-Or-Diff-From-Consensus` and applying a consensus diff.

pub mod compress;
pub mod diff;
pub mod http;

pub use compress::{ACCEPT_ENCODING, DecodeError, Encoding};
pub use http::{Request, Response, ResponseError};
