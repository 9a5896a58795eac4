//! Property test of the channel multiplexer ([`super::mux`]) against a
//! model of its rules: random interleavings of opens, cells from a
//! (possibly hostile) peer, failed deliveries, closes and circuits' own
//! cells, under every role.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cell::chancell::msg::{
    AnyChanMsg, CreateFast, CreatedFast, DestroyReason, Netinfo, Padding,
};
use tor_cell::chancell::{ChanMsg, CircId as WireCircId};

use super::error::ChannelError;
use super::mux::*;
use super::mux_tests::{cell, destroy, drain, relay};
use crate::ids::CircId;

/// One step of a property-test run.
#[derive(Debug, Clone)]
enum Op {
    /// Open a circuit.
    Open,
    /// The peer sends `kind` on `target`.
    Peer(Target, PeerKind),
    /// The entry of the `n`th open circuit could not take a cell.
    DeliverFailed(usize, bool),
    /// We close the `n`th open circuit.
    Close(usize),
    /// The owner of the `n`th open circuit went away.
    Cancel(usize),
    /// The `n`th open circuit sends.
    Send(usize, SendKind),
}

/// The circuit a peer's cell names.
#[derive(Debug, Clone)]
enum Target {
    /// The `n`th open circuit.
    Open(usize),
    /// The `n`th circuit ever opened (maybe closed).
    Ever(usize),
    /// The probe in flight, if any.
    Probe,
    /// Any id.
    Any(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerKind {
    Relay,
    Destroy,
    CreatedFast,
    Create,
    Padding,
    Netinfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendKind {
    Relay,
    Destroy,
    Padding,
}

fn op() -> impl Strategy<Value = Op> {
    let target = prop_oneof![
        4 => any::<usize>().prop_map(Target::Open),
        2 => any::<usize>().prop_map(Target::Ever),
        2 => Just(Target::Probe),
        1 => any::<u32>().prop_map(Target::Any),
    ];
    let peer_kind = prop_oneof![
        4 => Just(PeerKind::Relay),
        4 => Just(PeerKind::Destroy),
        1 => Just(PeerKind::CreatedFast),
        1 => Just(PeerKind::Create),
        1 => Just(PeerKind::Padding),
        1 => Just(PeerKind::Netinfo),
    ];
    let send_kind = prop_oneof![
        4 => Just(SendKind::Relay),
        1 => Just(SendKind::Destroy),
        1 => Just(SendKind::Padding),
    ];
    prop_oneof![
        3 => Just(Op::Open),
        8 => (target, peer_kind).prop_map(|(t, k)| Op::Peer(t, k)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, f)| Op::DeliverFailed(n, f)),
        1 => any::<usize>().prop_map(Op::Close),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => (any::<usize>(), send_kind).prop_map(|(n, k)| Op::Send(n, k)),
    ]
}

/// What the model expects the mux to send after one step.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Destroy(u32, DestroyReason),
    Probe,
}

/// The rules, written out plainly.
#[derive(Debug, Default)]
struct Model {
    /// Open circuits: entry and whether they sent a cell.
    open: BTreeMap<u32, (u64, bool)>,
    ever: Vec<u32>,
    probe: Option<u32>,
    probe_again: bool,
    probes: u64,
}

impl Model {
    fn nth_open(&self, n: usize) -> Option<u32> {
        let len = self.open.len();
        (len > 0).then(|| *self.open.keys().nth(n % len).unwrap())
    }

    fn target(&self, t: &Target) -> u32 {
        match t {
            Target::Open(n) => self.nth_open(*n).unwrap_or(0x8000_0001),
            Target::Ever(n) if !self.ever.is_empty() => self.ever[n % self.ever.len()],
            Target::Ever(_) => 1,
            Target::Probe => self.probe.unwrap_or(0x8000_0002),
            Target::Any(v) => *v,
        }
    }

    /// The peer destroyed one of ours.
    fn after_peer_destroy(&mut self, config: &MuxConfig, expect: &mut Vec<Expect>) {
        if config.destroy_probe && !self.open.is_empty() {
            if self.probe.is_some() {
                self.probe_again = true;
            } else {
                expect.push(Expect::Probe);
            }
        }
    }
}

fn peer_msg(kind: PeerKind) -> AnyChanMsg {
    match kind {
        PeerKind::Relay => relay(1),
        PeerKind::Destroy => destroy(DestroyReason::FINISHED),
        PeerKind::CreatedFast => CreatedFast::new(vec![0; 40]).into(),
        PeerKind::Create => CreateFast::new(vec![0; 20]).into(),
        PeerKind::Padding => Padding::new().into(),
        PeerKind::Netinfo => Netinfo::from_client(None).into(),
    }
}

fn run(config: MuxConfig, seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut mux = ChannelMux::<u64>::new(config);
    let mut model = Model::default();
    let mut r = StdRng::seed_from_u64(seed);
    let mut tag = 0_u64;
    for op in ops {
        let mut expect = Vec::new();
        match op {
            Op::Open => {
                tag += 1;
                let id = mux.open_circuit(&mut r, tag).unwrap().get();
                prop_assert_eq!(id & INITIATOR_BIT != 0, config.initiator, "{:#x}", id);
                prop_assert!(!model.open.contains_key(&id), "id in use");
                prop_assert_ne!(Some(id), model.probe, "the probe's id");
                model.open.insert(id, (tag, false));
                model.ever.push(id);
            }
            Op::Peer(t, kind) => {
                let mut id = model.target(t);
                if matches!(kind, PeerKind::Padding | PeerKind::Netinfo) {
                    id = 0;
                }
                let got = mux.handle_cell(cell(id, peer_msg(*kind)), &mut r);
                let decision = match got {
                    Err(e) => {
                        prop_assert_eq!(*kind, PeerKind::Netinfo, "{}", e);
                        None
                    }
                    Ok(Inbound::Ignored { why, .. }) => Some(Err(why)),
                    Ok(Inbound::Deliver { id: d, entry, .. }) => Some(Ok((d.get(), *entry, false))),
                    Ok(Inbound::Destroyed { id: d, entry, .. }) => Some(Ok((d.get(), entry, true))),
                    Ok(Inbound::PeerCreate { .. }) => {
                        prop_assert!(!config.ignore_create);
                        prop_assert_eq!(*kind, PeerKind::Create);
                        None
                    }
                };
                match (kind, decision) {
                    (PeerKind::Netinfo, d) => prop_assert!(d.is_none()),
                    (PeerKind::Padding, d) => prop_assert_eq!(d, Some(Err(IgnoreReason::Padding))),
                    (PeerKind::Create, d) if config.ignore_create => {
                        let why = if id == 0 {
                            IgnoreReason::ChannelLevel
                        } else {
                            IgnoreReason::PeerCreate
                        };
                        prop_assert_eq!(d, Some(Err(why)));
                    }
                    (PeerKind::Create, d) => prop_assert!(d.is_none() || id == 0),
                    (_, d) if id == 0 => prop_assert_eq!(d, Some(Err(IgnoreReason::ChannelLevel))),
                    (kind, d) if Some(id) == model.probe => {
                        prop_assert_eq!(d, Some(Err(IgnoreReason::ProbeAnswer)));
                        model.probe = None;
                        let refused = *kind == PeerKind::Destroy;
                        if !refused {
                            expect.push(Expect::Destroy(id, DestroyReason::NONE));
                        }
                        if std::mem::take(&mut model.probe_again) && !refused {
                            model.after_peer_destroy(&config, &mut expect);
                        }
                    }
                    (kind, d) => match model.open.get(&id) {
                        // Cells for unknown circuits never reach an entry.
                        None => prop_assert_eq!(d, Some(Err(IgnoreReason::UnknownCircuit))),
                        Some(&(entry, _)) => {
                            let destroyed = *kind == PeerKind::Destroy;
                            prop_assert_eq!(d, Some(Ok((id, entry, destroyed))));
                            if destroyed {
                                model.open.remove(&id);
                                model.after_peer_destroy(&config, &mut expect);
                            }
                        }
                    },
                }
            }
            Op::DeliverFailed(n, full) => {
                let id = model.nth_open(*n).unwrap_or(0x8000_0003);
                let why = if *full {
                    Undelivered::Full
                } else {
                    Undelivered::Gone
                };
                let open = model.open.remove(&id).is_some();
                prop_assert_eq!(mux.deliver_failed(CircId::new(id).unwrap(), why), open);
                if open {
                    let reason = if *full {
                        config.overflow_reason
                    } else {
                        DestroyReason::NONE
                    };
                    expect.push(Expect::Destroy(id, reason));
                }
            }
            Op::Close(n) => {
                let id = model.nth_open(*n).unwrap_or(0x8000_0004);
                let open = model.open.remove(&id).is_some();
                prop_assert_eq!(
                    mux.close_circuit(CircId::new(id).unwrap(), DestroyReason::FINISHED),
                    open
                );
                if open {
                    expect.push(Expect::Destroy(id, DestroyReason::FINISHED));
                }
            }
            Op::Cancel(n) => {
                let id = model.nth_open(*n).unwrap_or(0x8000_0005);
                let was = model.open.remove(&id);
                prop_assert_eq!(mux.cancel_circuit(CircId::new(id).unwrap()), was.is_some());
                if let Some((_, true)) = was {
                    expect.push(Expect::Destroy(id, DestroyReason::NONE));
                }
            }
            Op::Send(n, kind) => {
                let id = model.nth_open(*n).unwrap_or(0x8000_0006);
                let msg = match kind {
                    SendKind::Relay => relay(0),
                    SendKind::Destroy => destroy(DestroyReason::NONE),
                    SendKind::Padding => Padding::new().into(),
                };
                let got = mux.check_outbound(CircId::new(id).unwrap(), msg);
                match (model.open.get_mut(&id), kind) {
                    (None, _) => prop_assert!(matches!(got, Ok(None))),
                    (Some(slot), SendKind::Relay) => {
                        slot.1 = true;
                        let c = got.unwrap().unwrap();
                        prop_assert_eq!(WireCircId::get_or_zero(c.circid()), id);
                    }
                    (Some(_), SendKind::Destroy) => {
                        prop_assert!(matches!(got, Ok(Some(_))));
                        model.open.remove(&id);
                    }
                    (Some(_), SendKind::Padding) => {
                        prop_assert!(
                            matches!(got, Err(ChannelError::CellNotAllowed { .. })),
                            "{:?}",
                            got
                        );
                        model.open.remove(&id);
                        expect.push(Expect::Destroy(id, DestroyReason::NONE));
                    }
                }
            }
        }
        // What the mux sends of its own accord: exactly what the rules say.
        let out = drain(&mut mux);
        prop_assert_eq!(out.len(), expect.len(), "{:?} vs {:?}", out, expect);
        for ((id, msg), want) in out.into_iter().zip(expect) {
            match (msg, want) {
                (AnyChanMsg::Destroy(d), Expect::Destroy(w, reason)) => {
                    prop_assert_eq!((id, d.reason()), (w, reason));
                }
                (AnyChanMsg::CreateFast(_), Expect::Probe) => {
                    prop_assert_eq!(id & INITIATOR_BIT != 0, config.initiator);
                    prop_assert!(!model.open.contains_key(&id), "probe on an open id");
                    model.probe = Some(id);
                    model.probes += 1;
                }
                (msg, want) => prop_assert!(false, "{} for {:#x}, want {:?}", msg.cmd(), id, want),
            }
        }
        prop_assert_eq!(mux.len(), model.open.len());
        prop_assert_eq!(mux.stats().destroy_probes, model.probes);
        for id in model.open.keys() {
            prop_assert!(mux.contains(CircId::new(*id).unwrap()));
        }
    }
    Ok(())
}

fn config() -> impl Strategy<Value = MuxConfig> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(initiator, ignore_create, destroy_probe, none)| MuxConfig {
            initiator,
            ignore_create,
            destroy_probe,
            overflow_reason: if none {
                DestroyReason::NONE
            } else {
                DestroyReason::RESOURCELIMIT
            },
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Circuit ids carry the role's bit and are unique; cells for unknown
    /// circuits never reach an entry; DESTROYs and probes go out exactly as
    /// the rules say (none for a circuit the peer destroyed or never heard
    /// of, one probe at a time, again after a DESTROY that came meanwhile).
    #[test]
    fn mux_follows_the_rules(
        config in config(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(config, seed, &ops)?;
    }
}
