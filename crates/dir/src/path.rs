//! Choosing three-hop paths and Conflux leg sets (path-spec §2.2).
//!
//! Every function here is pure: the caller passes the relays, the consensus
//! weights and the random number generator.

use std::fmt;

use rand::Rng;
use tor_protover::{Protocols, named};

use crate::error::{PathError, Rejections};
use crate::relay::{Relay, RelayFlags, RelayId};
use crate::restrict::NodeRestrictions;
use crate::weights::{BandwidthWeights, Position, pick_weighted};

/// How many exits [`choose_conflux_legs`] tries before giving up.
const MAX_CONFLUX_EXIT_TRIES: usize = 16;

/// What a path has to satisfy beyond the rules that always apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathConfig {
    /// Never put two relays of one IPv4 /16 in a path (path-spec §2.2). A
    /// test network on 127.0.0.1 turns this off, like C-tor's
    /// `EnforceDistinctSubnets 0`.
    pub enforce_distinct_subnets: bool,
    /// Never put two relays of one family in a path (path-spec §2.2).
    pub enforce_family: bool,
    /// Every hop needs the Stable flag (path-spec §2.2: long-lived streams;
    /// Conflux legs).
    pub need_stable: bool,
    /// Every hop needs the Fast flag (path-spec §1.1 "fast" circuits).
    pub need_fast: bool,
    /// The exit's policy must allow this port (path-spec §2.2.1 "might
    /// support"). With `None` it must merely not be reject-all (§1.1).
    pub exit_port: Option<u16>,
    /// Subprotocols the exit must support, e.g. [`conflux_exit_protocols`].
    pub exit_protocols: Option<Protocols>,
    /// Relays allowed per position (entry, middle, exit node lists, like
    /// C-tor's `EntryNodes`/`MiddleNodes`/`ExitNodes`); empty lists allow
    /// every relay.
    pub nodes: NodeRestrictions,
}

impl Default for PathConfig {
    /// Restrictions on, Fast needed, Stable not, any port, no protocols.
    fn default() -> Self {
        Self {
            enforce_distinct_subnets: true,
            enforce_family: true,
            need_stable: false,
            need_fast: true,
            exit_port: None,
            exit_protocols: None,
            nodes: NodeRestrictions::default(),
        }
    }
}

impl PathConfig {
    /// The configuration for Conflux legs: Stable and Fast on every hop and
    /// an exit that supports Conflux=1 and FlowCtrl=2 (proposal 329; C-tor
    /// builds its legs with NEED_UPTIME and NEED_CAPACITY).
    pub fn conflux(exit_port: Option<u16>) -> Self {
        Self {
            need_stable: true,
            need_fast: true,
            exit_port,
            exit_protocols: Some(conflux_exit_protocols()),
            ..Self::default()
        }
    }

    /// Words describing what a relay needs for `position`, for errors.
    fn describe(&self, position: Position, chosen: usize) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.nodes.restricts(position) {
            parts.push(format!("one of {}", self.nodes.describe(position)));
        }
        parts.extend(["Running".into(), "Valid".into()]);
        if self.need_fast {
            parts.push("Fast".into());
        }
        if self.need_stable {
            parts.push("Stable".into());
        }
        match position {
            Position::Guard => {
                parts.push("Guard".into());
                parts.push("not MiddleOnly".into());
            }
            Position::Exit => {
                parts.push("Exit".into());
                parts.push("not BadExit".into());
                parts.push("not MiddleOnly".into());
                parts.push(match self.exit_port {
                    Some(p) => format!("allowing port {p}"),
                    None => "allowing some port".into(),
                });
                if let Some(p) = self.exit_protocols.as_ref().filter(|p| !p.is_empty()) {
                    parts.push(format!("supporting {p}"));
                }
            }
            Position::Middle | Position::BeginDir => {}
        }
        if chosen > 0 {
            let mut shared = vec!["identity"];
            if self.enforce_family {
                shared.push("family");
            }
            if self.enforce_distinct_subnets {
                shared.push("/16");
            }
            parts.push(format!(
                "sharing no {} with the {chosen} relays already chosen",
                shared.join(", ")
            ));
        }
        parts.join(", ")
    }
}

/// The subprotocols a Conflux exit must support: Conflux=1 (linking) and
/// FlowCtrl=2 (congestion control).
pub fn conflux_exit_protocols() -> Protocols {
    [named::CONFLUX_BASE, named::FLOWCTRL_CC]
        .into_iter()
        .collect()
}

/// A chosen three-hop path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path<'a> {
    /// First hop.
    pub guard: &'a Relay,
    /// Second hop.
    pub middle: &'a Relay,
    /// Third hop.
    pub exit: &'a Relay,
}

impl<'a> Path<'a> {
    /// The hops in order.
    pub fn hops(&self) -> [&'a Relay; 3] {
        [self.guard, self.middle, self.exit]
    }

    /// The hops' identities in order.
    pub fn ids(&self) -> [RelayId; 3] {
        [self.guard.id, self.middle.id, self.exit.id]
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} -> {}", self.guard, self.middle, self.exit)
    }
}

/// Why one relay was turned down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reject {
    NotListed,
    NotRunningOrValid,
    NotFast,
    NotStable,
    MiddleOnly,
    NotGuard,
    NotExit,
    BadExit,
    PortRejected,
    MissingProtocols,
    AlreadyUsed,
    SameFamily,
    SameSubnet,
}

impl Reject {
    fn tally(self, r: &mut Rejections) {
        let n = match self {
            Self::NotListed => &mut r.not_listed,
            Self::NotRunningOrValid => &mut r.not_running_or_valid,
            Self::NotFast => &mut r.not_fast,
            Self::NotStable => &mut r.not_stable,
            Self::MiddleOnly => &mut r.middle_only,
            Self::NotGuard => &mut r.not_guard,
            Self::NotExit => &mut r.not_exit,
            Self::BadExit => &mut r.bad_exit,
            Self::PortRejected => &mut r.port_rejected,
            Self::MissingProtocols => &mut r.missing_protocols,
            Self::AlreadyUsed => &mut r.already_used,
            Self::SameFamily => &mut r.same_family,
            Self::SameSubnet => &mut r.same_subnet,
        };
        *n += 1;
    }

    fn describe(self) -> &'static str {
        match self {
            Self::NotListed => "it is not in the configured node list",
            Self::NotRunningOrValid => "it is not Running and Valid",
            Self::NotFast => "it lacks the Fast flag",
            Self::NotStable => "it lacks the Stable flag",
            Self::MiddleOnly => "it is MiddleOnly",
            Self::NotGuard => "it lacks the Guard flag",
            Self::NotExit => "it lacks the Exit flag",
            Self::BadExit => "it is a BadExit",
            Self::PortRejected => "its exit policy rejects the port",
            Self::MissingProtocols => "it lacks required protocols",
            Self::AlreadyUsed => "it is already used",
            Self::SameFamily => "it is in the family of another hop",
            Self::SameSubnet => "it is in the /16 of another hop",
        }
    }
}

/// Can `relay`, on its own, fill `position`? (path-spec §2.2, §2.2.1,
/// and the configured node lists.)
fn suitable(relay: &Relay, position: Position, config: &PathConfig) -> Result<(), Reject> {
    if !config.nodes.allows(relay, position) {
        return Err(Reject::NotListed);
    }
    let f = relay.flags;
    if !f.contains(RelayFlags::RUNNING | RelayFlags::VALID) {
        return Err(Reject::NotRunningOrValid);
    }
    if config.need_fast && !f.contains(RelayFlags::FAST) {
        return Err(Reject::NotFast);
    }
    if config.need_stable && !f.contains(RelayFlags::STABLE) {
        return Err(Reject::NotStable);
    }
    match position {
        Position::Middle | Position::BeginDir => Ok(()),
        Position::Guard => {
            if f.contains(RelayFlags::MIDDLE_ONLY) {
                Err(Reject::MiddleOnly)
            } else if !f.contains(RelayFlags::GUARD) {
                Err(Reject::NotGuard)
            } else {
                Ok(())
            }
        }
        Position::Exit => {
            if f.contains(RelayFlags::MIDDLE_ONLY) {
                Err(Reject::MiddleOnly)
            } else if !f.contains(RelayFlags::EXIT) {
                Err(Reject::NotExit)
            } else if f.contains(RelayFlags::BAD_EXIT) {
                Err(Reject::BadExit)
            } else if !match config.exit_port {
                Some(port) => relay.policy.allows_port(port),
                None => relay.policy.allows_some_port(),
            } {
                Err(Reject::PortRejected)
            } else if config
                .exit_protocols
                .as_ref()
                .is_some_and(|p| !relay.supports_all(p))
            {
                Err(Reject::MissingProtocols)
            } else {
                Ok(())
            }
        }
    }
}

/// Can `relay` share a path with `in_path` (path-spec §2.2: not the same
/// relay, family or /16), and is it none of `exclude` (relays used by other
/// Conflux legs)?
fn compatible(
    relay: &Relay,
    config: &PathConfig,
    in_path: &[&Relay],
    exclude: &[&Relay],
) -> Result<(), Reject> {
    for other in in_path.iter().chain(exclude) {
        if relay.same_relay(other) {
            return Err(Reject::AlreadyUsed);
        }
    }
    for other in in_path {
        if config.enforce_family && relay.same_family(other) {
            return Err(Reject::SameFamily);
        }
        if config.enforce_distinct_subnets && relay.same_subnet16(other) {
            return Err(Reject::SameSubnet);
        }
    }
    Ok(())
}

/// The identities of the relays in `relays` that may not share a path with
/// `relay` under `config`: itself, its family and its /16 as configured.
/// Pass them to [`GuardSet::pick_guard`](crate::GuardSet::pick_guard) as
/// exclusions when the exit is chosen first, as path-spec §2.2 orders.
pub fn conflicting_ids(relays: &[Relay], relay: &Relay, config: &PathConfig) -> Vec<RelayId> {
    let mut out = vec![relay.id];
    out.extend(
        relays
            .iter()
            .filter(|r| compatible(r, config, &[relay], &[]).is_err())
            .map(|r| r.id)
            .filter(|id| *id != relay.id),
    );
    out
}

/// The relays that may fill `position`, with their weighted bandwidths, or
/// the error describing why there are none.
fn candidates<'a>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    position: Position,
    config: &PathConfig,
    in_path: &[&Relay],
    exclude: &[&Relay],
) -> Result<Vec<(&'a Relay, u128)>, PathError> {
    let mut rejected = Rejections {
        total: relays.len(),
        ..Rejections::default()
    };
    let mut out = Vec::new();
    for r in relays {
        match suitable(r, position, config).and_then(|()| compatible(r, config, in_path, exclude)) {
            Ok(()) => out.push((r, weights.weighted_bandwidth(r, position))),
            Err(why) => why.tally(&mut rejected),
        }
    }
    if out.is_empty() {
        return Err(PathError::NoCandidate {
            position,
            needs: config.describe(position, in_path.len() + exclude.len()),
            rejected: Box::new(rejected),
        });
    }
    Ok(out)
}

/// Choose one relay for `position`, bandwidth-weighted.
fn choose<'a, R: Rng + ?Sized>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    position: Position,
    config: &PathConfig,
    in_path: &[&Relay],
    exclude: &[&Relay],
    rng: &mut R,
) -> Result<&'a Relay, PathError> {
    let cands = candidates(relays, weights, position, config, in_path, exclude)?;
    pick_weighted(&cands, rng).ok_or_else(|| PathError::NoCandidate {
        position,
        needs: config.describe(position, in_path.len()),
        rejected: Box::default(),
    })
}

/// Choose an exit that can share a path with `in_path`, weighted by
/// bandwidth times the exit-position weight.
pub fn choose_exit<'a, R: Rng + ?Sized>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    config: &PathConfig,
    in_path: &[&Relay],
    rng: &mut R,
) -> Result<&'a Relay, PathError> {
    choose(relays, weights, Position::Exit, config, in_path, &[], rng)
}

/// Choose a middle that can share a path with `in_path`, weighted by
/// bandwidth times the middle-position weight. MiddleOnly relays qualify.
pub fn choose_middle<'a, R: Rng + ?Sized>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    config: &PathConfig,
    in_path: &[&Relay],
    rng: &mut R,
) -> Result<&'a Relay, PathError> {
    choose(relays, weights, Position::Middle, config, in_path, &[], rng)
}

/// Choose a Guard-flagged first hop by bandwidth, for callers without a
/// [`GuardSet`](crate::GuardSet) (path-spec §2.2: "the first node must be a
/// Guard"; §5.1 weights).
pub fn choose_guard<'a, R: Rng + ?Sized>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    config: &PathConfig,
    in_path: &[&Relay],
    rng: &mut R,
) -> Result<&'a Relay, PathError> {
    choose(relays, weights, Position::Guard, config, in_path, &[], rng)
}

/// Check a caller-provided guard against the per-relay rules.
fn check_guard(guard: &Relay, config: &PathConfig) -> Result<(), PathError> {
    suitable(guard, Position::Guard, config).map_err(|why| PathError::UnusableGuard {
        guard: guard.id,
        reason: why.describe().into(),
    })
}

/// Choose a guard, middle and exit (path-spec §2.2).
///
/// With `guard: None` the order is the spec's: exit, then a bandwidth-weighted
/// guard, then the middle. With a guard from the guard set, the exit is chosen
/// among those that can share a path with it, then the middle. Every hop
/// comes from its node list in `config.nodes` when that list is not empty
/// (a given guard outside `entry_nodes` is refused).
pub fn choose_path<'a, R: Rng + ?Sized>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    guard: Option<&'a Relay>,
    config: &PathConfig,
    rng: &mut R,
) -> Result<Path<'a>, PathError> {
    let (guard, exit) = match guard {
        Some(g) => {
            check_guard(g, config)?;
            (g, choose_exit(relays, weights, config, &[g], rng)?)
        }
        None => {
            let exit = choose_exit(relays, weights, config, &[], rng)?;
            (choose_guard(relays, weights, config, &[exit], rng)?, exit)
        }
    };
    let middle = choose_middle(relays, weights, config, &[guard, exit], rng)?;
    Ok(Path {
        guard,
        middle,
        exit,
    })
}

/// Choose `n_legs` paths for one Conflux set: they share one exit, and no
/// guard or middle appears in two legs (proposal 329: legs should not share
/// guards or middles; C-tor requires both distinct). Each leg obeys every
/// rule of [`choose_path`].
///
/// `guards` are the candidate guards in order of preference (e.g. from
/// [`GuardSet::usable_guards`](crate::GuardSet::usable_guards)); each leg
/// takes the first one that fits. If `guards` is empty, guards are chosen by
/// bandwidth from `relays`.
///
/// The exit is chosen first, bandwidth-weighted among the exits that are
/// compatible with enough of `guards`; if the legs cannot be completed
/// through it (e.g. too few middles), other exits are tried.
///
/// With node lists in `config.nodes`, guards, middles and the exit come
/// only from their lists, and the legs still need distinct guards and
/// distinct middles: `entry_nodes` and `middle_nodes` must each name at
/// least `n_legs` usable relays, or the error says which list ran short.
pub fn choose_conflux_legs<'a, R: Rng + ?Sized>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    n_legs: usize,
    config: &PathConfig,
    guards: &[&'a Relay],
    rng: &mut R,
) -> Result<Vec<Path<'a>>, PathError> {
    if n_legs == 0 {
        return Err(PathError::NoLegs);
    }
    let all_exits = candidates(relays, weights, Position::Exit, config, &[], &[])?;
    let mut exits: Vec<(&Relay, u128)> = if guards.is_empty() {
        all_exits.clone()
    } else {
        all_exits
            .iter()
            .filter(|(exit, _)| {
                guards
                    .iter()
                    .filter(|g| {
                        suitable(g, Position::Guard, config).is_ok()
                            && compatible(g, config, &[exit], &[]).is_ok()
                    })
                    .count()
                    >= n_legs
            })
            .copied()
            .collect()
    };
    if exits.is_empty() {
        // Let the attempt below explain what went wrong.
        exits = all_exits;
    }
    let mut tried = 0;
    let mut last = None;
    while tried < MAX_CONFLUX_EXIT_TRIES {
        let Some(exit) = pick_weighted(&exits, rng) else {
            break;
        };
        exits.retain(|(e, _)| !std::ptr::eq(*e, exit));
        tried += 1;
        match legs_through(relays, weights, exit, n_legs, config, guards, rng) {
            Ok(legs) => return Ok(legs),
            Err(e) => last = Some(e),
        }
    }
    Err(PathError::NotEnoughLegs {
        legs: n_legs,
        tried,
        last: Box::new(last.unwrap_or(PathError::NoLegs)),
    })
}

/// Build `n_legs` legs through one exit: first every leg's guard, so that
/// the preferred guards are not taken as middles, then the middles.
fn legs_through<'a, R: Rng + ?Sized>(
    relays: &'a [Relay],
    weights: &BandwidthWeights,
    exit: &'a Relay,
    n_legs: usize,
    config: &PathConfig,
    guards: &[&'a Relay],
    rng: &mut R,
) -> Result<Vec<Path<'a>>, PathError> {
    let mut used: Vec<&'a Relay> = Vec::with_capacity(2 * n_legs);
    for _ in 0..n_legs {
        let guard = if guards.is_empty() {
            choose(
                relays,
                weights,
                Position::Guard,
                config,
                &[exit],
                &used,
                rng,
            )?
        } else {
            first_fitting_guard(guards, exit, config, &used)?
        };
        used.push(guard);
    }
    let mut legs = Vec::with_capacity(n_legs);
    for i in 0..n_legs {
        let guard = *used.get(i).ok_or(PathError::NoLegs)?;
        let middle = choose(
            relays,
            weights,
            Position::Middle,
            config,
            &[guard, exit],
            &used,
            rng,
        )?;
        used.push(middle);
        legs.push(Path {
            guard,
            middle,
            exit,
        });
    }
    Ok(legs)
}

/// The first of `guards` that can be used with `exit` and is not `used`.
fn first_fitting_guard<'a>(
    guards: &[&'a Relay],
    exit: &Relay,
    config: &PathConfig,
    used: &[&Relay],
) -> Result<&'a Relay, PathError> {
    let mut rejected = Rejections {
        total: guards.len(),
        ..Rejections::default()
    };
    for g in guards {
        match suitable(g, Position::Guard, config)
            .and_then(|()| compatible(g, config, &[exit], used))
        {
            Ok(()) => return Ok(g),
            Err(why) => why.tally(&mut rejected),
        }
    }
    Err(PathError::NoCandidate {
        position: Position::Guard,
        needs: format!(
            "one of the {} given guards, {}",
            guards.len(),
            config.describe(Position::Guard, 1 + used.len())
        ),
        rejected: Box::new(rejected),
    })
}

#[cfg(test)]
mod tests;
