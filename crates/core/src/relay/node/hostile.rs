//! A hostile Conflux exit, for tests only (issue 17 item 4): with the
//! `hostile` feature, never in a default build, a [`RelayNode`] whose
//! [`ConfluxExitConfig::hostile`] is set deviates on purpose in what it
//! sends on every set, so that a client can be tested against a peer that
//! breaks the protocol over real sockets. Each set first sends
//! [`HOSTILE_AFTER`] DATA cells honestly (its streams are connected and a
//! download is under way), then:
//!
//! - [`Hostile::SeqGap`]: every CONFLUX_SWITCH it sends skips [`SEQ_GAP`]
//!   sequence numbers, and the first hostile DATA goes behind a SWITCH of
//!   [`SEQ_GAP`] on its own leg: the client waits for numbers that never
//!   come, its reorder queue fills (prop 329 §2.6, §4.1);
//! - [`Hostile::SwitchFlood`]: [`SWITCH_FLOOD`] SWITCHes with relative
//!   sequence number 0 and no data between them (prop 329 §4.2.3: a side
//!   channel);
//! - [`Hostile::Junk`]: [`JUNK_CELLS`] relay cells with commands nobody
//!   knows (tor-spec §6.1: the client drops them), then a BEGIN toward the
//!   client on the download's stream (tor-spec §6.1: a forward-only
//!   command, a protocol violation).
//!
//! - [`Hostile::IgnoreXoff`]: the set's streams keep sending after the
//!   client's XOFF (proposal 324 §4.1.3): the client's receive buffer
//!   fills while its application does not read.
//!
//! Not yet: DATA past the congestion window, and slow answers (the
//! sender's window checks and timers are the circuit's).
//!
//! [`RelayNode`]: super::RelayNode
//! [`ConfluxExitConfig::hostile`]: super::ConfluxExitConfig::hostile

use tor_cell::relaycell::RelayCmd;
use tor_cell::relaycell::msg::{AnyRelayMsg, Begin, ConfluxSwitch, Unrecognized};

use crate::ids::StreamId;

/// DATA cells a set sends honestly before it turns hostile.
pub const HOSTILE_AFTER: u64 = 200;

/// Sequence numbers a [`Hostile::SeqGap`] SWITCH skips.
pub const SEQ_GAP: u32 = 3;

/// Empty SWITCHes a [`Hostile::SwitchFlood`] set sends in a row.
pub const SWITCH_FLOOD: usize = 40;

/// Unknown-command cells a [`Hostile::Junk`] set sends.
pub const JUNK_CELLS: usize = 16;

/// The first relay command a [`Hostile::Junk`] set uses: one tor-spec
/// §6.1 does not define, nor Conflux, nor Braid proposal 001.
const JUNK_CMD: u8 = 200;

/// How a hostile Conflux exit misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hostile {
    /// SWITCHes skip sequence numbers.
    SeqGap,
    /// Many empty SWITCHes.
    SwitchFlood,
    /// Unknown commands, then a forward-only command toward the client.
    Junk,
    /// XOFF from the client is ignored.
    IgnoreXoff,
}

impl Hostile {
    /// Every behaviour.
    pub const ALL: [Self; 4] = [
        Self::SeqGap,
        Self::SwitchFlood,
        Self::Junk,
        Self::IgnoreXoff,
    ];

    /// Its name in `relay.toml` (`hostile = "seq-gap"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::SeqGap => "seq-gap",
            Self::SwitchFlood => "switch-flood",
            Self::Junk => "junk",
            Self::IgnoreXoff => "ignore-xoff",
        }
    }

    /// The behaviour named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }

    /// What the set sends for one scheduled message (`msgs`: the SWITCH
    /// if any, then the message), changed as the behaviour says.
    pub(super) fn rewrite(
        self,
        st: &mut HostileState,
        msgs: impl Iterator<Item = (Option<StreamId>, AnyRelayMsg)>,
    ) -> Vec<(Option<StreamId>, AnyRelayMsg)> {
        let mut msgs: Vec<_> = msgs.collect();
        let data_stream = msgs.iter().find_map(|(s, m)| match m {
            AnyRelayMsg::Data(_) => Some(*s),
            _ => None,
        });
        let Some(stream) = data_stream else {
            return self.rewrite_switches(st, msgs);
        };
        st.data_sent += 1;
        let trigger = !st.turned && st.data_sent > HOSTILE_AFTER;
        if trigger {
            st.turned = true;
            tracing::warn!("hostile exit: this set turns {}", self.name());
        }
        match self {
            Self::SeqGap => {
                let had_switch = msgs
                    .iter()
                    .any(|(_, m)| matches!(m, AnyRelayMsg::ConfluxSwitch(_)));
                msgs = self.rewrite_switches(st, msgs);
                if trigger && !had_switch {
                    msgs.insert(0, (None, ConfluxSwitch::new(SEQ_GAP).into()));
                }
            }
            Self::SwitchFlood if trigger => {
                let flood = (0..SWITCH_FLOOD).map(|_| (None, ConfluxSwitch::new(0).into()));
                msgs.splice(0..0, flood);
            }
            Self::Junk if trigger => {
                let junk = (0..JUNK_CELLS).map(|i| {
                    let cmd = JUNK_CMD.wrapping_add(u8::try_from(i % 32).unwrap_or(0));
                    let body = vec![0xA5_u8; 1 + i * 7];
                    (
                        None,
                        AnyRelayMsg::from(Unrecognized::new(RelayCmd::from(cmd), body)),
                    )
                });
                msgs.splice(0..0, junk);
                if let Ok(begin) = Begin::new("junk.invalid", 80, 0) {
                    msgs.insert(JUNK_CELLS, (stream, begin.into()));
                }
            }
            _ => {}
        }
        msgs
    }

    /// [`Hostile::SeqGap`]: once hostile, every SWITCH skips [`SEQ_GAP`].
    fn rewrite_switches(
        self,
        st: &HostileState,
        mut msgs: Vec<(Option<StreamId>, AnyRelayMsg)>,
    ) -> Vec<(Option<StreamId>, AnyRelayMsg)> {
        if self != Self::SeqGap || !st.turned {
            return msgs;
        }
        for (_, m) in &mut msgs {
            if let AnyRelayMsg::ConfluxSwitch(s) = m {
                *m = ConfluxSwitch::new(s.seqno().saturating_add(SEQ_GAP)).into();
            }
        }
        msgs
    }
}

/// A set's progress toward its hostile turn.
#[derive(Debug, Default, Clone)]
pub(in crate::relay) struct HostileState {
    /// DATA cells it sent.
    data_sent: u64,
    /// It turned hostile.
    turned: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn data() -> (Option<StreamId>, AnyRelayMsg) {
        (
            StreamId::new(3),
            tor_cell::relaycell::msg::Data::new(b"x").unwrap().into(),
        )
    }

    fn switch(n: u32) -> (Option<StreamId>, AnyRelayMsg) {
        (None, ConfluxSwitch::new(n).into())
    }

    fn seqnums(msgs: &[(Option<StreamId>, AnyRelayMsg)]) -> Vec<u32> {
        msgs.iter()
            .filter_map(|(_, m)| match m {
                AnyRelayMsg::ConfluxSwitch(s) => Some(s.seqno()),
                _ => None,
            })
            .collect()
    }

    /// Send `n` DATA honestly through `h`: each comes out alone.
    fn honest(h: Hostile, st: &mut HostileState, n: u64) {
        for _ in 0..n {
            let out = h.rewrite(st, std::iter::once(data()));
            assert_eq!(out.len(), 1);
        }
    }

    #[test]
    fn names_round_trip() {
        for h in Hostile::ALL {
            assert_eq!(Hostile::from_name(h.name()), Some(h));
        }
        assert_eq!(Hostile::from_name("nice"), None);
    }

    #[test]
    fn seq_gap_skips_on_every_switch_once_hostile() {
        let h = Hostile::SeqGap;
        let mut st = HostileState::default();
        // Honest at first, SWITCHes too.
        let out = h.rewrite(&mut st, [switch(5), data()].into_iter());
        assert_eq!(seqnums(&out), [5]);
        honest(h, &mut st, HOSTILE_AFTER - 1);
        // The turn: a SWITCH of SEQ_GAP before the DATA on its own leg.
        let out = h.rewrite(&mut st, std::iter::once(data()));
        assert_eq!(seqnums(&out), [SEQ_GAP]);
        assert!(matches!(out[1].1, AnyRelayMsg::Data(_)));
        // Every later SWITCH skips SEQ_GAP more.
        let out = h.rewrite(&mut st, [switch(7), data()].into_iter());
        assert_eq!(seqnums(&out), [7 + SEQ_GAP]);
        let out = h.rewrite(&mut st, std::iter::once(data()));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn switch_flood_once() {
        let h = Hostile::SwitchFlood;
        let mut st = HostileState::default();
        honest(h, &mut st, HOSTILE_AFTER);
        let out = h.rewrite(&mut st, std::iter::once(data()));
        assert_eq!(seqnums(&out), vec![0; SWITCH_FLOOD]);
        assert_eq!(out.len(), SWITCH_FLOOD + 1);
        honest(h, &mut st, 10);
    }

    #[test]
    fn junk_then_a_forward_only_command() {
        let h = Hostile::Junk;
        let mut st = HostileState::default();
        honest(h, &mut st, HOSTILE_AFTER);
        let out = h.rewrite(&mut st, std::iter::once(data()));
        assert_eq!(out.len(), JUNK_CELLS + 2);
        for (s, m) in &out[..JUNK_CELLS] {
            assert_eq!(*s, None);
            let AnyRelayMsg::Unrecognized(u) = m else {
                panic!("{m:?}")
            };
            assert!(u8::from(u.cmd()) >= JUNK_CMD);
        }
        assert!(matches!(out[JUNK_CELLS].1, AnyRelayMsg::Begin(_)));
        assert_eq!(out[JUNK_CELLS].0, data().0);
        assert!(matches!(out[JUNK_CELLS + 1].1, AnyRelayMsg::Data(_)));
        honest(h, &mut st, 10);
    }
}
