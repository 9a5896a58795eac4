//! The directory sources and which to ask next (dir-spec §5; C-tor
//! `directory_get_from_dirserver`, `directory_pick_generic_dirserver`).
//!
//! Three tiers, asked in this order: directory caches among our guards
//! once a consensus is known (over BEGIN_DIR on a one-hop circuit), the
//! fallback directories (likewise), and the authorities' DirPorts only
//! when no cache or fallback answers (they answer clients 503 under load).
//! Within a tier, round robin from a random start, skipping sources that
//! failed. A source that failed is avoided until it answers well or every
//! source of every tier has failed, when all are tried again (C-tor
//! `PDS_RETRY_IF_NO_SERVERS`). How soon anything is asked again is the
//! download schedules' business, not the sources'.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

use rand::seq::SliceRandom as _;
use rand::{Rng, RngExt as _};

use crate::relay::{Ed25519Id, Relay, RelayFlags, RelayId};
use crate::weights::{BandwidthWeights, Position, pick_weighted};

/// Where a source comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A directory cache from the consensus: one of our guards.
    Cache,
    /// A fallback directory (shipped, or from the network file).
    Fallback,
    /// A directory authority's DirPort.
    Authority,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cache => "directory cache",
            Self::Fallback => "fallback",
            Self::Authority => "authority",
        })
    }
}

/// A relay asked over a one-hop circuit: what the channel must prove
/// (its CERTS must match the identities) and what the circuit needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneHopTarget {
    /// RSA identity.
    pub id: RelayId,
    /// Ed25519 identity, if known (a fallback's table, a microdescriptor).
    pub ed_id: Option<Ed25519Id>,
    /// IPv4 ORPort.
    pub addr: SocketAddrV4,
    /// The ntor onion key, if known: ntor then, CREATE_FAST without
    /// (tor-spec §5.1.5: C-tor uses CREATE_FAST when it knows no onion key).
    pub ntor_key: Option<[u8; 32]>,
    /// Nickname, for messages.
    pub nickname: String,
}

impl OneHopTarget {
    /// The target for a listed relay.
    pub fn of(relay: &Relay) -> Self {
        Self {
            id: relay.id,
            ed_id: relay.ed_id,
            addr: relay.addr,
            ntor_key: relay.ntor_key,
            nickname: relay.nickname.clone(),
        }
    }
}

/// A source of directory documents and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirSource {
    /// BEGIN_DIR (tor-spec §6.2) on a one-hop circuit to a relay.
    BeginDir {
        /// A cache or a fallback.
        kind: SourceKind,
        /// The relay.
        target: OneHopTarget,
    },
    /// Plain HTTP to an authority's DirPort.
    DirPort {
        /// The authority's nickname.
        nickname: String,
        /// The DirPort.
        addr: SocketAddr,
    },
}

/// What identifies a source across changes of the cache list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    Relay(RelayId),
    DirPort(SocketAddr),
}

impl DirSource {
    /// Where it comes from.
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::BeginDir { kind, .. } => *kind,
            Self::DirPort { .. } => SourceKind::Authority,
        }
    }

    /// The address connected to: the ORPort, or the DirPort.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::BeginDir { target, .. } => SocketAddr::V4(target.addr),
            Self::DirPort { addr, .. } => *addr,
        }
    }

    /// Its nickname.
    pub fn nickname(&self) -> &str {
        match self {
            Self::BeginDir { target, .. } => &target.nickname,
            Self::DirPort { nickname, .. } => nickname,
        }
    }

    /// True if asked over BEGIN_DIR.
    pub fn is_begin_dir(&self) -> bool {
        matches!(self, Self::BeginDir { .. })
    }

    pub(crate) fn key(&self) -> SourceKey {
        match self {
            Self::BeginDir { target, .. } => SourceKey::Relay(target.id),
            Self::DirPort { addr, .. } => SourceKey::DirPort(*addr),
        }
    }
}

impl fmt::Display for DirSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BeginDir { kind, target } => {
                write!(f, "{kind} {} ({})", target.nickname, target.addr)
            }
            Self::DirPort { nickname, addr } => write!(f, "authority {nickname} ({addr})"),
        }
    }
}

/// One tier: its sources round robin, with the failed ones marked.
#[derive(Debug, Clone, Default)]
struct Tier {
    list: Vec<DirSource>,
    down: Vec<bool>,
    next: usize,
}

impl Tier {
    fn new(list: Vec<DirSource>, first: usize) -> Self {
        let next = first.checked_rem(list.len()).unwrap_or(0);
        Self {
            down: vec![false; list.len()],
            list,
            next,
        }
    }

    fn any_up(&self) -> bool {
        self.down.iter().any(|d| !d)
    }

    fn pick(&mut self) -> Option<DirSource> {
        let n = self.list.len();
        let i = (0..n)
            .map(|step| (self.next + step) % n)
            .find(|&i| !self.down.get(i).copied().unwrap_or(true))?;
        self.next = (i + 1) % n;
        self.list.get(i).cloned()
    }

    fn set_down(&mut self, key: SourceKey, down: bool) {
        for (s, d) in self.list.iter().zip(self.down.iter_mut()) {
            if s.key() == key {
                *d = down;
            }
        }
    }
}

/// The three tiers.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    caches: Tier,
    fallbacks: Tier,
    authorities: Tier,
}

impl Sources {
    /// Fallbacks in a random order, authorities from a random one.
    pub(crate) fn new<R: Rng + ?Sized>(
        mut fallbacks: Vec<DirSource>,
        authorities: Vec<DirSource>,
        rng: &mut R,
    ) -> Self {
        fallbacks.shuffle(rng);
        let first = if authorities.is_empty() {
            0
        } else {
            rng.random_range(0..authorities.len())
        };
        Self {
            caches: Tier::default(),
            fallbacks: Tier::new(fallbacks, 0),
            authorities: Tier::new(authorities, first),
        }
    }

    /// True if there is no source at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.tiers().iter().all(|t| t.list.is_empty())
    }

    fn tiers(&self) -> [&Tier; 3] {
        [&self.caches, &self.fallbacks, &self.authorities]
    }

    fn tiers_mut(&mut self) -> [&mut Tier; 3] {
        [&mut self.caches, &mut self.fallbacks, &mut self.authorities]
    }

    /// The caches now in use.
    pub(crate) fn caches(&self) -> &[DirSource] {
        &self.caches.list
    }

    /// Replace the caches; one that stays keeps its mark.
    pub(crate) fn set_caches(&mut self, caches: Vec<DirSource>) {
        let old = std::mem::take(&mut self.caches);
        let down = caches
            .iter()
            .map(|c| {
                old.list
                    .iter()
                    .zip(&old.down)
                    .any(|(o, d)| *d && o.key() == c.key())
            })
            .collect();
        self.caches = Tier {
            list: caches,
            down,
            next: 0,
        };
    }

    /// The next source: from the first tier with a source that has not
    /// failed; when every source has failed, all are marked up again
    /// first. `None` only with no sources.
    pub(crate) fn pick(&mut self) -> Option<DirSource> {
        if self.is_empty() {
            return None;
        }
        if !self.tiers().iter().any(|t| t.any_up()) {
            for t in self.tiers_mut() {
                t.down.fill(false);
            }
        }
        self.tiers_mut()
            .into_iter()
            .find(|t| t.any_up())
            .and_then(Tier::pick)
    }

    /// The source failed.
    pub(crate) fn mark_down(&mut self, source: &DirSource) {
        for t in self.tiers_mut() {
            t.set_down(source.key(), true);
        }
    }

    /// The source answered well.
    pub(crate) fn mark_up(&mut self, source: &DirSource) {
        for t in self.tiers_mut() {
            t.set_down(source.key(), false);
        }
    }
}

/// Directory caches kept at once when we choose them ourselves.
pub const DIR_CACHES: usize = 3;

/// True if `relay` can be asked over BEGIN_DIR as one of our guards: a
/// running, valid guard that caches the directory (V2Dir).
pub fn is_dir_guard(relay: &Relay) -> bool {
    relay.has_flags(RelayFlags::RUNNING | RelayFlags::VALID | RelayFlags::GUARD | RelayFlags::V2DIR)
}

/// The directory caches to ask once a consensus lists `listed` (C-tor
/// `guards_choose_dirguard`): the client's guards (`guards`, best first)
/// that the consensus lists as directory caches; without such guards,
/// [`DIR_CACHES`] directory guards of our own, those of `previous` still
/// listed kept and the rest drawn by their BEGIN_DIR weight (dir-spec
/// §3.8.3 `Wbg`, path-spec §2.2).
pub fn choose_caches<R: Rng + ?Sized>(
    listed: &[Relay],
    weights: &BandwidthWeights,
    guards: &[RelayId],
    previous: &[RelayId],
    rng: &mut R,
) -> Vec<OneHopTarget> {
    let usable: Vec<&Relay> = listed.iter().filter(|r| is_dir_guard(r)).collect();
    let find = |id: &RelayId| usable.iter().copied().find(|r| r.id == *id);
    let theirs: Vec<OneHopTarget> = guards
        .iter()
        .filter_map(find)
        .map(OneHopTarget::of)
        .collect();
    if !theirs.is_empty() {
        return theirs;
    }
    let mut chosen: Vec<&Relay> = previous.iter().filter_map(find).take(DIR_CACHES).collect();
    while chosen.len() < DIR_CACHES {
        let left: Vec<(&Relay, u128)> = usable
            .iter()
            .filter(|r| !chosen.iter().any(|c| c.id == r.id))
            .map(|r| (*r, weights.weighted_bandwidth(r, Position::BeginDir)))
            .collect();
        match pick_weighted(&left, rng) {
            Some(r) => chosen.push(r),
            None => break,
        }
    }
    chosen.into_iter().map(OneHopTarget::of).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    fn relay(i: u8, flags: RelayFlags) -> Relay {
        let mut r = Relay::new(
            RelayId::new([i; 20]),
            format!("r{i}"),
            SocketAddrV4::new([127, 0, 0, 1].into(), 5000 + u16::from(i)),
        );
        r.flags = flags;
        r.weight = 100;
        r
    }

    fn fallback(i: u8) -> DirSource {
        DirSource::BeginDir {
            kind: SourceKind::Fallback,
            target: OneHopTarget::of(&relay(i, RelayFlags::empty())),
        }
    }

    fn cache(i: u8) -> DirSource {
        DirSource::BeginDir {
            kind: SourceKind::Cache,
            target: OneHopTarget::of(&relay(i, RelayFlags::empty())),
        }
    }

    fn authority(i: u16) -> DirSource {
        DirSource::DirPort {
            nickname: format!("auth{i}"),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
        }
    }

    fn kinds(s: &mut Sources, n: usize) -> Vec<SourceKind> {
        (0..n).map(|_| s.pick().unwrap().kind()).collect()
    }

    /// Caches first, then fallbacks, then authorities only when every
    /// cache and fallback failed; when all failed, all again.
    #[test]
    fn tiers_in_order_authorities_last() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut s = Sources::new(
            (1..=3).map(fallback).collect(),
            (0..2).map(authority).collect(),
            &mut rng,
        );
        assert_eq!(kinds(&mut s, 6), [SourceKind::Fallback; 6]);
        for _ in 0..3 {
            let f = s.pick().unwrap();
            s.mark_down(&f);
        }
        assert_eq!(kinds(&mut s, 3), [SourceKind::Authority; 3]);
        s.set_caches(vec![cache(9)]);
        assert_eq!(kinds(&mut s, 2), [SourceKind::Cache; 2]);
        let c = s.pick().unwrap();
        s.mark_down(&c);
        assert_eq!(s.pick().unwrap().kind(), SourceKind::Authority);
        s.mark_up(&fallback(2));
        assert_eq!(s.pick(), Some(fallback(2)));
        // Everything down: everything up again, caches first.
        for src in [
            cache(9),
            fallback(1),
            fallback(2),
            fallback(3),
            authority(0),
            authority(1),
        ] {
            s.mark_down(&src);
        }
        assert_eq!(s.pick(), Some(cache(9)));
        // A cache that stays keeps its mark; a new one starts up.
        s.mark_down(&cache(9));
        s.set_caches(vec![cache(9), cache(8)]);
        assert_eq!(s.pick(), Some(cache(8)));
        assert_eq!(Sources::new(Vec::new(), Vec::new(), &mut rng).pick(), None);
    }

    #[test]
    fn fallbacks_are_shuffled_round_robin() {
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = Sources::new((1..=5).map(fallback).collect(), Vec::new(), &mut rng);
            let round: Vec<DirSource> = (0..5).map(|_| s.pick().unwrap()).collect();
            for i in 1..=5 {
                assert!(round.contains(&fallback(i)), "each once a round");
            }
            firsts.insert(round[0].nickname().to_owned());
        }
        assert!(firsts.len() > 2, "{firsts:?}");
    }

    #[test]
    fn caches_are_our_guards_or_weighted_directory_guards() {
        let dir_guard =
            RelayFlags::RUNNING | RelayFlags::VALID | RelayFlags::GUARD | RelayFlags::V2DIR;
        let mut listed: Vec<Relay> = (1..=6).map(|i| relay(i, dir_guard)).collect();
        listed.push(relay(
            7,
            RelayFlags::RUNNING | RelayFlags::VALID | RelayFlags::V2DIR,
        ));
        listed.push(relay(
            8,
            RelayFlags::RUNNING | RelayFlags::VALID | RelayFlags::GUARD,
        ));
        listed[5].weight = 0;
        let w = BandwidthWeights::uniform(10_000);
        let mut rng = StdRng::seed_from_u64(1);
        let ids = |t: Vec<OneHopTarget>| t.into_iter().map(|t| t.id).collect::<Vec<_>>();
        // The client's guards, in its order, if they cache the directory.
        let guards = [
            listed[7].id,
            listed[2].id,
            RelayId::new([99; 20]),
            listed[0].id,
        ];
        assert_eq!(
            ids(choose_caches(&listed, &w, &guards, &[], &mut rng)),
            [listed[2].id, listed[0].id]
        );
        // Our own: three directory guards with weight, kept while listed.
        for _ in 0..20 {
            let c = ids(choose_caches(&listed, &w, &[], &[], &mut rng));
            assert_eq!(c.len(), DIR_CACHES);
            assert!(c.iter().all(|id| id.as_bytes()[0] <= 5), "{c:?}");
        }
        let prev = [listed[4].id, RelayId::new([99; 20])];
        let c = ids(choose_caches(&listed, &w, &[], &prev, &mut rng));
        assert_eq!(c[0], listed[4].id);
        assert_eq!(c.len(), DIR_CACHES);
    }
}
