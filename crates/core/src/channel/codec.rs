//! Cell framing for link protocols 4 and 5 (tor-spec §3).
//!
//! A [`CellCodec`] turns bytes read from the TLS stream into cells and cells
//! into bytes to write. It knows two framings:
//!
//! - before the link version is negotiated, only variable-length cells with
//!   a 2-byte circuit id (`CircID(2) Command(1) Length(2) Payload`): the first
//!   VERSIONS cell and VPADDING / AUTHORIZE cells before it (tor-spec §3:
//!   "The first VERSIONS cell, and any cells sent before the first VERSIONS
//!   cell, always have CIRCID_LEN == 2");
//! - from link protocol 4 on, a 4-byte circuit id; fixed-length cells are
//!   514 bytes (`CircID(4) Command(1) Payload(509)`), variable-length cells
//!   (VERSIONS and every command >= 128) are `CircID(4) Command(1) Length(2)
//!   Payload(Length)`.
//!
//! Message bodies are parsed and encoded by tor-cell's `chancell` types.

use tor_bytes::Reader;
use tor_cell::chancell::msg::AnyChanMsg;
use tor_cell::chancell::{AnyChanCell, CELL_DATA_LEN, ChanCell, ChanCmd, ChanMsg, CircId};

use super::error::ChannelError;

/// The link protocol versions this codec can frame, lowest first.
pub const SUPPORTED_LINK_VERSIONS: &[u16] = &[4, 5];

/// Length of a fixed-length cell on link protocol 4 and later.
pub const FIXED_CELL_LEN: usize = 4 + 1 + CELL_DATA_LEN;

/// Length of a variable-length cell's header on link protocol 4 and later.
pub const VAR_CELL_HEADER_LEN: usize = 4 + 1 + 2;

/// Length of a variable-length cell's header before negotiation (2-byte
/// circuit id).
pub const PRE_VERSIONS_HEADER_LEN: usize = 2 + 1 + 2;

/// The largest body a variable-length cell can have: its length field is
/// two bytes.
pub const MAX_VAR_CELL_BODY_LEN: usize = u16::MAX as usize;

/// Default limit on undecoded input held by a [`CellCodec`]: room for the
/// largest legal cell plus more than one TLS record (16 KiB) of what
/// follows it.
pub const DEFAULT_MAX_BUFFERED: usize = 256 * 1024;

/// One framed cell whose body has not been parsed yet.
///
/// For a fixed-length cell the body is the whole 509-byte payload
/// (padding included); for a variable-length cell it is `Length` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCell {
    /// The circuit id field (0 for channel-level cells).
    circ_id: u32,
    /// The command byte.
    cmd: ChanCmd,
    /// The payload.
    body: Vec<u8>,
}

impl RawCell {
    /// A raw cell from its parts.
    pub fn new(circ_id: u32, cmd: ChanCmd, body: Vec<u8>) -> Self {
        RawCell { circ_id, cmd, body }
    }

    /// The circuit id field (0 for channel-level cells).
    pub fn circ_id(&self) -> u32 {
        self.circ_id
    }

    /// The command.
    pub fn cmd(&self) -> ChanCmd {
        self.cmd
    }

    /// The payload.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Parse the payload as the message of its command, and check that the
    /// circuit id suits the command (zero for channel-level commands,
    /// non-zero for circuit-level ones). Unknown commands become
    /// `AnyChanMsg::Unrecognized`.
    pub fn parse(&self) -> Result<AnyChanCell, ChannelError> {
        let circ_id = CircId::new(self.circ_id);
        if !self.cmd.accepts_circid_val(circ_id) {
            return Err(ChannelError::BadCircId {
                cmd: self.cmd,
                circ_id: self.circ_id,
            });
        }
        let mut r = Reader::from_slice(&self.body);
        let msg = AnyChanMsg::decode_from_reader(self.cmd, &mut r).map_err(|e| {
            ChannelError::MalformedCell {
                cmd: self.cmd,
                reason: e.to_string(),
            }
        })?;
        Ok(ChanCell::new(circ_id, msg))
    }
}

/// Framing state and input buffer of one channel (tor-spec §3).
///
/// Feed bytes with [`handle_bytes`](Self::handle_bytes), then take cells with
/// [`poll_cell`](Self::poll_cell) (or [`poll_raw_cell`](Self::poll_raw_cell))
/// until it yields `None`. The decoder holds at most
/// [`max_buffered`](Self::with_max_buffered) undecoded bytes and refuses
/// variable-length cells longer than
/// [`max_var_body_len`](Self::with_max_var_body_len) (by default the wire
/// maximum, 65535, so nothing legal is refused).
#[derive(Debug, Clone)]
pub struct CellCodec {
    /// The negotiated link protocol version, or `None` before VERSIONS.
    link_version: Option<u16>,
    /// Input bytes; `buf[start..]` is not decoded yet.
    buf: Vec<u8>,
    /// Offset of the first undecoded byte in `buf`.
    start: usize,
    /// Limit on the body of a variable-length cell.
    max_var_body_len: usize,
    /// Limit on `buf.len() - start`.
    max_buffered: usize,
}

impl Default for CellCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl CellCodec {
    /// A codec for a fresh connection: link version not yet negotiated.
    pub fn new() -> Self {
        CellCodec {
            link_version: None,
            buf: Vec::new(),
            start: 0,
            max_var_body_len: MAX_VAR_CELL_BODY_LEN,
            max_buffered: DEFAULT_MAX_BUFFERED,
        }
    }

    /// Refuse variable-length cells with a body longer than `max` bytes
    /// (clamped to 65535, the wire maximum).
    pub fn with_max_var_body_len(mut self, max: usize) -> Self {
        self.max_var_body_len = max.min(MAX_VAR_CELL_BODY_LEN);
        self.max_buffered = self
            .max_buffered
            .max(VAR_CELL_HEADER_LEN + self.max_var_body_len);
        self
    }

    /// Hold at most `max` undecoded bytes (raised to at least the size of
    /// the largest cell this codec accepts).
    pub fn with_max_buffered(mut self, max: usize) -> Self {
        self.max_buffered = max.max(VAR_CELL_HEADER_LEN + self.max_var_body_len);
        self
    }

    /// The negotiated link protocol version, if any.
    pub fn link_version(&self) -> Option<u16> {
        self.link_version
    }

    /// Switch to the framing of link protocol `version` (4 or 5), as soon as
    /// VERSIONS cells have been exchanged (tor-spec §4.1). Bytes already
    /// buffered after the VERSIONS cell are decoded with the new framing.
    pub fn set_link_version(&mut self, version: u16) -> Result<(), ChannelError> {
        if !SUPPORTED_LINK_VERSIONS.contains(&version) {
            return Err(ChannelError::Internal(format!(
                "link protocol version {version} is not supported by the codec"
            )));
        }
        self.link_version = Some(version);
        Ok(())
    }

    /// Number of bytes received but not yet decoded into cells.
    pub fn buffered_len(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Append bytes read from the connection.
    ///
    /// Fails with [`ChannelError::BufferFull`] (a resource limit) if the
    /// undecoded input would exceed the limit; then nothing is appended.
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        let len = self.buffered_len().saturating_add(data.len());
        if len > self.max_buffered {
            return Err(ChannelError::BufferFull {
                len,
                max: self.max_buffered,
            });
        }
        if self.start > 0 {
            // Drop what was decoded; amortised, since it happens at most
            // once per call.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Take the next whole cell out of the buffer without parsing its body,
    /// or `None` if more bytes are needed.
    pub fn poll_raw_cell(&mut self) -> Result<Option<RawCell>, ChannelError> {
        let input = self.buf.get(self.start..).unwrap_or_default();
        let Some((cell, used)) = self.frame(input)? else {
            return Ok(None);
        };
        self.start = self.start.saturating_add(used);
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(cell))
    }

    /// Take the next whole cell out of the buffer and parse it, or `None` if
    /// more bytes are needed.
    pub fn poll_cell(&mut self) -> Result<Option<AnyChanCell>, ChannelError> {
        match self.poll_raw_cell()? {
            Some(raw) => raw.parse().map(Some),
            None => Ok(None),
        }
    }

    /// Find one cell at the start of `input`: the cell and the number of
    /// bytes it took, or `None` if `input` holds only part of a cell.
    fn frame(&self, input: &[u8]) -> Result<Option<(RawCell, usize)>, ChannelError> {
        let circ_id_len = if self.link_version.is_some() { 4 } else { 2 };
        let Some((circ_id, rest)) = input.split_at_checked(circ_id_len) else {
            return Ok(None);
        };
        let Some((&cmd, rest)) = rest.split_first() else {
            return Ok(None);
        };
        let cmd = ChanCmd::from(cmd);
        let circ_id = circ_id
            .iter()
            .fold(0_u32, |acc, &b| (acc << 8) | u32::from(b));
        let (body_len, header_len) = if cmd.is_var_cell() {
            let Some((len, _)) = rest.split_at_checked(2) else {
                return Ok(None);
            };
            let len = len
                .iter()
                .fold(0_usize, |acc, &b| (acc << 8) | usize::from(b));
            if len > self.max_var_body_len {
                return Err(ChannelError::CellTooLong {
                    len,
                    max: self.max_var_body_len,
                });
            }
            (len, circ_id_len + 1 + 2)
        } else if self.link_version.is_none() {
            // tor-spec §4: the first cell must be VERSIONS, VPADDING or
            // AUTHORIZE, all variable-length.
            return Err(ChannelError::FixedCellBeforeVersions { cmd });
        } else {
            (CELL_DATA_LEN, circ_id_len + 1)
        };
        let total = header_len + body_len;
        let Some(body) = input.get(header_len..total) else {
            return Ok(None);
        };
        Ok(Some((RawCell::new(circ_id, cmd, body.to_vec()), total)))
    }

    /// Encode `cell` with the negotiated framing and append it to `out`.
    ///
    /// Fails (an internal error) before negotiation (use
    /// [`encode_versions`]), if the circuit id does not suit the command, or
    /// if the message does not fit its cell.
    pub fn encode_cell(&self, cell: AnyChanCell, out: &mut Vec<u8>) -> Result<(), ChannelError> {
        if self.link_version.is_none() {
            return Err(ChannelError::Internal(
                "cannot encode a cell before the link version is negotiated".into(),
            ));
        }
        let (circ_id, msg) = cell.into_circid_and_msg();
        let cmd = msg.cmd();
        if !cmd.accepts_circid_val(circ_id) {
            return Err(ChannelError::Internal(format!(
                "circuit id {} not allowed on a {cmd} cell",
                CircId::get_or_zero(circ_id)
            )));
        }
        let mut body = Vec::new();
        msg.encode_onto(&mut body)
            .map_err(|e| ChannelError::Internal(format!("cannot encode {cmd} cell: {e}")))?;
        let start = out.len();
        out.extend_from_slice(&CircId::get_or_zero(circ_id).to_be_bytes());
        out.push(cmd.into());
        if let Err(e) = append_body(cmd, &body, out) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }
}

/// Append a cell body, with its length or its padding (tor-spec §3).
fn append_body(cmd: ChanCmd, body: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
    if cmd.is_var_cell() {
        let len = u16::try_from(body.len()).map_err(|_| {
            ChannelError::Internal(format!("{cmd} body of {} bytes is too long", body.len()))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
    } else {
        let padding = CELL_DATA_LEN.checked_sub(body.len()).ok_or_else(|| {
            ChannelError::Internal(format!("{cmd} body of {} bytes is too long", body.len()))
        })?;
        out.extend_from_slice(body);
        // "Padding bytes SHOULD be set to NUL" (RELAY bodies come full).
        out.resize(out.len() + padding, 0);
    }
    Ok(())
}

/// Encode a VERSIONS cell the way it is sent before negotiation: 2-byte
/// circuit id 0, no padding (tor-spec §3, §4.1).
pub fn encode_versions(versions: &[u16], out: &mut Vec<u8>) -> Result<(), ChannelError> {
    let len = versions
        .len()
        .checked_mul(2)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| ChannelError::Internal("too many versions".into()))?;
    out.extend_from_slice(&[0, 0, ChanCmd::VERSIONS.into()]);
    out.extend_from_slice(&len.to_be_bytes());
    for v in versions {
        out.extend_from_slice(&v.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use tor_cell::chancell::msg::{Destroy, DestroyReason, Netinfo, Padding, Relay, Vpadding};

    fn open_codec() -> CellCodec {
        let mut c = CellCodec::new();
        c.set_link_version(5).unwrap();
        c
    }

    fn encode(cell: AnyChanCell) -> Vec<u8> {
        let mut out = Vec::new();
        open_codec().encode_cell(cell, &mut out).unwrap();
        out
    }

    #[test]
    fn versions_before_negotiation() {
        let mut out = Vec::new();
        encode_versions(&[4, 5], &mut out).unwrap();
        assert_eq!(hex::encode(&out), "000007000400040005");

        let mut c = CellCodec::new();
        // VPADDING first, then the peer's VERSIONS, then a CERTS with the
        // 4-byte framing in the same read.
        let mut input = hex::decode("0000800002abcd").unwrap();
        input.extend(hex::decode("00000700060003000400 05".replace(' ', "")).unwrap());
        input.extend(hex::decode("00000000810001 00".replace(' ', "")).unwrap());
        c.handle_bytes(&input).unwrap();
        let vp = c.poll_cell().unwrap().unwrap();
        assert_eq!(vp.msg().cmd(), ChanCmd::VPADDING);
        let v = c.poll_cell().unwrap().unwrap();
        let AnyChanMsg::Versions(v) = v.msg() else {
            panic!("not versions")
        };
        assert_eq!(v.best_shared_link_protocol(&[4, 5]), Some(5));
        c.set_link_version(5).unwrap();
        let certs = c.poll_raw_cell().unwrap().unwrap();
        assert_eq!(certs.cmd(), ChanCmd::CERTS);
        assert_eq!(certs.body(), &[0]);
        assert!(c.poll_cell().unwrap().is_none());
        assert_eq!(c.buffered_len(), 0);
    }

    #[test]
    fn fixed_cell_before_versions_refused() {
        let mut c = CellCodec::new();
        c.handle_bytes(&[0, 0, 8, 0, 0]).unwrap();
        assert_eq!(
            c.poll_cell().unwrap_err(),
            ChannelError::FixedCellBeforeVersions {
                cmd: ChanCmd::NETINFO
            }
        );
    }

    #[test]
    fn round_trips() {
        let cells: Vec<AnyChanCell> = vec![
            ChanCell::new(None, Padding::new().into()),
            ChanCell::new(None, Vpadding::new(17).into()),
            ChanCell::new(
                None,
                Netinfo::from_client(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))).into(),
            ),
            ChanCell::new(
                CircId::new(0x8000_0001),
                Destroy::new(DestroyReason::FINISHED).into(),
            ),
            ChanCell::new(CircId::new(7), Relay::new(&[0x42_u8; 509][..]).into()),
        ];
        for cell in cells {
            let cmd = cell.msg().cmd();
            let bytes = encode(cell);
            if cmd.is_var_cell() {
                let len = u16::from_be_bytes([bytes[5], bytes[6]]);
                assert_eq!(bytes.len(), VAR_CELL_HEADER_LEN + usize::from(len), "{cmd}");
            } else {
                assert_eq!(bytes.len(), FIXED_CELL_LEN, "{cmd}");
            }
            let mut c = open_codec();
            c.handle_bytes(&bytes).unwrap();
            let back = c.poll_cell().unwrap().unwrap();
            assert_eq!(back.msg().cmd(), cmd);
            assert_eq!(encode(back), bytes, "{cmd}");
            assert!(c.poll_cell().unwrap().is_none());
        }
    }

    #[test]
    fn partial_input_byte_by_byte() {
        let mut stream = Vec::new();
        let codec = open_codec();
        for i in 0..5_u32 {
            codec
                .encode_cell(
                    ChanCell::new(CircId::new(i + 1), Relay::new(&[i as u8; 509][..]).into()),
                    &mut stream,
                )
                .unwrap();
            codec
                .encode_cell(
                    ChanCell::new(None, Vpadding::new(i as u16 * 100).into()),
                    &mut stream,
                )
                .unwrap();
        }
        let mut c = open_codec();
        let mut got = Vec::new();
        for b in &stream {
            c.handle_bytes(std::slice::from_ref(b)).unwrap();
            while let Some(cell) = c.poll_raw_cell().unwrap() {
                got.push(cell);
            }
        }
        assert_eq!(got.len(), 10);
        assert_eq!(got[2].circ_id(), 2);
        assert_eq!(got[2].body(), &[1_u8; 509][..]);
        assert_eq!(got[9].body().len(), 400);
        assert_eq!(c.buffered_len(), 0);
    }

    #[test]
    fn wrong_circ_id_refused() {
        // NETINFO on circuit 5.
        let mut bytes = vec![0, 0, 0, 5, 8];
        bytes.resize(FIXED_CELL_LEN, 0);
        let mut c = open_codec();
        c.handle_bytes(&bytes).unwrap();
        assert_eq!(
            c.poll_cell().unwrap_err(),
            ChannelError::BadCircId {
                cmd: ChanCmd::NETINFO,
                circ_id: 5
            }
        );
        // RELAY on circuit 0.
        let mut bytes = vec![0, 0, 0, 0, 3];
        bytes.resize(FIXED_CELL_LEN, 0);
        let mut c = open_codec();
        c.handle_bytes(&bytes).unwrap();
        assert!(matches!(
            c.poll_cell().unwrap_err(),
            ChannelError::BadCircId { .. }
        ));
        // And we do not encode them either.
        let mut out = Vec::new();
        let e = open_codec()
            .encode_cell(ChanCell::new(None, Relay::new(&b"x"[..]).into()), &mut out)
            .unwrap_err();
        assert_eq!(e.kind(), super::super::error::ErrorKind::Internal);
        assert!(out.is_empty());
    }

    #[test]
    fn malformed_body_refused() {
        // VERSIONS with an odd length (tor-spec §4.1 "MUST close").
        let mut c = CellCodec::new();
        c.handle_bytes(&hex::decode("000007000300040f").unwrap())
            .unwrap();
        assert!(matches!(
            c.poll_cell().unwrap_err(),
            ChannelError::MalformedCell { cmd, .. } if cmd == ChanCmd::VERSIONS
        ));
    }

    #[test]
    fn limits() {
        // The wire maximum is accepted by default.
        let mut c = open_codec();
        let mut big = vec![0, 0, 0, 0, 128, 0xff, 0xff];
        big.resize(VAR_CELL_HEADER_LEN + 65535, 0);
        c.handle_bytes(&big).unwrap();
        assert_eq!(c.poll_raw_cell().unwrap().unwrap().body().len(), 65535);

        // A lower limit refuses longer cells as soon as the header is in.
        let mut c = open_codec().with_max_var_body_len(1000);
        c.handle_bytes(&big[..7]).unwrap();
        assert_eq!(
            c.poll_raw_cell().unwrap_err(),
            ChannelError::CellTooLong {
                len: 65535,
                max: 1000
            }
        );

        // The buffer limit.
        let mut c = open_codec().with_max_buffered(0);
        let max = VAR_CELL_HEADER_LEN + MAX_VAR_CELL_BODY_LEN;
        c.handle_bytes(&vec![0; max]).unwrap();
        let e = c.handle_bytes(&[0]).unwrap_err();
        assert_eq!(e, ChannelError::BufferFull { len: max + 1, max });
        assert_eq!(e.kind(), super::super::error::ErrorKind::ResourceLimit);
        // Whatever the order of the limits, the largest accepted cell fits.
        let c = CellCodec::new()
            .with_max_var_body_len(10)
            .with_max_buffered(0)
            .with_max_var_body_len(5000);
        assert_eq!(c.max_buffered, VAR_CELL_HEADER_LEN + 5000);
    }

    #[test]
    fn unknown_commands_are_unrecognized() {
        let mut c = open_codec();
        // Var cell 200 with circuit id 9 and a 2-byte body; fixed cell 50.
        let mut bytes = hex::decode("00000009c80002abcd").unwrap();
        let mut fixed = vec![0, 0, 0, 1, 50];
        fixed.resize(FIXED_CELL_LEN, 0);
        bytes.extend(fixed);
        c.handle_bytes(&bytes).unwrap();
        let a = c.poll_cell().unwrap().unwrap();
        assert!(matches!(a.msg(), AnyChanMsg::Unrecognized(_)));
        assert_eq!(a.msg().cmd(), ChanCmd::from(200));
        let b = c.poll_cell().unwrap().unwrap();
        assert_eq!(b.msg().cmd(), ChanCmd::from(50));
    }

    proptest::proptest! {
        /// The decoder never panics, whatever the input and however it is
        /// split, in either framing.
        #[test]
        fn decoder_never_panics(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            chunk in 1_usize..700,
            negotiated in proptest::bool::ANY,
        ) {
            let mut c = CellCodec::new().with_max_var_body_len(2000);
            if negotiated {
                c.set_link_version(4).unwrap();
            }
            'outer: for part in data.chunks(chunk) {
                if c.handle_bytes(part).is_err() {
                    break;
                }
                loop {
                    match c.poll_raw_cell() {
                        Ok(Some(raw)) => { let _ = raw.parse(); }
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }

        /// Whatever parses re-encodes to a cell that parses the same way.
        #[test]
        fn parsed_cells_reencode(
            cmd in proptest::num::u8::ANY,
            circ in proptest::num::u32::ANY,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        ) {
            let cmd = ChanCmd::from(cmd);
            let mut bytes = circ.to_be_bytes().to_vec();
            bytes.push(cmd.into());
            if cmd.is_var_cell() {
                bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
                bytes.extend_from_slice(&body);
            } else {
                let mut b = body.clone();
                b.resize(CELL_DATA_LEN, 0);
                bytes.extend_from_slice(&b);
            }
            let mut c = open_codec();
            c.handle_bytes(&bytes).unwrap();
            let Ok(Some(cell)) = c.poll_cell() else { return Ok(()); };
            let mut out = Vec::new();
            if open_codec().encode_cell(cell, &mut out).is_ok() {
                let mut c2 = open_codec();
                c2.handle_bytes(&out).unwrap();
                let again = c2.poll_cell().unwrap().unwrap();
                proptest::prop_assert_eq!(again.msg().cmd(), cmd);
            }
        }
    }
}
