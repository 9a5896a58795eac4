//! The client's view of the network: a verified consensus joined with the
//! microdescriptors it lists, turned into braid-dir's [`Relay`] model for
//! path selection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use tor_netdoc::doc::microdesc::{MdDigest, Microdesc};
use tor_netdoc::doc::netstatus::{MdConsensus, MdRouterStatus, RelayWeight};
use tor_netdoc::types::relay_flags::RelayFlag;

use crate::documents::{CheckedMicrodesc, Lifetime, VerifiedConsensus};
use crate::relay::{Ed25519Id, PortPolicy, Relay, RelayFlags, RelayId};
use crate::weights::BandwidthWeights;

/// A verified consensus plus the microdescriptors found so far.
#[derive(Debug, Clone)]
pub struct NetDir {
    consensus: VerifiedConsensus,
    /// Microdescriptors by digest, only those the consensus lists.
    mds: HashMap<MdDigest, CheckedMicrodesc>,
    weights: BandwidthWeights,
    params: BTreeMap<String, i32>,
}

impl NetDir {
    /// A directory with no microdescriptors yet. Microdescriptors from
    /// `previous` that the new consensus still lists are carried over (they
    /// are identified by digest, so they cannot be stale).
    pub fn new(consensus: VerifiedConsensus, previous: Option<&NetDir>) -> Self {
        let c = &consensus.consensus;
        let params: BTreeMap<String, i32> =
            c.params().iter().map(|(k, v)| (k.clone(), *v)).collect();
        let scale = params
            .get("bwweightscale")
            .and_then(|v| u32::try_from(*v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(10_000);
        // path-spec §2.2: bad weights fall back to the default weights.
        let weights = BandwidthWeights::from_pairs(
            c.bandwidth_weights()
                .iter()
                .map(|(k, v)| (k.as_str(), i64::from(*v))),
            scale,
        )
        .unwrap_or_else(|_| BandwidthWeights::uniform(scale));
        let mut dir = Self {
            consensus,
            mds: HashMap::new(),
            weights,
            params,
        };
        if let Some(prev) = previous {
            let wanted = dir.wanted_digests();
            for (d, md) in &prev.mds {
                if wanted.contains(d) {
                    dir.mds.insert(*d, md.clone());
                }
            }
        }
        dir
    }

    /// The consensus.
    pub fn consensus(&self) -> &VerifiedConsensus {
        &self.consensus
    }

    /// Its lifetime.
    pub fn lifetime(&self) -> Lifetime {
        self.consensus.lifetime
    }

    /// The consensus bandwidth weights.
    pub fn weights(&self) -> &BandwidthWeights {
        &self.weights
    }

    /// The consensus parameters ("params" line).
    pub fn params(&self) -> &BTreeMap<String, i32> {
        &self.params
    }

    fn md_consensus(&self) -> &MdConsensus {
        &self.consensus.consensus
    }

    /// Every microdescriptor digest the consensus lists.
    pub fn wanted_digests(&self) -> HashSet<MdDigest> {
        self.md_consensus()
            .relays()
            .iter()
            .map(|rs| *rs.md_digest())
            .collect()
    }

    /// Listed digests whose microdescriptor we do not have yet, in consensus
    /// order.
    pub fn missing_digests(&self) -> Vec<MdDigest> {
        let mut seen = HashSet::new();
        self.md_consensus()
            .relays()
            .iter()
            .map(|rs| *rs.md_digest())
            .filter(|d| !self.mds.contains_key(d) && seen.insert(*d))
            .collect()
    }

    /// Add microdescriptors (already checked against the wanted digests).
    /// Returns how many were new.
    pub fn add_microdescs(&mut self, mds: impl IntoIterator<Item = CheckedMicrodesc>) -> usize {
        let wanted = self.wanted_digests();
        let mut added = 0;
        for md in mds {
            if wanted.contains(&md.digest) && !self.mds.contains_key(&md.digest) {
                self.mds.insert(md.digest, md);
                added += 1;
            }
        }
        added
    }

    /// The microdescriptors held, for the cache.
    pub fn microdescs(&self) -> impl Iterator<Item = &CheckedMicrodesc> {
        self.mds.values()
    }

    /// Relays listed in the consensus.
    pub fn n_listed(&self) -> usize {
        self.md_consensus().relays().len()
    }

    /// Relays listed whose microdescriptor we hold.
    pub fn n_with_md(&self) -> usize {
        self.md_consensus()
            .relays()
            .iter()
            .filter(|rs| self.mds.contains_key(rs.md_digest()))
            .count()
    }

    /// The usable relays: listed, with a microdescriptor, and an IPv4
    /// ORPort. Relays without a microdescriptor cannot be used in a path
    /// (no onion key), so they are left out.
    pub fn relays(&self) -> Vec<Relay> {
        self.md_consensus()
            .relays()
            .iter()
            .filter_map(|rs| {
                let md = self.mds.get(rs.md_digest())?;
                to_relay(rs, Some(&md.md))
            })
            .collect()
    }

    /// Every relay listed with an IPv4 ORPort, with or without its
    /// microdescriptor: those without have no ntor key, Ed25519 identity,
    /// policy or family (`ntor_key` is `None`). For what needs only the
    /// consensus: directory caches to ask, the share of paths usable.
    pub fn listed(&self) -> Vec<Relay> {
        self.md_consensus()
            .relays()
            .iter()
            .filter_map(|rs| to_relay(rs, self.mds.get(rs.md_digest()).map(|m| &m.md)))
            .collect()
    }
}

/// One relay from its router status entry (consensus: identity, address,
/// flags, weight, protocols) and its microdescriptor if we have it (ntor
/// key, Ed25519 identity, policy summary, family).
fn to_relay(rs: &MdRouterStatus, md: Option<&Microdesc>) -> Option<Relay> {
    let addr = rs.addrs().find_map(|a| match a {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    })?;
    let mut relay = Relay::new(
        RelayId::new(rs.rsa_identity().to_bytes()),
        rs.nickname(),
        addr,
    );
    relay.flags = flags_of(rs);
    relay.weight = match rs.weight() {
        RelayWeight::Measured(w) | RelayWeight::Unmeasured(w) => u64::from(*w),
        _ => 0,
    };
    relay.protocols = rs.protovers().clone();
    let Some(md) = md else {
        return Some(relay);
    };
    if rs.ed25519_id_is_usable() {
        relay.ed_id = Some(Ed25519Id::new((*md.ed25519_id()).into()));
    }
    relay.ntor_key = Some(*md.ntor_key().as_bytes());
    // A policy summary that does not round-trip through our parser is
    // treated as reject-all: safe, the relay is only not used as an exit.
    relay.policy = md
        .ipv4_policy()
        .to_string()
        .parse()
        .unwrap_or_else(|_| PortPolicy::reject_all());
    relay.family = md
        .family()
        .members()
        .map(|id| RelayId::new(id.to_bytes()))
        .collect();
    // prop 321: family ids, compared as text (an id form this version does
    // not know still groups the relays that share it).
    relay.family_ids = family_ids_of(md);
    Some(relay)
}

/// A microdescriptor's family ids in text form (prop 321).
fn family_ids_of(md: &Microdesc) -> Vec<String> {
    md.family_ids().iter().map(|f| f.to_string()).collect()
}

fn flags_of(rs: &MdRouterStatus) -> RelayFlags {
    let mut out = RelayFlags::empty();
    for flag in rs.flags().iter() {
        let ours = match flag {
            RelayFlag::Authority => RelayFlags::AUTHORITY,
            RelayFlag::BadExit => RelayFlags::BAD_EXIT,
            RelayFlag::Exit => RelayFlags::EXIT,
            RelayFlag::Fast => RelayFlags::FAST,
            RelayFlag::Guard => RelayFlags::GUARD,
            RelayFlag::HSDir => RelayFlags::HSDIR,
            RelayFlag::MiddleOnly => RelayFlags::MIDDLE_ONLY,
            RelayFlag::Running => RelayFlags::RUNNING,
            RelayFlag::Stable => RelayFlags::STABLE,
            RelayFlag::StaleDesc => RelayFlags::STALE_DESC,
            RelayFlag::V2Dir => RelayFlags::V2DIR,
            RelayFlag::Valid => RelayFlags::VALID,
            _ => continue,
        };
        out.insert(ours);
    }
    out
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::documents::parse_microdescs;

    const MICRODESCS: &str = include_str!("../testdata/private-net/microdescs");

    /// A recorded microdescriptor with `family-ids` lines added (prop
    /// 321's form), parsed as the bootstrap parses it.
    #[test]
    fn family_ids_are_read_from_microdescriptors() {
        let first = crate::documents::split_microdescs(MICRODESCS)[0];
        let id = "ed25519:dsmgqtcQI7LE7OB9l8Cpxv7s33EOyX3c7OPnG3FlG6c";
        let text = format!("{first}family-ids {id} unknownform:xyz\n");
        let digest: MdDigest = Sha256::digest(text.as_bytes()).into();
        let (good, bad) = parse_microdescs(&text, &HashSet::from([digest]));
        assert!(bad.is_empty(), "{bad:?}");
        let ids = family_ids_of(&good[0].md);
        assert_eq!(ids, vec![id.to_owned(), "unknownform:xyz".to_owned()]);
        let plain = parse_microdescs(
            first,
            &HashSet::from([Sha256::digest(first.as_bytes()).into()]),
        );
        assert!(family_ids_of(&plain.0[0].md).is_empty());
    }
}
