//! Channel cell framing (`braid_core::channel::CellCodec`): arbitrary bytes
//! fed in arbitrary chunks, before and after link version negotiation, with
//! arbitrary limits; cells taken with `poll_cell` until none is left.
//!
//! Invariants: no panic; the undecoded input never exceeds the buffer limit
//! (and a refused `handle_bytes` appends nothing); when `poll_cell` wants
//! more input, less than one largest cell is buffered; a VERSIONS cell
//! switches the framing as a handshake would; a parsed cell that
//! re-encodes decodes again to the same command.
#![no_main]

use braid_core::channel::CellCodec;
use braid_core::channel::codec::{FIXED_CELL_LEN, VAR_CELL_HEADER_LEN};
use libfuzzer_sys::fuzz_target;
use tor_cell::chancell::ChanMsg as _;
use tor_cell::chancell::msg::AnyChanMsg;

fuzz_target!(|input: (u8, u16, u32, Vec<u16>, &[u8])| {
    let (flags, max_var, max_buffered, chunks, data) = input;
    let max_var = usize::from(max_var);
    let max_buffered = (max_buffered % (1 << 20)) as usize;
    let mut codec = CellCodec::new();
    if flags & 1 != 0 {
        codec = codec.with_max_var_body_len(max_var);
    }
    if flags & 2 != 0 {
        codec = codec.with_max_buffered(max_buffered);
    }
    // What the builders promise: the limit is never below the largest
    // accepted cell.
    let var_limit = if flags & 1 != 0 {
        max_var.min(65535)
    } else {
        65535
    };
    let buf_limit = if flags & 2 != 0 {
        max_buffered.max(VAR_CELL_HEADER_LEN + var_limit)
    } else {
        (256 * 1024_usize).max(VAR_CELL_HEADER_LEN + var_limit)
    };
    let largest_cell = FIXED_CELL_LEN.max(VAR_CELL_HEADER_LEN + var_limit);
    if flags & 4 != 0 {
        let v = if flags & 8 != 0 { 5 } else { 4 };
        codec.set_link_version(v).expect("4 and 5 are supported");
    }
    // Unsupported versions are refused without changing anything.
    let before = codec.link_version();
    assert!(codec.set_link_version(u16::from(flags) << 3).is_err());
    assert_eq!(codec.link_version(), before);

    let mut rest = data;
    let mut sizes = chunks.iter().copied().cycle();
    'feed: while !rest.is_empty() {
        let n = sizes
            .next()
            .map_or(rest.len(), |s| usize::from(s).max(1))
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let held = codec.buffered_len();
        if codec.handle_bytes(chunk).is_err() {
            assert_eq!(codec.buffered_len(), held, "refused input was kept");
            assert!(held + chunk.len() > buf_limit);
            break;
        }
        assert!(codec.buffered_len() <= buf_limit);
        loop {
            match codec.poll_cell() {
                Ok(Some(cell)) => {
                    if let AnyChanMsg::Versions(v) = cell.msg()
                        && codec.link_version().is_none()
                    {
                        match v.best_shared_link_protocol(&[4, 5]) {
                            Some(ver) => codec.set_link_version(ver).expect("supported"),
                            None => break 'feed,
                        }
                        continue;
                    }
                    if codec.link_version().is_some() {
                        let cmd = cell.msg().cmd();
                        let mut out = Vec::new();
                        if codec.encode_cell(cell, &mut out).is_ok() {
                            let mut again = CellCodec::new();
                            again.set_link_version(5).expect("supported");
                            again.handle_bytes(&out).expect("one cell fits");
                            let back = again
                                .poll_cell()
                                .expect("own encoding parses")
                                .expect("own encoding is complete");
                            assert_eq!(back.msg().cmd(), cmd);
                        }
                    }
                }
                Ok(None) => {
                    assert!(codec.buffered_len() < largest_cell);
                    break;
                }
                // A framing or parse error ends the channel.
                Err(_) => break 'feed,
            }
        }
    }
    assert!(codec.buffered_len() <= buf_limit);
});
