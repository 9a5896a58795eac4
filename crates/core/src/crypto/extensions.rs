//! The extension lists carried, encrypted, in the ntor-v3 handshake
//! messages (proposal 332 A.2; tor-spec "CREATE2 extensions").
//!
//! The wire format is tor-cell's:
//!
//! ```text
//! N_EXTENSIONS      [1 byte]
//! N_EXTENSIONS times:
//!     EXT_FIELD_TYPE [1 byte]
//!     EXT_FIELD_LEN  [1 byte]
//!     EXT_FIELD      [EXT_FIELD_LEN bytes]
//! ```
//!
//! The one extension Braid uses today is congestion-control negotiation
//! (proposal 324 §"Negotiation"): the client sends `CC_FIELD_REQUEST`
//! (type 0x01, empty body), the exit answers `CC_FIELD_RESPONSE` (type 0x02)
//! with its `sendme_inc` (one byte). Extensions of unknown types decode as
//! `Unrecognized` and are to be ignored; of repeated types only the first
//! counts (proposal 332 A.2).

pub use tor_cell::relaycell::extend::{CcRequest, CcResponse, CircRequestExt, CircResponseExt};

use super::error::HandshakeError;

/// The client's congestion-control request (`CC_FIELD_REQUEST`, 0x01).
pub fn cc_request() -> CircRequestExt {
    CircRequestExt::CcRequest(CcRequest::default())
}

/// The relay's congestion-control answer (`CC_FIELD_RESPONSE`, 0x02) with
/// its `sendme_inc`.
pub fn cc_response(sendme_inc: u8) -> CircResponseExt {
    CircResponseExt::CcResponse(CcResponse::new(sendme_inc))
}

/// Encode a client message (the `CM` of ntor-v3). Extensions are written
/// in ascending type order.
pub fn encode_request(exts: &[CircRequestExt]) -> Result<Vec<u8>, HandshakeError> {
    let mut out = Vec::new();
    CircRequestExt::write_many_onto(exts, &mut out)
        .map_err(|_| HandshakeError::Internal("encoding the ntor-v3 client extensions"))?;
    Ok(out)
}

/// Decode a client message (relay side). Anything but one complete
/// extension list is [`HandshakeError::Malformed`].
pub fn decode_request(msg: &[u8]) -> Result<Vec<CircRequestExt>, HandshakeError> {
    CircRequestExt::decode(msg)
        .map_err(|_| HandshakeError::Malformed("ntor-v3 client extension list"))
}

/// Encode a relay message (the `SM` of ntor-v3).
pub fn encode_response(exts: &[CircResponseExt]) -> Result<Vec<u8>, HandshakeError> {
    let mut out = Vec::new();
    CircResponseExt::write_many_onto(exts, &mut out)
        .map_err(|_| HandshakeError::Internal("encoding the ntor-v3 relay extensions"))?;
    Ok(out)
}

/// Decode a relay message (client side). Anything but one complete
/// extension list is [`HandshakeError::Malformed`].
pub fn decode_response(msg: &[u8]) -> Result<Vec<CircResponseExt>, HandshakeError> {
    CircResponseExt::decode(msg)
        .map_err(|_| HandshakeError::Malformed("ntor-v3 relay extension list"))
}

/// True if the client asked for congestion control.
pub fn requests_cc(exts: &[CircRequestExt]) -> bool {
    exts.iter()
        .any(|e| matches!(e, CircRequestExt::CcRequest(_)))
}

/// The `sendme_inc` of the first congestion-control answer, if any.
pub fn cc_sendme_inc(exts: &[CircResponseExt]) -> Option<u8> {
    exts.iter().find_map(|e| match e {
        CircResponseExt::CcResponse(r) => Some(r.sendme_inc()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cc_request_wire_format() {
        // N_EXTENSIONS = 1, type 0x01, length 0.
        assert_eq!(encode_request(&[cc_request()]).unwrap(), [1, 1, 0]);
        assert_eq!(encode_request(&[]).unwrap(), [0]);
        let exts = decode_request(&[1, 1, 0]).unwrap();
        assert!(requests_cc(&exts));
        assert!(!requests_cc(&decode_request(&[0]).unwrap()));
    }

    #[test]
    fn cc_response_wire_format() {
        // N_EXTENSIONS = 1, type 0x02, length 1, sendme_inc = 31.
        assert_eq!(encode_response(&[cc_response(31)]).unwrap(), [1, 2, 1, 31]);
        let exts = decode_response(&[1, 2, 1, 31]).unwrap();
        assert_eq!(cc_sendme_inc(&exts), Some(31));
        assert_eq!(cc_sendme_inc(&decode_response(&[0]).unwrap()), None);
    }

    #[test]
    fn unknown_extensions_are_kept_and_ignored() {
        // An unknown type 0x7f with a 2-byte body, then the CC answer.
        let exts = decode_response(&[2, 0x7f, 2, 0xaa, 0xbb, 2, 1, 5]).unwrap();
        assert_eq!(exts.len(), 2);
        assert_eq!(cc_sendme_inc(&exts), Some(5));
    }

    #[test]
    fn first_occurrence_wins() {
        let exts = decode_response(&[2, 2, 1, 7, 2, 1, 9]).unwrap();
        assert_eq!(cc_sendme_inc(&exts), Some(7));
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            &[][..],               // no count
            &[1][..],              // count 1, nothing
            &[1, 2, 1][..],        // body missing
            &[1, 2, 2, 31][..],    // body shorter than its length
            &[1, 2, 2, 31, 0][..], // CC answer with a 2-byte body
            &[0, 0][..],           // trailing byte
        ] {
            assert!(
                matches!(decode_response(bad), Err(HandshakeError::Malformed(_))),
                "{bad:?}"
            );
        }
        // The CC request has an empty body.
        assert!(decode_request(&[1, 1, 1, 0]).is_err());
    }

    proptest! {
        /// Decoding never panics, and what decodes re-encodes (sorted by
        /// type) to a list that decodes and re-encodes identically.
        #[test]
        fn decode_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(exts) = decode_response(&bytes) {
                let again = encode_response(&exts).unwrap();
                let exts2 = decode_response(&again).unwrap();
                prop_assert_eq!(exts2.len(), exts.len());
                prop_assert_eq!(encode_response(&exts2).unwrap(), again);
            }
            if let Ok(exts) = decode_request(&bytes) {
                let again = encode_request(&exts).unwrap();
                let exts2 = decode_request(&again).unwrap();
                prop_assert_eq!(exts2.len(), exts.len());
                prop_assert_eq!(encode_request(&exts2).unwrap(), again);
            }
        }
    }
}
