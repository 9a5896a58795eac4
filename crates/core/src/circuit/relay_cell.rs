//! Relay cell framing, format v0 (tor-spec §6.1).
//!
//! The plaintext body of a RELAY or RELAY_EARLY cell is
//!
//! ```text
//! Relay command   [1 byte]
//! 'Recognized'    [2 bytes]
//! StreamID        [2 bytes]
//! Digest          [4 bytes]
//! Length          [2 bytes]
//! Data            [Length bytes]
//! Padding         [PAYLOAD_LEN - 11 - Length bytes]
//! ```
//!
//! [`encode`] frames an outbound message, `recognized` and `digest` left
//! zero for the relay crypto to fill in; the padding is four zero bytes
//! then random bytes (tor-spec §6.1, proposal 289 §5: unpredictable cell
//! contents make SENDME tags unforgeable). [`decode`] parses a recognized
//! inbound body; the message bodies themselves are tor-cell's.

use rand::CryptoRng;
use tor_bytes::Reader;
use tor_cell::relaycell::msg::AnyRelayMsg;
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::error::RelayCellError;
use crate::crypto::{CELL_BODY_LEN, RelayCellBody};
use crate::ids::StreamId;

/// Bytes before the data: command, recognized, stream id, digest, length.
pub const HEADER_LEN: usize = 11;
/// The most data one relay cell carries: `PAYLOAD_LEN - 11` = 498.
pub const MAX_DATA_LEN: usize = CELL_BODY_LEN - HEADER_LEN;
/// Zero bytes between the data and the random padding (tor-spec §6.1).
const PADDING_ZEROS: usize = 4;

/// Where the fields lie.
const CMD: usize = 0;
/// Stream id (2 bytes).
const STREAM: std::ops::Range<usize> = 3..5;
/// Length (2 bytes).
const LENGTH: std::ops::Range<usize> = 9..11;

/// Whether `cmd` goes with a stream id (`Some(true)`), with stream id zero
/// (`Some(false)`), or either (`None`: SENDME, which is circuit-level with
/// stream 0 and stream-level otherwise, and commands we do not know).
fn wants_stream(cmd: RelayCmd) -> Option<bool> {
    let zero_ok = cmd.accepts_streamid_val(None);
    let nonzero_ok = cmd.accepts_streamid_val(tor_cell::relaycell::StreamId::new(1));
    match (zero_ok, nonzero_ok) {
        (true, false) => Some(false),
        (false, true) => Some(true),
        _ => None,
    }
}

/// Check that `cmd` may carry `stream` (tor-spec §6.1).
fn check_stream(cmd: RelayCmd, stream: Option<StreamId>) -> Result<(), RelayCellError> {
    let ok = match wants_stream(cmd) {
        Some(true) => stream.is_some(),
        Some(false) => stream.is_none(),
        None => true,
    };
    if ok {
        Ok(())
    } else {
        Err(RelayCellError::BadStreamId {
            cmd,
            stream: stream.map_or(0, StreamId::get),
        })
    }
}

/// Frame `msg` for `stream` (`None`: a circuit-level message, stream id 0)
/// into a plaintext relay cell body, `recognized` and `digest` zero,
/// padding from `rng`.
///
/// Errors (all local): the message does not fit in 498 bytes, tor-cell
/// cannot encode it, or its command does not go with `stream`.
pub fn encode<R: CryptoRng + ?Sized>(
    stream: Option<StreamId>,
    msg: AnyRelayMsg,
    rng: &mut R,
) -> Result<Box<RelayCellBody>, RelayCellError> {
    let cmd = msg.cmd();
    check_stream(cmd, stream)?;
    let mut data = Vec::with_capacity(MAX_DATA_LEN);
    msg.encode_onto(&mut data)
        .map_err(|e| RelayCellError::Encode {
            cmd,
            reason: e.to_string(),
        })?;
    if data.len() > MAX_DATA_LEN {
        return Err(RelayCellError::TooLong {
            cmd,
            len: data.len(),
            max: MAX_DATA_LEN,
        });
    }
    let len = u16::try_from(data.len()).map_err(|_| RelayCellError::TooLong {
        cmd,
        len: data.len(),
        max: MAX_DATA_LEN,
    })?;
    let mut body: RelayCellBody = [0_u8; CELL_BODY_LEN];
    body[CMD] = cmd.into();
    body[STREAM].copy_from_slice(&stream.map_or(0, StreamId::get).to_be_bytes());
    body[LENGTH].copy_from_slice(&len.to_be_bytes());
    let (_, rest) = body.split_at_mut(HEADER_LEN);
    let (payload, padding) = rest.split_at_mut(data.len());
    payload.copy_from_slice(&data);
    // tor-spec §6.1: "four zero-valued bytes, followed by as many random
    // bytes as will fit" (all zero if fewer than four bytes remain).
    if let Some(random) = padding.get_mut(PADDING_ZEROS..) {
        rng.fill_bytes(random);
    }
    Ok(Box::new(body))
}

/// The command of a plaintext body.
pub fn command(body: &RelayCellBody) -> RelayCmd {
    body[CMD].into()
}

/// The stream id of a plaintext body (`None` for zero).
pub fn stream_id(body: &RelayCellBody) -> Option<StreamId> {
    let [_, _, _, a, b, ..] = *body;
    StreamId::new(u16::from_be_bytes([a, b]))
}

/// Parse a recognized (decrypted, digest checked) body into its stream id
/// (`None` for 0) and message.
///
/// Commands tor-cell does not know decode as [`AnyRelayMsg::Unrecognized`]
/// (tor-spec §6.1: such cells are dropped by the caller, not fatal).
pub fn decode(body: &RelayCellBody) -> Result<(Option<StreamId>, AnyRelayMsg), RelayCellError> {
    let cmd = command(body);
    let stream = stream_id(body);
    let [_, _, _, _, _, _, _, _, _, hi, lo, ..] = *body;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_DATA_LEN {
        return Err(RelayCellError::LengthTooLarge {
            len,
            max: MAX_DATA_LEN,
        });
    }
    check_stream(cmd, stream)?;
    let data = body
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(RelayCellError::LengthTooLarge {
            len,
            max: MAX_DATA_LEN,
        })?;
    let mut r = Reader::from_slice(data);
    let msg =
        AnyRelayMsg::decode_from_reader(cmd, &mut r).map_err(|e| RelayCellError::Malformed {
            cmd,
            reason: e.to_string(),
        })?;
    if r.remaining() > 0 && (cmd == RelayCmd::CONFLUX_LINK || cmd == RelayCmd::CONFLUX_LINKED) {
        // tor-cell drops what follows the v1 payload: keep the whole body
        // for the Conflux layer, which reads Braid's extensions from it
        // (`conflux::ext::split`, Braid proposal 001 §2.2).
        let whole = tor_cell::relaycell::msg::Unrecognized::new(cmd, data.to_vec());
        return Ok((stream, AnyRelayMsg::Unrecognized(whole)));
    }
    Ok((stream, msg))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use proptest::prelude::*;
    use rand::SeedableRng as _;
    use tor_cell::chancell::msg::DestroyReason;
    use tor_cell::relaycell::msg::{Data, End, Sendme, Truncated};
    use tor_cell::relaycell::{AnyRelayMsgOuter, RelayCellFormat};

    use super::*;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn sid(n: u16) -> Option<StreamId> {
        StreamId::new(n)
    }

    #[test]
    fn data_cell_layout() {
        let msg = Data::new(b"hello").unwrap().into();
        let body = encode(sid(0x1234), msg, &mut rng()).unwrap();
        assert_eq!(body[0], 2);
        assert_eq!(&body[1..3], &[0, 0], "recognized");
        assert_eq!(&body[3..5], &[0x12, 0x34], "stream id");
        assert_eq!(&body[5..9], &[0, 0, 0, 0], "digest left for the crypto");
        assert_eq!(&body[9..11], &[0, 5], "length");
        assert_eq!(&body[11..16], b"hello");
        assert_eq!(&body[16..20], &[0, 0, 0, 0], "four zero bytes");
        assert!(body[20..].iter().any(|&b| b != 0), "random padding");
        // Two encodings differ in their padding only.
        let again = encode(sid(0x1234), Data::new(b"hello").unwrap().into(), &mut rng()).unwrap();
        let mut other_rng = rand::rngs::StdRng::seed_from_u64(8);
        let third = encode(
            sid(0x1234),
            Data::new(b"hello").unwrap().into(),
            &mut other_rng,
        )
        .unwrap();
        assert_eq!(body, again);
        assert_eq!(body[..20], third[..20]);
        assert_ne!(body[20..], third[20..]);
    }

    #[test]
    fn full_and_nearly_full_cells() {
        for n in [
            MAX_DATA_LEN,
            MAX_DATA_LEN - 1,
            MAX_DATA_LEN - 4,
            MAX_DATA_LEN - 5,
        ] {
            let payload = vec![0xab; n];
            let body = encode(sid(1), Data::new(&payload).unwrap().into(), &mut rng()).unwrap();
            assert_eq!(&body[11..11 + n], &payload[..]);
            let pad = &body[11 + n..];
            assert!(pad.iter().take(4).all(|&b| b == 0), "n = {n}");
            let (s, m) = decode(&body).unwrap();
            assert_eq!(s, sid(1));
            match m {
                AnyRelayMsg::Data(d) => assert_eq!(d.as_ref(), &payload[..]),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn agrees_with_tor_cell() {
        let msgs: Vec<(Option<StreamId>, AnyRelayMsg)> = vec![
            (sid(9), Data::new(&[1, 2, 3]).unwrap().into()),
            (sid(9), End::new_misc().into()),
            (None, Sendme::new_tag([7; 20]).into()),
            (sid(3), Sendme::new_empty().into()),
            (None, Truncated::new(DestroyReason::CONNECTFAILED).into()),
        ];
        for (stream, msg) in msgs {
            let cmd = msg.cmd();
            let ours = encode(stream, msg.clone(), &mut rng()).unwrap();
            // tor-cell parses our framing...
            let parsed =
                AnyRelayMsgOuter::decode_singleton(RelayCellFormat::V0, ours.clone()).unwrap();
            assert_eq!(parsed.cmd(), cmd);
            assert_eq!(parsed.stream_id().map(u16::from), stream.map(StreamId::get));
            // ...and we parse tor-cell's.
            let cell_stream = stream.and_then(|s| tor_cell::relaycell::StreamId::new(s.get()));
            let theirs = AnyRelayMsgOuter::new(cell_stream, msg)
                .encode(RelayCellFormat::V0, &mut rng())
                .unwrap();
            assert_eq!(&theirs[..11], &ours[..11]);
            let (s, m) = decode(&theirs).unwrap();
            assert_eq!(s, stream);
            assert_eq!(m.cmd(), cmd);
        }
    }

    #[test]
    fn malformed_bodies() {
        let mut body = *encode(sid(1), Data::new(b"x").unwrap().into(), &mut rng()).unwrap();
        body[9..11].copy_from_slice(&499_u16.to_be_bytes());
        assert_eq!(
            decode(&body).unwrap_err(),
            RelayCellError::LengthTooLarge { len: 499, max: 498 }
        );
        body[9..11].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            decode(&body),
            Err(RelayCellError::LengthTooLarge { .. })
        ));
        // DATA on stream 0.
        let mut body = *encode(sid(1), Data::new(b"x").unwrap().into(), &mut rng()).unwrap();
        body[3..5].fill(0);
        assert_eq!(
            decode(&body).unwrap_err(),
            RelayCellError::BadStreamId {
                cmd: RelayCmd::DATA,
                stream: 0
            }
        );
        // TRUNCATED on a stream.
        let mut body =
            *encode(None, Truncated::new(DestroyReason::NONE).into(), &mut rng()).unwrap();
        body[3..5].copy_from_slice(&[0, 4]);
        assert!(matches!(
            decode(&body),
            Err(RelayCellError::BadStreamId { stream: 4, .. })
        ));
        // An empty DATA message.
        let mut body = *encode(sid(1), Data::new(b"x").unwrap().into(), &mut rng()).unwrap();
        body[9..11].fill(0);
        assert!(matches!(
            decode(&body),
            Err(RelayCellError::Malformed {
                cmd: RelayCmd::DATA,
                ..
            })
        ));
        // A SENDME of an unknown version.
        let mut body = *encode(None, Sendme::new_empty().into(), &mut rng()).unwrap();
        body[9..11].copy_from_slice(&[0, 1]);
        body[11] = 9;
        assert!(decode(&body).unwrap_err().is_protocol_violation());
    }

    #[test]
    fn unknown_command_is_not_fatal() {
        let mut body = *encode(sid(1), Data::new(b"abc").unwrap().into(), &mut rng()).unwrap();
        body[0] = 200;
        let (s, m) = decode(&body).unwrap();
        assert_eq!(s, sid(1));
        assert!(matches!(m, AnyRelayMsg::Unrecognized(_)));
    }

    #[test]
    fn encoding_errors_are_local() {
        assert!(matches!(
            encode(None, Data::new(b"x").unwrap().into(), &mut rng()),
            Err(RelayCellError::BadStreamId { stream: 0, .. })
        ));
        assert!(matches!(
            encode(
                sid(5),
                Truncated::new(DestroyReason::NONE).into(),
                &mut rng()
            ),
            Err(RelayCellError::BadStreamId { stream: 5, .. })
        ));
        let big = tor_cell::relaycell::msg::Unrecognized::new(RelayCmd::from(200), vec![0; 499]);
        let e = encode(sid(1), big.into(), &mut rng()).unwrap_err();
        assert_eq!(
            e,
            RelayCellError::TooLong {
                cmd: RelayCmd::from(200),
                len: 499,
                max: 498
            }
        );
        assert!(!e.is_protocol_violation());
    }

    proptest! {
        /// Decoding never panics on any body.
        #[test]
        fn decode_arbitrary(bytes in proptest::collection::vec(any::<u8>(), CELL_BODY_LEN)) {
            let mut body = [0_u8; CELL_BODY_LEN];
            body.copy_from_slice(&bytes);
            let _ = decode(&body);
            // With a plausible length too.
            body[9] = 0;
            let _ = decode(&body);
        }

        /// DATA of any length round-trips.
        #[test]
        fn data_round_trip(
            payload in proptest::collection::vec(any::<u8>(), 1..=MAX_DATA_LEN),
            stream in 1..=u16::MAX,
        ) {
            let body = encode(sid(stream), Data::new(&payload).unwrap().into(), &mut rng()).unwrap();
            let (s, m) = decode(&body).unwrap();
            prop_assert_eq!(s, sid(stream));
            match m {
                AnyRelayMsg::Data(d) => prop_assert_eq!(d.as_ref(), &payload[..]),
                _ => prop_assert!(false),
            }
        }
    }
}
