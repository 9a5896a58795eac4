//! The circuits of one open channel (tor-spec §5): the circuit map, circuit
//! ids, which circuit a cell from the peer is for, which cells a circuit may
//! send, the order in which circuits take turns, and the cells the channel
//! sends of its own accord (DESTROYs, the DESTROY probe).
//!
//! Sans-IO. The driver reads and frames cells, keeps whatever it attaches
//! to a circuit (`T`, e.g. the ends of the circuit's queues) in the
//! multiplexer, and writes cells; every decision is made here:
//!
//! - [`ChannelMux::open_circuit`] registers a circuit under a fresh id;
//!   [`ChannelMux::close_circuit`] closes one with DESTROY.
//! - Every cell read goes through [`ChannelMux::handle_cell`], which names
//!   the entry to hand it to ([`Inbound`]). An entry that cannot take it
//!   (its queue is full, its owner is gone) is reported with
//!   [`ChannelMux::deliver_failed`].
//! - Circuits' cells are taken in the order of
//!   [`ChannelMux::for_each_in_turn`], one per circuit per round, and each
//!   goes through [`ChannelMux::check_outbound`] before it is written.
//! - After every call the driver drains [`ChannelMux::poll_transmit`] and
//!   writes what it yields, in order, before anything else. The queue is
//!   bounded by what left the map since the last drain: at most one DESTROY
//!   per circuit closed, and at most one probe (and the DESTROY that ends
//!   it) per circuit the peer destroyed.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;

use rand::CryptoRng;
use tor_cell::chancell::msg::{AnyChanMsg, CreateFast, Destroy, DestroyReason};
use tor_cell::chancell::{AnyChanCell, ChanCell, ChanCmd, ChanMsg};

use super::error::ChannelError;
use crate::crypto::fast::CLIENT_HANDSHAKE_LEN;
use crate::ids::CircId;

/// The most significant bit of a circuit id, set by the initiator of the
/// channel and clear for the responder (tor-spec §5.1.1, link protocol 4 and
/// later).
pub const INITIATOR_BIT: u32 = 0x8000_0000;

/// How many random ids [`allocate_circ_id`] tries before giving up.
pub const CIRC_ID_ATTEMPTS: usize = 64;

/// The rules of one end of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxConfig {
    /// We opened the channel: the ids of the circuits we open have the most
    /// significant bit set; else it is clear (tor-spec §5.1.1).
    pub initiator: bool,
    /// Drop CREATE, CREATE2 and CREATE_FAST from the peer (counted in
    /// [`MuxStats::cells_dropped`]): a client carries no circuit it did not
    /// open. When false they are handed to the caller as
    /// [`Inbound::PeerCreate`].
    pub ignore_create: bool,
    /// After the peer destroys one of our circuits while others stay on the
    /// channel, send a CREATE_FAST on a fresh id (tor-spec §5.1.1) and
    /// destroy it once answered, so that the peer flushes DESTROYs it still
    /// holds for the others; if another DESTROY comes while the probe is
    /// out, probe again after it.
    ///
    /// Why: C-tor 0.4.9 writes a queued DESTROY at once only if the
    /// connection's output buffer is empty (`circuitmux_append_destroy_cell`);
    /// a second one waits until some circuit on the channel queues a cell.
    /// On an idle channel the second DESTROY may never come: a Conflux leg
    /// that looks alive and is not. The CREATED_FAST answer goes through the
    /// circuit queue and wakes C-tor's scheduler, which then writes the held
    /// DESTROYs.
    pub destroy_probe: bool,
    /// The reason in the DESTROY sent for a circuit whose entry could not
    /// take a cell because it was full ([`Undelivered::Full`]). tor-spec
    /// §5.4 has clients send NONE so as not to reveal their version;
    /// RESOURCELIMIT tells the relay why.
    pub overflow_reason: DestroyReason,
}

impl MuxConfig {
    /// A client's end: the initiator, ignoring CREATE*, with the DESTROY
    /// probe, and RESOURCELIMIT for overflows.
    pub fn client() -> Self {
        MuxConfig {
            initiator: true,
            ignore_create: true,
            destroy_probe: true,
            overflow_reason: DestroyReason::RESOURCELIMIT,
        }
    }
}

/// What [`ChannelMux::handle_cell`] decided about a cell from the peer.
#[derive(Debug)]
pub enum Inbound<'a, T> {
    /// Hand `msg` to circuit `id`'s entry; if it cannot take it, report it
    /// with [`ChannelMux::deliver_failed`].
    Deliver {
        /// The circuit.
        id: CircId,
        /// What the driver attached to it.
        entry: &'a mut T,
        /// The message.
        msg: AnyChanMsg,
    },
    /// The peer destroyed circuit `id`; `msg` is its DESTROY, to hand to
    /// `entry`. The multiplexer has forgotten the circuit and sends nothing
    /// back (tor-spec §5.4), whether the entry takes the DESTROY or not.
    Destroyed {
        /// The circuit.
        id: CircId,
        /// What the driver attached to it.
        entry: T,
        /// The DESTROY.
        msg: AnyChanMsg,
    },
    /// The peer asks to open circuit `id` (CREATE, CREATE2 or
    /// CREATE_FAST), only when [`MuxConfig::ignore_create`] is off. The
    /// multiplexer does not register circuits the peer opens: answering
    /// them is the responder's part, which a relay adds.
    PeerCreate {
        /// The circuit id the peer chose.
        id: CircId,
        /// The CREATE* message.
        msg: AnyChanMsg,
    },
    /// Nothing for a circuit of the caller's.
    Ignored {
        /// The command of the cell.
        cmd: ChanCmd,
        /// Its circuit id, if not zero.
        id: Option<CircId>,
        /// Why.
        why: IgnoreReason,
    },
}

/// Why [`ChannelMux::handle_cell`] gave a cell to no circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// PADDING or VPADDING (tor-spec §3, §4): counted in
    /// [`MuxStats::padding_in`].
    Padding,
    /// A VERSIONS cell after the handshake (tor-spec §4.1: "MUST be
    /// ignored").
    LateVersions,
    /// PADDING_NEGOTIATE: padding negotiation is not acted upon.
    PaddingNegotiate,
    /// A command we do not know (tor-spec §3: "an OR must drop the cell").
    UnknownCommand,
    /// CREATE* from the peer, with [`MuxConfig::ignore_create`] set.
    PeerCreate,
    /// A channel-level cell (circuit id zero) of no use on an open channel.
    ChannelLevel,
    /// A cell for a circuit that is not on the channel (never was, or was
    /// closed).
    UnknownCircuit,
    /// The answer to our DESTROY probe, which the multiplexer handled.
    ProbeAnswer,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IgnoreReason::Padding => "padding",
            IgnoreReason::LateVersions => "VERSIONS after the handshake",
            IgnoreReason::PaddingNegotiate => "PADDING_NEGOTIATE is not acted upon",
            IgnoreReason::UnknownCommand => "unknown command",
            IgnoreReason::PeerCreate => "CREATE from a peer we carry no circuits for",
            IgnoreReason::ChannelLevel => "channel-level cell of no use on an open channel",
            IgnoreReason::UnknownCircuit => "no such circuit",
            IgnoreReason::ProbeAnswer => "answer to our DESTROY probe",
        })
    }
}

/// Why a circuit's entry could not take a cell
/// ([`ChannelMux::deliver_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Undelivered {
    /// Its inbound queue is full: the circuit is closed with
    /// [`MuxConfig::overflow_reason`] rather than the channel waiting or
    /// buffering for it.
    Full,
    /// Its owner is gone: the circuit is closed with reason NONE.
    Gone,
}

/// Counters of one channel's protocol events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// PADDING and VPADDING cells read (and ignored).
    pub padding_in: u64,
    /// Other cells given to no circuit: for unknown circuits, unknown
    /// commands, late VERSIONS, PADDING_NEGOTIATE, ignored CREATE*.
    pub cells_dropped: u64,
    /// Circuits closed because their entry was full.
    pub overflow_closes: u64,
    /// DESTROY probes sent ([`MuxConfig::destroy_probe`]).
    pub destroy_probes: u64,
}

/// One circuit on the channel.
#[derive(Debug)]
struct Slot<T> {
    /// What the driver attached to it.
    entry: T,
    /// A cell of the circuit's went out: the peer may know it.
    sent: bool,
    /// The peer opened it (we answer its CREATE; a relay's circuits from
    /// the previous hop), rather than we.
    peer_opened: bool,
}

/// The circuits of one open channel and the rules for them (see the
/// module docs).
#[derive(Debug)]
pub struct ChannelMux<T> {
    /// The rules.
    config: MuxConfig,
    /// Our circuits, by id (the probe is not among them).
    circuits: BTreeMap<CircId, Slot<T>>,
    /// The last circuit whose cell was taken: the next turn starts after it.
    cursor: Option<CircId>,
    /// The probe in flight, if any.
    probe: Option<CircId>,
    /// The peer destroyed a circuit while the probe was out.
    probe_again: bool,
    /// Cells the multiplexer sends of its own accord, oldest first.
    transmit: VecDeque<AnyChanCell>,
    /// Counters.
    stats: MuxStats,
}

impl<T> ChannelMux<T> {
    /// No circuits yet.
    pub fn new(config: MuxConfig) -> Self {
        ChannelMux {
            config,
            circuits: BTreeMap::new(),
            cursor: None,
            probe: None,
            probe_again: false,
            transmit: VecDeque::new(),
            stats: MuxStats::default(),
        }
    }

    /// The rules in force.
    pub fn config(&self) -> &MuxConfig {
        &self.config
    }

    /// How many circuits are open (not counting a probe).
    pub fn len(&self) -> usize {
        self.circuits.len()
    }

    /// True if no circuit is open (a probe may be).
    pub fn is_empty(&self) -> bool {
        self.circuits.is_empty()
    }

    /// True if circuit `id` is open.
    pub fn contains(&self, id: CircId) -> bool {
        self.circuits.contains_key(&id)
    }

    /// The counters now.
    pub fn stats(&self) -> MuxStats {
        self.stats
    }

    /// Register a circuit under a fresh id (tor-spec §5.1.1) with `entry`
    /// attached. Nothing is sent: the owner sends its CREATE*. The only
    /// error is [`ChannelError::CircIdsExhausted`].
    pub fn open_circuit<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        entry: T,
    ) -> Result<CircId, ChannelError> {
        let id = self.fresh_id(rng)?;
        self.circuits.insert(
            id,
            Slot {
                entry,
                sent: false,
                peer_opened: false,
            },
        );
        Ok(id)
    }

    /// Register circuit `id`, which the peer opened with a CREATE* that
    /// [`handle_cell`](Self::handle_cell) gave as [`Inbound::PeerCreate`],
    /// with `entry` attached; the caller's answer (CREATED*, or DESTROY)
    /// goes through [`check_outbound`](Self::check_outbound). Refused, the
    /// peer's fault, if the id is in use, or has the bit the wrong end
    /// sets (tor-spec §5.1.1: the initiator of the channel sets the most
    /// significant bit of the ids it picks).
    pub fn accept_circuit(&mut self, id: CircId, entry: T) -> Result<(), ChannelError> {
        if id.high_bit() == self.config.initiator {
            return Err(ChannelError::BadPeerCircId {
                circ_id: id.get(),
                why: "its most significant bit belongs to the other end (tor-spec §5.1.1)",
            });
        }
        if self.circuits.contains_key(&id) || self.probe == Some(id) {
            return Err(ChannelError::BadPeerCircId {
                circ_id: id.get(),
                why: "a circuit with that id is open (tor-spec §5.1.1)",
            });
        }
        self.circuits.insert(
            id,
            Slot {
                entry,
                sent: false,
                peer_opened: true,
            },
        );
        Ok(())
    }

    /// Close circuit `id` with DESTROY `reason` (clients should say NONE,
    /// tor-spec §5.4); its entry is dropped. False if it was not open.
    pub fn close_circuit(&mut self, id: CircId, reason: DestroyReason) -> bool {
        if self.circuits.remove(&id).is_none() {
            return false;
        }
        self.queue_destroy(id, reason);
        true
    }

    /// Undo [`open_circuit`](Self::open_circuit) for a circuit whose owner
    /// went away: if it never sent a cell, the peer never heard of it and it
    /// is forgotten without DESTROY; otherwise it is closed with NONE. False
    /// if it was not open.
    pub fn cancel_circuit(&mut self, id: CircId) -> bool {
        match self.circuits.get(&id) {
            Some(slot) if !slot.sent => self.circuits.remove(&id).is_some(),
            Some(_) => self.close_circuit(id, DestroyReason::NONE),
            None => false,
        }
    }

    /// Decide what to do with `cell`, read from the open channel (the codec
    /// has checked that its circuit id suits its command). `rng` is for a
    /// probe the cell may call for. An error is the peer's fault and ends
    /// the channel: a handshake cell on an open channel.
    pub fn handle_cell<R: CryptoRng + ?Sized>(
        &mut self,
        cell: AnyChanCell,
        rng: &mut R,
    ) -> Result<Inbound<'_, T>, ChannelError> {
        let (wire_id, msg) = cell.into_circid_and_msg();
        let cmd = msg.cmd();
        let id = CircId::new(tor_cell::chancell::CircId::get_or_zero(wire_id));
        let ignored = |why| Inbound::Ignored { cmd, id, why };
        let why = match msg {
            AnyChanMsg::Padding(_) | AnyChanMsg::Vpadding(_) => {
                self.stats.padding_in = self.stats.padding_in.saturating_add(1);
                return Ok(ignored(IgnoreReason::Padding));
            }
            AnyChanMsg::Versions(_) => IgnoreReason::LateVersions,
            AnyChanMsg::PaddingNegotiate(_) => IgnoreReason::PaddingNegotiate,
            AnyChanMsg::Unrecognized(_) => IgnoreReason::UnknownCommand,
            AnyChanMsg::Create(_) | AnyChanMsg::Create2(_) | AnyChanMsg::CreateFast(_) => {
                match id {
                    Some(id) if !self.config.ignore_create => {
                        return Ok(Inbound::PeerCreate { id, msg });
                    }
                    Some(_) => IgnoreReason::PeerCreate,
                    None => IgnoreReason::ChannelLevel,
                }
            }
            AnyChanMsg::Certs(_)
            | AnyChanMsg::AuthChallenge(_)
            | AnyChanMsg::Authenticate(_)
            | AnyChanMsg::Netinfo(_) => {
                return Err(ChannelError::UnexpectedCell {
                    cmd,
                    expecting: "circuit cells (the link handshake is over)",
                });
            }
            msg => match id {
                // The codec refuses circuit commands on circuit 0; tor-cell
                // may learn new channel-level commands.
                None => IgnoreReason::ChannelLevel,
                Some(id) if Some(id) == self.probe => {
                    self.probe_answered(id, &msg, rng);
                    return Ok(ignored(IgnoreReason::ProbeAnswer));
                }
                Some(id) if matches!(msg, AnyChanMsg::Destroy(_)) => {
                    match self.circuits.remove(&id) {
                        Some(slot) => {
                            self.after_peer_destroy(rng);
                            return Ok(Inbound::Destroyed {
                                id,
                                entry: slot.entry,
                                msg,
                            });
                        }
                        None => IgnoreReason::UnknownCircuit,
                    }
                }
                Some(id) => match self.circuits.get_mut(&id) {
                    Some(slot) => {
                        return Ok(Inbound::Deliver {
                            id,
                            entry: &mut slot.entry,
                            msg,
                        });
                    }
                    None => IgnoreReason::UnknownCircuit,
                },
            },
        };
        self.stats.cells_dropped = self.stats.cells_dropped.saturating_add(1);
        Ok(ignored(why))
    }

    /// Circuit `id`'s entry could not take the cell
    /// [`handle_cell`](Self::handle_cell) gave it: close the circuit (its
    /// entry is dropped) with DESTROY, [`MuxConfig::overflow_reason`] if it
    /// was full, NONE if its owner is gone. False if it was not open.
    pub fn deliver_failed(&mut self, id: CircId, why: Undelivered) -> bool {
        if self.circuits.remove(&id).is_none() {
            return false;
        }
        let reason = match why {
            Undelivered::Full => {
                self.stats.overflow_closes = self.stats.overflow_closes.saturating_add(1);
                self.config.overflow_reason
            }
            Undelivered::Gone => DestroyReason::NONE,
        };
        self.queue_destroy(id, reason);
        true
    }

    /// Circuit `id`'s owner stopped sending for good (its queue ended):
    /// close it with DESTROY NONE. False if it was not open.
    pub fn owner_gone(&mut self, id: CircId) -> bool {
        self.close_circuit(id, DestroyReason::NONE)
    }

    /// Call `f` on every circuit in turn, starting after the last circuit
    /// whose cell went through [`check_outbound`](Self::check_outbound) and
    /// wrapping around: taking at most one cell from each per call is round
    /// robin.
    pub fn for_each_in_turn(&mut self, mut f: impl FnMut(CircId, &mut T)) {
        let mut call = |(id, slot): (&CircId, &mut Slot<T>)| f(*id, &mut slot.entry);
        match self.cursor {
            None => self.circuits.iter_mut().for_each(call),
            Some(cursor) => {
                self.circuits
                    .range_mut((Bound::Excluded(cursor), Bound::Unbounded))
                    .for_each(&mut call);
                self.circuits.range_mut(..=cursor).for_each(call);
            }
        }
    }

    /// Check a cell circuit `id` wants to send: `Ok(Some(cell))` to write,
    /// `Ok(None)` if the circuit is no longer open (the cell is dropped).
    /// A circuit of ours sends CREATE*, RELAY, RELAY_EARLY and DESTROY
    /// (tor-spec §5); anything else closes it with DESTROY NONE and is
    /// [`ChannelError::CellNotAllowed`]. A DESTROY closes it (no second
    /// DESTROY). The circuit's turn is over: the next starts after it.
    pub fn check_outbound(
        &mut self,
        id: CircId,
        msg: AnyChanMsg,
    ) -> Result<Option<AnyChanCell>, ChannelError> {
        self.cursor = Some(id);
        let Some(slot) = self.circuits.get(&id) else {
            return Ok(None);
        };
        let allowed = if slot.peer_opened {
            responder_may_send(&msg)
        } else {
            initiator_may_send(&msg)
        };
        if !allowed {
            self.close_circuit(id, DestroyReason::NONE);
            return Err(ChannelError::CellNotAllowed {
                circ_id: id.get(),
                cmd: msg.cmd(),
            });
        }
        if matches!(msg, AnyChanMsg::Destroy(_)) {
            self.circuits.remove(&id);
        } else if let Some(slot) = self.circuits.get_mut(&id) {
            slot.sent = true;
        }
        Ok(Some(ChanCell::new(wire_id(id), msg)))
    }

    /// The driver could not write a cell [`check_outbound`](Self::check_outbound)
    /// let through (it did not encode): close the circuit with DESTROY NONE.
    /// False if it was not open.
    pub fn send_failed(&mut self, id: CircId) -> bool {
        self.close_circuit(id, DestroyReason::NONE)
    }

    /// The next cell the multiplexer sends of its own accord (DESTROYs,
    /// probes). Drain after every call, before writing circuits' cells.
    pub fn poll_transmit(&mut self) -> Option<AnyChanCell> {
        self.transmit.pop_front()
    }

    /// The channel is gone: drop every entry and every cell not yet taken
    /// (a closed channel ends all its circuits, tor-spec §5.4).
    pub fn clear(&mut self) {
        self.circuits.clear();
        self.transmit.clear();
        self.cursor = None;
        self.probe = None;
        self.probe_again = false;
    }

    /// An id in use by no circuit and not by the probe.
    fn fresh_id<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<CircId, ChannelError> {
        allocate_circ_id(
            || rng.next_u32(),
            self.config.initiator,
            |id| self.circuits.contains_key(&id) || self.probe == Some(id),
        )
        .ok_or(ChannelError::CircIdsExhausted {
            attempts: CIRC_ID_ATTEMPTS,
        })
    }

    /// The peer destroyed one of our circuits: if others remain, probe
    /// ([`MuxConfig::destroy_probe`]), or probe again once the probe in
    /// flight is answered.
    fn after_peer_destroy<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        if !self.config.destroy_probe || self.circuits.is_empty() {
            return;
        }
        if self.probe.is_some() {
            self.probe_again = true;
        } else {
            self.send_probe(rng);
        }
    }

    /// Queue a CREATE_FAST (tor-spec §5.1.1, §5.1.5) on a fresh id.
    fn send_probe<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        // 64 ids in use in a row: never short of a bug; no probe then.
        let Ok(id) = self.fresh_id(rng) else {
            return;
        };
        let mut key = [0_u8; CLIENT_HANDSHAKE_LEN];
        rng.fill_bytes(&mut key);
        self.transmit.push_back(ChanCell::new(
            wire_id(id),
            CreateFast::new(key.to_vec()).into(),
        ));
        self.stats.destroy_probes = self.stats.destroy_probes.saturating_add(1);
        self.probe = Some(id);
    }

    /// The peer answered the probe `id` with `msg`: the probe did its work.
    /// Destroy it unless the peer did (tor-spec §5.4), and probe again if
    /// another DESTROY came meanwhile and the answer was not a refusal.
    fn probe_answered<R: CryptoRng + ?Sized>(&mut self, id: CircId, msg: &AnyChanMsg, rng: &mut R) {
        self.probe = None;
        let refused = matches!(msg, AnyChanMsg::Destroy(_));
        if !refused {
            self.queue_destroy(id, DestroyReason::NONE);
        }
        if std::mem::take(&mut self.probe_again) && !refused {
            self.after_peer_destroy(rng);
        }
    }

    /// Queue a DESTROY for `id`.
    fn queue_destroy(&mut self, id: CircId, reason: DestroyReason) {
        self.transmit
            .push_back(ChanCell::new(wire_id(id), Destroy::new(reason).into()));
    }
}

/// True if a circuit we opened may send `msg`: the circuit commands of the
/// circuit's initiator (tor-spec §5).
pub fn initiator_may_send(msg: &AnyChanMsg) -> bool {
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

/// True if we may send `msg` on a circuit the peer opened: the answer to
/// its CREATE*, then RELAY toward it, or DESTROY (tor-spec §5; RELAY_EARLY
/// only goes away from the circuit's origin, §5.6).
pub fn responder_may_send(msg: &AnyChanMsg) -> bool {
    matches!(
        msg,
        AnyChanMsg::Created(_)
            | AnyChanMsg::CreatedFast(_)
            | AnyChanMsg::Created2(_)
            | AnyChanMsg::Relay(_)
            | AnyChanMsg::Destroy(_)
    )
}

/// A fresh circuit id from `random` (called up to [`CIRC_ID_ATTEMPTS`]
/// times) with [`INITIATOR_BIT`] set if `initiator`, clear if not, and not
/// `in_use`; `None` if every attempt hit an id in use (or zero). With 2^31
/// ids and a few hundred circuits per channel at most, a collision is rare
/// and 64 in a row never happens short of a bug.
pub fn allocate_circ_id(
    mut random: impl FnMut() -> u32,
    initiator: bool,
    in_use: impl Fn(CircId) -> bool,
) -> Option<CircId> {
    let pick = |r: u32| {
        if initiator {
            r | INITIATOR_BIT
        } else {
            r & !INITIATOR_BIT
        }
    };
    (0..CIRC_ID_ATTEMPTS)
        .filter_map(|_| CircId::new(pick(random())))
        .find(|id| !in_use(*id))
}

/// `id` as tor-cell's circuit id.
fn wire_id(id: CircId) -> Option<tor_cell::chancell::CircId> {
    tor_cell::chancell::CircId::new(id.get())
}
