//! Relay cell framing, format v0 (`braid_core::circuit::relay_cell`): an
//! arbitrary 509-byte plaintext body, as a hop would hand it up once
//! recognized.
//!
//! Invariants: no panic; what decodes and re-encodes decodes again to the
//! same stream and command, and re-encoding is then stable (same header and
//! data bytes); where tor-cell's own parser also accepts the body, both
//! agree on stream and command.
#![no_main]

use braid_core::circuit::relay_cell::{self, HEADER_LEN};
use braid_core::crypto::{CELL_BODY_LEN, RelayCellBody};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::relaycell::{AnyRelayMsgOuter, RelayCellFormat, RelayMsg as _};

fuzz_target!(|data: &[u8]| {
    let mut body: RelayCellBody = [0; CELL_BODY_LEN];
    let n = data.len().min(CELL_BODY_LEN);
    body[..n].copy_from_slice(&data[..n]);

    let ours = relay_cell::decode(&body);
    let theirs = AnyRelayMsgOuter::decode_singleton(RelayCellFormat::V0, Box::new(body));
    if let (Ok((stream, msg)), Ok(outer)) = (&ours, &theirs) {
        assert_eq!(msg.cmd(), outer.cmd());
        assert_eq!(
            stream.map_or(0, |s| s.get()),
            outer.stream_id().map_or(0, u16::from)
        );
    }
    let Ok((stream, msg)) = ours else {
        return;
    };
    assert_eq!(relay_cell::stream_id(&body), stream);
    assert_eq!(relay_cell::command(&body), msg.cmd());
    let cmd = msg.cmd();
    let Ok(once) = relay_cell::encode(stream, msg, &mut StdRng::seed_from_u64(1)) else {
        return;
    };
    let (stream2, msg2) = relay_cell::decode(&once).expect("own encoding decodes");
    assert_eq!((stream2, msg2.cmd()), (stream, cmd));
    let twice = relay_cell::encode(stream2, msg2, &mut StdRng::seed_from_u64(1))
        .expect("what was encoded once encodes again");
    let len = usize::from(u16::from_be_bytes([once[9], once[10]]));
    assert_eq!(
        once[..HEADER_LEN + len],
        twice[..HEADER_LEN + len],
        "re-encoding not stable for {cmd}"
    );
});
