//! The Braid extensions of CONFLUX_LINK and CONFLUX_LINKED (Braid proposal
//! 001 §2.2): an extension list after the v1 payload, which C-tor's parser
//! would ignore but which is never sent to a relay that does not advertise
//! `BraidResume=1`.
//!
//! ```text
//!   N_EXT      [1 byte]
//!   N_EXT times: EXT_TYPE [1 byte] EXT_LEN [1 byte] EXT_BODY [EXT_LEN bytes]
//! ```
//!
//! RESUME_CAP (type 1): BUFFER_BYTES [4 bytes], GRACE_SECS [2 bytes].
//! LEG (type 2, a client's LINK only): LEG_NUM [1 byte], then the numbers
//! of the set's legs the client lost ([`LegNote`], §3.3).
//! PROBE (type 3, empty): the sender answers LEG_PING with LEG_PONG (§3.6).
//!
//! tor-cell parses the v1 payload and drops what follows, so braid-core's
//! relay cell decoder hands a LINK or LINKED with trailing bytes over as
//! an unrecognized message with its whole body, and [`split`] reads it.

use std::time::Duration;

use tor_bytes::Reader;
use tor_cell::relaycell::msg::{AnyRelayMsg, Unrecognized};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

use super::error::ConfluxError;
use super::retransmit::ResumeParams;

/// Bytes of a v1 LINK or LINKED body: version, nonce, two sequence
/// numbers, desired UX (prop 329 §2.2).
pub const LINK_BODY_LEN: usize = 1 + 32 + 8 + 8 + 1;

/// RESUME_CAP's extension type.
const RESUME_CAP: u8 = 1;
/// LEG's extension type.
const LEG: u8 = 2;
/// PROBE's extension type.
const PROBE: u8 = 3;

/// RELAY_BRAID_LEGS_LOST (Braid proposal 001 §3.3): the exit names, on a
/// leg that lives, the legs of the set it lost, by the client's numbers.
/// Not multiplexed. Body: N [1 byte], N numbers [1 byte each].
pub const CMD_LEGS_LOST: u8 = 0xE5;

/// A LEGS_LOST naming `nums` (at most [`MAX_LOST`]).
pub fn legs_lost_msg(nums: &[u8]) -> AnyRelayMsg {
    let nums = nums.get(..nums.len().min(MAX_LOST)).unwrap_or_default();
    let mut body = Vec::with_capacity(1 + nums.len());
    body.push(u8::try_from(nums.len()).unwrap_or(u8::MAX));
    body.extend_from_slice(nums);
    AnyRelayMsg::Unrecognized(Unrecognized::new(RelayCmd::from(CMD_LEGS_LOST), body))
}

/// RELAY_BRAID_LEG_PING (Braid proposal 001 §3.6): is this leg alive?
/// Not multiplexed; the body is empty (a receiver ignores one).
pub const CMD_LEG_PING: u8 = 0xE6;
/// RELAY_BRAID_LEG_PONG (§3.6): the answer to a LEG_PING, on its leg.
pub const CMD_LEG_PONG: u8 = 0xE7;

/// Whether `cmd` is one of Braid's circuit-level Conflux commands
/// (LEGS_LOST, LEG_PING, LEG_PONG): the Conflux layer's, not ignored as an
/// unknown command.
pub fn is_set_cmd(cmd: RelayCmd) -> bool {
    matches!(u8::from(cmd), CMD_LEGS_LOST | CMD_LEG_PING | CMD_LEG_PONG)
}

/// A liveness probe's message (Braid proposal 001 §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// LEG_PING: answer it with a PONG on the same leg.
    Ping,
    /// LEG_PONG: the leg carried our PING and its answer.
    Pong,
}

impl Probe {
    /// Its relay message.
    pub fn msg(self) -> AnyRelayMsg {
        let cmd = match self {
            Probe::Ping => CMD_LEG_PING,
            Probe::Pong => CMD_LEG_PONG,
        };
        AnyRelayMsg::Unrecognized(Unrecognized::new(RelayCmd::from(cmd), Vec::new()))
    }

    /// The probe `msg` is, if it is one.
    pub fn parse(msg: &AnyRelayMsg) -> Option<Self> {
        let AnyRelayMsg::Unrecognized(u) = msg else {
            return None;
        };
        match u8::from(u.cmd()) {
            CMD_LEG_PING => Some(Probe::Ping),
            CMD_LEG_PONG => Some(Probe::Pong),
            _ => None,
        }
    }
}

/// The numbers a LEGS_LOST names, if `msg` is one; a body shorter than
/// its count, or more than [`MAX_LOST`] numbers, is a protocol violation.
pub fn parse_legs_lost(msg: &AnyRelayMsg) -> Option<Result<Vec<u8>, ConfluxError>> {
    let AnyRelayMsg::Unrecognized(u) = msg else {
        return None;
    };
    let cmd = u.cmd();
    if u8::from(cmd) != CMD_LEGS_LOST {
        return None;
    }
    let bad = |why: &'static str| ConfluxError::BadExtension { cmd, why };
    let mut body = Vec::with_capacity(1 + MAX_LOST);
    if msg.clone().encode_onto(&mut body).is_err() {
        return Some(Err(bad("its body does not encode")));
    }
    let Some((&n, rest)) = body.split_first() else {
        return Some(Err(bad("an empty LEGS_LOST")));
    };
    let n = usize::from(n);
    if n > MAX_LOST {
        return Some(Err(bad("LEGS_LOST names more than 32 legs")));
    }
    Some(
        rest.get(..n)
            .map(<[u8]>::to_vec)
            .ok_or(bad("LEGS_LOST shorter than its count")),
    )
}

/// The most lost legs a LEG extension names (more are left out: the
/// exit then learns of those losses itself).
pub const MAX_LOST: usize = 32;

/// What a client's LINK says of its legs (Braid proposal 001 §2.2, §3.3):
/// its own number for the leg being linked, and the numbers of the
/// set's legs it lost and has not yet told the exit of in a LINK it
/// answered. The exit drops those legs before it resumes on the new one,
/// so that what it sent on them after our loss is resent too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegNote {
    /// The leg's number, distinct from the set's other legs'.
    pub num: u8,
    /// Lost legs' numbers (at most [`MAX_LOST`]).
    pub lost: Vec<u8>,
}

/// Braid's extensions of one LINK or LINKED.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkExt {
    /// RESUME_CAP.
    pub cap: Option<ResumeCap>,
    /// LEG (a client's LINK).
    pub leg: Option<LegNote>,
    /// PROBE: the sender answers LEG_PING (§3.6).
    pub probe: bool,
}

/// What an end of a resumable set promises (Braid proposal 001 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeCap {
    /// Bytes it keeps for retransmission per set.
    pub buffer_bytes: u32,
    /// Seconds it keeps a set without legs.
    pub grace_secs: u16,
}

impl ResumeCap {
    /// What `params` promise.
    pub fn from_params(params: &ResumeParams) -> Self {
        Self {
            buffer_bytes: u32::try_from(params.buffer_bytes).unwrap_or(u32::MAX),
            grace_secs: u16::try_from(params.grace.as_secs()).unwrap_or(u16::MAX),
        }
    }

    /// The grace it promises.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(u64::from(self.grace_secs))
    }
}

/// `msg` (a CONFLUX_LINK or CONFLUX_LINKED) with the extensions of `ext`
/// appended, as an unrecognized message carrying the whole body; `msg`
/// itself if `ext` has none.
pub fn extend(msg: AnyRelayMsg, ext: &LinkExt) -> Result<AnyRelayMsg, ConfluxError> {
    let cmd = msg.cmd();
    if cmd != RelayCmd::CONFLUX_LINK && cmd != RelayCmd::CONFLUX_LINKED {
        return Err(ConfluxError::CannotAddLeg(
            "only LINK and LINKED carry extensions",
        ));
    }
    if ext.cap.is_none() && ext.leg.is_none() && !ext.probe {
        return Ok(msg);
    }
    let mut body = Vec::with_capacity(LINK_BODY_LEN + 16);
    msg.encode_onto(&mut body)
        .map_err(|e| ConfluxError::Encode {
            cmd,
            reason: e.to_string(),
        })?;
    body.push(u8::from(ext.cap.is_some()) + u8::from(ext.leg.is_some()) + u8::from(ext.probe));
    if let Some(cap) = &ext.cap {
        body.push(RESUME_CAP);
        body.push(6);
        body.extend_from_slice(&cap.buffer_bytes.to_be_bytes());
        body.extend_from_slice(&cap.grace_secs.to_be_bytes());
    }
    if let Some(leg) = &ext.leg {
        let lost = leg
            .lost
            .get(..leg.lost.len().min(MAX_LOST))
            .unwrap_or_default();
        body.push(LEG);
        // At most 1 + MAX_LOST bytes.
        body.push(u8::try_from(1 + lost.len()).unwrap_or(u8::MAX));
        body.push(leg.num);
        body.extend_from_slice(lost);
    }
    if ext.probe {
        body.push(PROBE);
        body.push(0);
    }
    Ok(AnyRelayMsg::Unrecognized(Unrecognized::new(cmd, body)))
}

/// A message as it came: a LINK or LINKED with an extension list becomes
/// the plain message and the extensions it carried (unknown ones
/// ignored); anything else is given back unchanged. A list running past
/// the body, or a known extension too short, is a protocol violation
/// (§2.2).
pub fn split(msg: AnyRelayMsg) -> Result<(AnyRelayMsg, LinkExt), ConfluxError> {
    let AnyRelayMsg::Unrecognized(u) = &msg else {
        return Ok((msg, LinkExt::default()));
    };
    let cmd = u.cmd();
    if cmd != RelayCmd::CONFLUX_LINK && cmd != RelayCmd::CONFLUX_LINKED {
        return Ok((msg, LinkExt::default()));
    }
    // tor-cell keeps the body private; its encoding is the body.
    let mut body = Vec::with_capacity(LINK_BODY_LEN + 16);
    msg.encode_onto(&mut body)
        .map_err(|e| ConfluxError::Encode {
            cmd,
            reason: e.to_string(),
        })?;
    let bad = |why: &'static str| ConfluxError::BadExtension { cmd, why };
    let (head, tail) = body
        .as_slice()
        .split_at_checked(LINK_BODY_LEN)
        .ok_or(bad("shorter than a v1 payload"))?;
    let mut r = Reader::from_slice(head);
    let plain = AnyRelayMsg::decode_from_reader(cmd, &mut r)
        .map_err(|_| bad("its v1 payload does not parse"))?;
    let mut out = LinkExt::default();
    let mut r = Reader::from_slice(tail);
    let n = r.take_u8().unwrap_or(0);
    for _ in 0..n {
        let ty = r.take_u8().map_err(|_| bad("an extension past the body"))?;
        let len = r.take_u8().map_err(|_| bad("an extension past the body"))?;
        let ext = r
            .take(usize::from(len))
            .map_err(|_| bad("an extension past the body"))?;
        match ty {
            RESUME_CAP => {
                let mut e = Reader::from_slice(ext);
                let (Ok(buffer_bytes), Ok(grace_secs)) = (e.take_u32(), e.take_u16()) else {
                    return Err(bad("RESUME_CAP shorter than 6 bytes"));
                };
                out.cap = Some(ResumeCap {
                    buffer_bytes,
                    grace_secs,
                });
            }
            LEG => {
                let (&num, lost) = ext.split_first().ok_or(bad("an empty LEG"))?;
                let lost = lost.get(..lost.len().min(MAX_LOST)).unwrap_or_default();
                out.leg = Some(LegNote {
                    num,
                    lost: lost.to_vec(),
                });
            }
            PROBE => out.probe = true,
            _ => {}
        }
    }
    Ok((plain, out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use tor_cell::relaycell::msg::{ConfluxLink, ConfluxSwitch};

    use super::*;
    use crate::conflux::{ConfluxNonce, LinkInfo, V1DesiredUx};

    fn link() -> AnyRelayMsg {
        let info = LinkInfo {
            nonce: ConfluxNonce::from_bytes([3; 32]),
            last_seqno_sent: 7,
            last_seqno_recv: 5,
            desired_ux: V1DesiredUx::HIGH_THROUGHPUT,
        };
        ConfluxLink::new(info.to_payload().unwrap()).into()
    }

    #[test]
    fn a_resume_cap_round_trips_through_the_wire_body() {
        let cap = ResumeCap {
            buffer_bytes: 2 << 20,
            grace_secs: 30,
        };
        let with = LinkExt {
            cap: Some(cap),
            ..LinkExt::default()
        };
        let ext = extend(link(), &with).unwrap();
        assert!(matches!(ext, AnyRelayMsg::Unrecognized(_)), "{ext:?}");
        let mut body = Vec::new();
        ext.clone().encode_onto(&mut body).unwrap();
        assert_eq!(body.len(), LINK_BODY_LEN + 9);
        // Through braid-core's relay cell codec, as a peer gets it.
        let mut rng = rand::rng();
        let cell = crate::circuit::relay_cell::encode(None, ext, &mut rng).unwrap();
        let (_, got) = crate::circuit::relay_cell::decode(&cell).unwrap();
        let (plain, got_ext) = split(got).unwrap();
        assert_eq!(got_ext, with);
        let AnyRelayMsg::ConfluxLink(l) = plain else {
            panic!("{plain:?}")
        };
        let info = LinkInfo::from_link(&l).unwrap();
        assert_eq!((info.last_seqno_sent, info.last_seqno_recv), (7, 5));
        assert_eq!(cap.grace(), Duration::from_secs(30));
    }

    #[test]
    fn plain_and_padded_messages_pass_and_bad_lists_are_refused() {
        // A plain LINK decodes as itself and splits to no capability.
        let mut rng = rand::rng();
        let cell = crate::circuit::relay_cell::encode(None, link(), &mut rng).unwrap();
        let (_, got) = crate::circuit::relay_cell::decode(&cell).unwrap();
        assert!(matches!(got, AnyRelayMsg::ConfluxLink(_)));
        assert_eq!(split(got).unwrap().1, LinkExt::default());
        // Zero padding after the payload: no extensions.
        let mut body = Vec::new();
        link().encode_onto(&mut body).unwrap();
        body.extend_from_slice(&[0; 20]);
        let padded = AnyRelayMsg::Unrecognized(Unrecognized::new(RelayCmd::CONFLUX_LINK, body));
        let (plain, ext) = split(padded).unwrap();
        assert!(matches!(plain, AnyRelayMsg::ConfluxLink(_)) && ext == LinkExt::default());
        // A list that runs past the body; a short RESUME_CAP; an unknown
        // type is skipped.
        for (tail, ok) in [
            (&[1_u8, 9, 5, 1][..], false),
            (&[1, 1, 2, 0, 0][..], false),
            (&[1, 2, 0][..], false),
            (&[2, 9, 1, 0, 1, 6, 0, 1, 0, 0, 0, 10][..], true),
        ] {
            let mut body = Vec::new();
            link().encode_onto(&mut body).unwrap();
            body.extend_from_slice(tail);
            let m = AnyRelayMsg::Unrecognized(Unrecognized::new(RelayCmd::CONFLUX_LINK, body));
            assert_eq!(split(m).is_ok(), ok, "{tail:?}");
        }
        // Other messages pass untouched.
        let sw: AnyRelayMsg = ConfluxSwitch::new(3).into();
        assert!(matches!(
            split(sw).unwrap(),
            (AnyRelayMsg::ConfluxSwitch(_), e) if e == LinkExt::default()
        ));
        let cap = Some(ResumeCap::from_params(&ResumeParams::default()));
        let ext = LinkExt {
            cap,
            ..LinkExt::default()
        };
        assert!(extend(ConfluxSwitch::new(3).into(), &ext).is_err());
        // Nothing to add: the message as it is.
        assert!(matches!(
            extend(link(), &LinkExt::default()).unwrap(),
            AnyRelayMsg::ConfluxLink(_)
        ));
    }

    /// LEGS_LOST round-trips through the relay cell codec; short or long
    /// bodies are refused; other messages are not it.
    #[test]
    fn legs_lost_round_trips_and_bad_bodies_are_refused() {
        let mut rng = rand::rng();
        let cell =
            crate::circuit::relay_cell::encode(None, legs_lost_msg(&[3, 0]), &mut rng).unwrap();
        let (_, got) = crate::circuit::relay_cell::decode(&cell).unwrap();
        assert_eq!(parse_legs_lost(&got).unwrap().unwrap(), vec![3, 0]);
        let cmd = RelayCmd::from(CMD_LEGS_LOST);
        for body in [vec![], vec![2, 1], vec![40; 41]] {
            let m = AnyRelayMsg::Unrecognized(Unrecognized::new(cmd, body.clone()));
            assert!(parse_legs_lost(&m).unwrap().is_err(), "{body:?}");
        }
        assert!(parse_legs_lost(&link()).is_none());
    }

    /// A LEG note with its lost legs, beside RESUME_CAP and PROBE,
    /// round-trips; lost legs past [`MAX_LOST`] are left out.
    #[test]
    fn a_leg_note_round_trips_and_its_lost_list_is_bounded() {
        let with = LinkExt {
            cap: Some(ResumeCap::from_params(&ResumeParams::default())),
            leg: Some(LegNote {
                num: 4,
                lost: vec![0, 2],
            }),
            probe: true,
        };
        let mut rng = rand::rng();
        let ext = extend(link(), &with).unwrap();
        let cell = crate::circuit::relay_cell::encode(None, ext, &mut rng).unwrap();
        let (_, got) = crate::circuit::relay_cell::decode(&cell).unwrap();
        assert_eq!(split(got).unwrap().1, with);
        let many = LinkExt {
            cap: None,
            leg: Some(LegNote {
                num: 200,
                lost: (0..100).collect(),
            }),
            probe: false,
        };
        let (_, back) = split(extend(link(), &many).unwrap()).unwrap();
        let note = back.leg.unwrap();
        assert_eq!((note.num, note.lost.len()), (200, MAX_LOST));
        assert_eq!(back.cap, None);
        assert!(!back.probe);
    }

    /// LEG_PING and LEG_PONG round-trip through the relay cell codec and
    /// are told apart from other messages.
    #[test]
    fn probes_round_trip() {
        let mut rng = rand::rng();
        for p in [Probe::Ping, Probe::Pong] {
            let cell = crate::circuit::relay_cell::encode(None, p.msg(), &mut rng).unwrap();
            let (_, got) = crate::circuit::relay_cell::decode(&cell).unwrap();
            assert_eq!(Probe::parse(&got), Some(p));
        }
        assert_eq!(Probe::parse(&legs_lost_msg(&[1])), None);
        assert_eq!(Probe::parse(&link()), None);
    }
}
