//! The protocol decisions of the channel reactor, as plain functions: what
//! to do with a cell read from an open channel, which cells a circuit may
//! send, and how to pick a circuit id. No IO here; this is the part that
//! belongs in braid-core (`channel::circmap`) once that module exists.

use braid_core::ids::CircId;
use tor_cell::chancell::msg::AnyChanMsg;
use tor_cell::chancell::{AnyChanCell, ChanCmd, ChanMsg};

/// The most significant bit of a circuit id, set by the initiator of the
/// channel (tor-spec §5.1.1, link protocol 4 and later).
pub const INITIATOR_BIT: u32 = 0x8000_0000;

/// How many random ids [`allocate_circ_id`] tries before giving up.
pub const CIRC_ID_ATTEMPTS: usize = 64;

/// What to do with a cell read from an open channel.
#[derive(Debug)]
pub enum Inbound {
    /// Hand `msg` to circuit `id` if we have it (else drop it). `destroy`
    /// is true for a DESTROY: the circuit is gone after it, and needs no
    /// DESTROY back.
    Circuit {
        /// The circuit.
        id: CircId,
        /// The message.
        msg: AnyChanMsg,
        /// True for DESTROY.
        destroy: bool,
    },
    /// Nothing to do: padding, a late VERSIONS (tor-spec §4.1: "MUST be
    /// ignored"), an unknown command (tor-spec §3: "an OR must drop the
    /// cell"), a PADDING_NEGOTIATE (which only clients send), or a
    /// CREATE* from the relay (a client carries no circuits it did not
    /// open).
    Ignore {
        /// Why, for the log.
        why: &'static str,
        /// The command.
        cmd: ChanCmd,
    },
    /// A handshake cell on an open channel: close the channel.
    Violation {
        /// The command.
        cmd: ChanCmd,
    },
}

/// Decide what to do with `cell`, read from an open channel. The codec has
/// already checked that its circuit id suits its command.
pub fn classify_inbound(cell: AnyChanCell) -> Inbound {
    let (circ_id, msg) = cell.into_circid_and_msg();
    let cmd = msg.cmd();
    let ignore = |why| Inbound::Ignore { why, cmd };
    match msg {
        AnyChanMsg::Padding(_) | AnyChanMsg::Vpadding(_) => ignore("padding"),
        AnyChanMsg::Versions(_) => ignore("VERSIONS after the handshake"),
        AnyChanMsg::PaddingNegotiate(_) => ignore("PADDING_NEGOTIATE from a relay"),
        AnyChanMsg::Unrecognized(_) => ignore("unknown command"),
        AnyChanMsg::Create(_) | AnyChanMsg::Create2(_) | AnyChanMsg::CreateFast(_) => {
            ignore("CREATE from a relay to a client")
        }
        AnyChanMsg::Certs(_)
        | AnyChanMsg::AuthChallenge(_)
        | AnyChanMsg::Authenticate(_)
        | AnyChanMsg::Netinfo(_) => Inbound::Violation { cmd },
        msg => {
            let id = CircId::new(tor_cell::chancell::CircId::get_or_zero(circ_id));
            match id {
                Some(id) => Inbound::Circuit {
                    destroy: matches!(msg, AnyChanMsg::Destroy(_)),
                    id,
                    msg,
                },
                // The codec refuses circuit commands on circuit 0; tor-cell
                // may learn new channel-level commands.
                None => ignore("channel-level cell of no use to a client"),
            }
        }
    }
}

/// True if a client circuit may send `msg` on its channel: the circuit
/// commands an initiator sends (tor-spec §5).
pub fn outbound_allowed(msg: &AnyChanMsg) -> bool {
    matches!(
        msg,
        AnyChanMsg::Create(_)
            | AnyChanMsg::CreateFast(_)
            | AnyChanMsg::Create2(_)
            | AnyChanMsg::Relay(_)
            | AnyChanMsg::RelayEarly(_)
            | AnyChanMsg::Destroy(_)
    )
}

/// A fresh circuit id with the initiator bit set, not in use, from `random`
/// (called up to [`CIRC_ID_ATTEMPTS`] times); `None` if every attempt hit an
/// id in use. With 2^31 ids and a few hundred circuits per channel at most,
/// a collision is rare and 64 in a row never happens short of a bug.
pub fn allocate_circ_id(
    mut random: impl FnMut() -> u32,
    in_use: impl Fn(CircId) -> bool,
) -> Option<CircId> {
    (0..CIRC_ID_ATTEMPTS)
        .filter_map(|_| CircId::new(random() | INITIATOR_BIT))
        .find(|id| !in_use(*id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;
    use tor_cell::chancell::msg::{
        CreateFast, CreatedFast, Destroy, DestroyReason, Netinfo, Padding, Relay, Versions,
        Vpadding,
    };
    use tor_cell::chancell::{ChanCell, CircId as WireCircId};

    fn cell(id: u32, msg: AnyChanMsg) -> AnyChanCell {
        ChanCell::new(WireCircId::new(id), msg)
    }

    #[test]
    fn inbound_classes() {
        let id = 0x8000_0007;
        match classify_inbound(cell(id, CreatedFast::new(vec![0; 40]).into())) {
            Inbound::Circuit {
                id: got,
                destroy: false,
                msg: AnyChanMsg::CreatedFast(_),
            } => assert_eq!(got.get(), id),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_inbound(cell(id, Destroy::new(DestroyReason::FINISHED).into())),
            Inbound::Circuit { destroy: true, .. }
        ));
        assert!(matches!(
            classify_inbound(cell(id, Relay::new([0_u8; 509]).into())),
            Inbound::Circuit { destroy: false, .. }
        ));
        for msg in [
            AnyChanMsg::from(Padding::new()),
            Vpadding::new(3).into(),
            Versions::new([4, 5]).unwrap().into(),
        ] {
            assert!(
                matches!(classify_inbound(cell(0, msg)), Inbound::Ignore { .. }),
                "padding and VERSIONS are ignored"
            );
        }
        assert!(matches!(
            classify_inbound(cell(5, CreateFast::new(vec![0; 20]).into())),
            Inbound::Ignore { .. }
        ));
        assert!(matches!(
            classify_inbound(cell(0, Netinfo::from_client(None).into())),
            Inbound::Violation {
                cmd: ChanCmd::NETINFO
            }
        ));
    }

    #[test]
    fn outbound_commands() {
        assert!(outbound_allowed(&CreateFast::new(vec![0; 20]).into()));
        assert!(outbound_allowed(&Destroy::new(DestroyReason::NONE).into()));
        assert!(!outbound_allowed(&Padding::new().into()));
        assert!(!outbound_allowed(&Netinfo::from_client(None).into()));
        assert!(!outbound_allowed(&CreatedFast::new(vec![0; 40]).into()));
    }

    #[test]
    fn circ_ids_have_the_initiator_bit() {
        let mut n = 0_u32;
        let id = allocate_circ_id(
            || {
                n += 1;
                n
            },
            |id| id.get() < 0x8000_0003,
        )
        .unwrap();
        assert_eq!(id.get(), 0x8000_0003);
        assert!(id.high_bit());
        // Zero maps to the bare initiator bit, never to circuit 0.
        assert_eq!(
            allocate_circ_id(|| 0, |_| false).unwrap().get(),
            INITIATOR_BIT
        );
        assert!(allocate_circ_id(rand::random, |_| true).is_none());
        for _ in 0..1000 {
            assert!(
                allocate_circ_id(rand::random, |_| false)
                    .unwrap()
                    .high_bit()
            );
        }
    }
}
