//! Consensus bandwidth weights (dir-spec §3.4.1 "bandwidth-weights",
//! §3.8.3) and how they scale a relay's bandwidth for a position
//! (path-spec §2.2, §5.1).

use std::fmt;

use rand::{Rng, RngExt};

use crate::error::WeightsError;
use crate::relay::{Relay, RelayFlags};

/// The position a relay is being chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Position {
    /// First hop (entry guard).
    Guard,
    /// Middle hop.
    Middle,
    /// Last hop of an exit circuit.
    Exit,
    /// A directory cache for a BEGIN_DIR request.
    BeginDir,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Guard => "guard",
            Self::Middle => "middle",
            Self::Exit => "exit",
            Self::BeginDir => "directory",
        })
    }
}

/// The class of a relay for weighting: which of the G, M, E, D bandwidth
/// totals of dir-spec §3.8.3 it counts towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlagClass {
    /// Neither Guard nor Exit ("M", "non-flagged").
    Plain,
    /// Guard but not Exit ("G").
    Guard,
    /// Exit but not Guard ("E").
    Exit,
    /// Guard and Exit ("D").
    GuardAndExit,
}

impl FlagClass {
    /// The class of a relay with these flags. A BadExit relay is weighted as
    /// a non-exit, as C-tor does: it will not be used as an exit, so its
    /// bandwidth is available to the other positions.
    pub fn of(flags: RelayFlags) -> Self {
        let guard = flags.contains(RelayFlags::GUARD);
        let exit = flags.contains(RelayFlags::EXIT) && !flags.contains(RelayFlags::BAD_EXIT);
        match (guard, exit) {
            (false, false) => Self::Plain,
            (true, false) => Self::Guard,
            (false, true) => Self::Exit,
            (true, true) => Self::GuardAndExit,
        }
    }
}

/// The keywords of the bandwidth-weights line that we know (dir-spec §3.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightKey {
    /// Guard-flagged relays in the guard position.
    Wgg,
    /// Non-flagged relays in the guard position.
    Wgm,
    /// Guard+Exit relays in the guard position.
    Wgd,
    /// Guard-flagged relays in the middle position.
    Wmg,
    /// Non-flagged relays in the middle position.
    Wmm,
    /// Exit-flagged relays in the middle position.
    Wme,
    /// Guard+Exit relays in the middle position.
    Wmd,
    /// Guard-flagged relays in the exit position.
    Weg,
    /// Non-flagged relays in the exit position.
    Wem,
    /// Exit-flagged relays in the exit position.
    Wee,
    /// Guard+Exit relays in the exit position.
    Wed,
    /// BEGIN_DIR-supporting Guard-flagged relays.
    Wgb,
    /// BEGIN_DIR-supporting non-flagged relays.
    Wmb,
    /// BEGIN_DIR-supporting Exit-flagged relays.
    Web,
    /// BEGIN_DIR-supporting Guard+Exit relays.
    Wdb,
    /// Guard-flagged relays for BEGIN_DIR requests.
    Wbg,
    /// Non-flagged relays for BEGIN_DIR requests.
    Wbm,
    /// Exit-flagged relays for BEGIN_DIR requests.
    Wbe,
    /// Guard+Exit relays for BEGIN_DIR requests.
    Wbd,
}

impl WeightKey {
    /// Every key, in declaration order (which is the order of the array in
    /// [`BandwidthWeights`]).
    pub const ALL: [Self; 19] = [
        Self::Wgg,
        Self::Wgm,
        Self::Wgd,
        Self::Wmg,
        Self::Wmm,
        Self::Wme,
        Self::Wmd,
        Self::Weg,
        Self::Wem,
        Self::Wee,
        Self::Wed,
        Self::Wgb,
        Self::Wmb,
        Self::Web,
        Self::Wdb,
        Self::Wbg,
        Self::Wbm,
        Self::Wbe,
        Self::Wbd,
    ];

    /// The keyword as written in the consensus.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wgg => "Wgg",
            Self::Wgm => "Wgm",
            Self::Wgd => "Wgd",
            Self::Wmg => "Wmg",
            Self::Wmm => "Wmm",
            Self::Wme => "Wme",
            Self::Wmd => "Wmd",
            Self::Weg => "Weg",
            Self::Wem => "Wem",
            Self::Wee => "Wee",
            Self::Wed => "Wed",
            Self::Wgb => "Wgb",
            Self::Wmb => "Wmb",
            Self::Web => "Web",
            Self::Wdb => "Wdb",
            Self::Wbg => "Wbg",
            Self::Wbm => "Wbm",
            Self::Wbe => "Wbe",
            Self::Wbd => "Wbd",
        }
    }

    /// The key with this keyword, if we know it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// For keys that dir-spec §3.8.3 defines as a copy of another
    /// ("Wgm=Wgg, Wem=Wee, Weg=Wed" and "Wbd=Wmd, Wbg=Wmg, Wbe=Wme,
    /// Wbm=Wmm"), that other key.
    fn copied_from(self) -> Option<Self> {
        match self {
            Self::Wgm => Some(Self::Wgg),
            Self::Wem => Some(Self::Wee),
            Self::Weg => Some(Self::Wed),
            Self::Wbd => Some(Self::Wmd),
            Self::Wbg => Some(Self::Wmg),
            Self::Wbe => Some(Self::Wme),
            Self::Wbm => Some(Self::Wmm),
            _ => None,
        }
    }
}

impl fmt::Display for WeightKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The bandwidth weights of a consensus, each in `0..=scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandwidthWeights {
    /// Indexed like [`WeightKey::ALL`].
    values: [u32; 19],
    /// The weight scale (`bwweightscale`, default 10000).
    scale: u32,
}

impl Default for BandwidthWeights {
    /// Every weight equal to the scale 10000: what path-spec §2.2 says to use
    /// when a consensus has no (or malformed) weights, as small test networks
    /// often do. Selection is then by plain consensus bandwidth.
    fn default() -> Self {
        Self::uniform(Self::DEFAULT_SCALE)
    }
}

impl BandwidthWeights {
    /// The default weight scale (dir-spec §3.8.3).
    pub const DEFAULT_SCALE: u32 = 10_000;

    /// Every weight equal to `scale` (clamped to at least 1).
    pub fn uniform(scale: u32) -> Self {
        let scale = scale.max(1);
        Self {
            values: [scale; 19],
            scale,
        }
    }

    /// Parse the items of a consensus "bandwidth-weights" line with the
    /// default scale of 10000. The leading keyword `bandwidth-weights` may be
    /// included or not. An empty line gives [`Self::default`].
    pub fn parse(line: &str) -> Result<Self, WeightsError> {
        Self::parse_with_scale(line, Self::DEFAULT_SCALE)
    }

    /// Like [`Self::parse`], with the consensus' `bwweightscale` parameter.
    pub fn parse_with_scale(line: &str, scale: u32) -> Result<Self, WeightsError> {
        let mut words = line.split_ascii_whitespace().peekable();
        if words.peek() == Some(&"bandwidth-weights") {
            words.next();
        }
        let mut pairs = Vec::new();
        for item in words {
            let malformed = || WeightsError::Malformed(item.chars().take(80).collect());
            let (key, value) = item.split_once('=').ok_or_else(malformed)?;
            if key.is_empty() {
                return Err(malformed());
            }
            // dir-spec §3.4.1: Int32 ::= a decimal integer in i32's range.
            let digits = value.strip_prefix('-').unwrap_or(value);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            let value: i32 = value.parse().map_err(|_| malformed())?;
            pairs.push((key, i64::from(value)));
        }
        Self::from_pairs(pairs, scale)
    }

    /// Build from already-split `(keyword, value)` pairs, e.g. from a
    /// consensus parser. Unknown keywords are ignored (dir-spec §3.4.1 calls
    /// the list "optional weights", and new ones may appear). A known keyword
    /// given twice, or with a value outside `0..=scale`, is an error; the
    /// caller may then fall back to [`Self::default`] as path-spec §2.2 says.
    ///
    /// Known weights that are missing get their dir-spec §3.8.3 value
    /// relative to others ("Wgm=Wgg, Wem=Wee, Weg=Wed", "Wbd=Wmd, Wbg=Wmg,
    /// Wbe=Wme, Wbm=Wmm"), or else the scale (path-spec §2.2: "setting the
    /// weights to the default value of 10000").
    pub fn from_pairs<K: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, i64)>,
        scale: u32,
    ) -> Result<Self, WeightsError> {
        if scale == 0 || i32::try_from(scale).is_err() {
            return Err(WeightsError::BadScale(u64::from(scale)));
        }
        let mut given: [Option<u32>; 19] = [None; 19];
        for (key, value) in pairs {
            let key = key.as_ref();
            let Some(k) = WeightKey::from_name(key) else {
                continue;
            };
            let v = u32::try_from(value)
                .ok()
                .filter(|v| *v <= scale)
                .ok_or_else(|| WeightsError::OutOfRange {
                    key: key.to_owned(),
                    value,
                    scale,
                })?;
            let slot = given
                .get_mut(k as usize)
                .ok_or_else(|| WeightsError::Malformed(key.to_owned()))?;
            if slot.replace(v).is_some() {
                return Err(WeightsError::Duplicate(key.to_owned()));
            }
        }
        let lookup = |k: WeightKey| given.get(k as usize).copied().flatten();
        let mut values = [scale; 19];
        for (slot, k) in values.iter_mut().zip(WeightKey::ALL) {
            *slot = lookup(k)
                .or_else(|| k.copied_from().and_then(lookup))
                .unwrap_or(scale);
        }
        Ok(Self { values, scale })
    }

    /// The weight scale.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The value of one weight.
    pub fn get(&self, key: WeightKey) -> u32 {
        self.values.get(key as usize).copied().unwrap_or(self.scale)
    }

    /// The weight key that applies to a relay class in a position
    /// (path-spec §2.2 / dir-spec §3.4.1), or `None` where the spec defines
    /// none: an Exit-only relay in the guard position, which C-tor weights
    /// as 0 and so do we.
    pub fn key_for(position: Position, class: FlagClass) -> Option<WeightKey> {
        use FlagClass as C;
        use WeightKey as K;
        Some(match (position, class) {
            (Position::Guard, C::Guard) => K::Wgg,
            (Position::Guard, C::Plain) => K::Wgm,
            (Position::Guard, C::GuardAndExit) => K::Wgd,
            (Position::Guard, C::Exit) => return None,
            (Position::Middle, C::Guard) => K::Wmg,
            (Position::Middle, C::Plain) => K::Wmm,
            (Position::Middle, C::Exit) => K::Wme,
            (Position::Middle, C::GuardAndExit) => K::Wmd,
            (Position::Exit, C::Guard) => K::Weg,
            (Position::Exit, C::Plain) => K::Wem,
            (Position::Exit, C::Exit) => K::Wee,
            (Position::Exit, C::GuardAndExit) => K::Wed,
            (Position::BeginDir, C::Guard) => K::Wbg,
            (Position::BeginDir, C::Plain) => K::Wbm,
            (Position::BeginDir, C::Exit) => K::Wbe,
            (Position::BeginDir, C::GuardAndExit) => K::Wbd,
        })
    }

    /// The weight, in units of 1/scale, of a relay with these flags in this
    /// position. For [`Position::BeginDir`], a relay with the V2Dir flag is
    /// further scaled by `Wgb`/`Wmb`/`Web`/`Wdb` for its class, as C-tor does.
    pub fn weight(&self, position: Position, flags: RelayFlags) -> u64 {
        let class = FlagClass::of(flags);
        let Some(key) = Self::key_for(position, class) else {
            return 0;
        };
        let w = u64::from(self.get(key));
        if position != Position::BeginDir || !flags.contains(RelayFlags::V2DIR) {
            return w;
        }
        let dir_key = match class {
            FlagClass::Guard => WeightKey::Wgb,
            FlagClass::Plain => WeightKey::Wmb,
            FlagClass::Exit => WeightKey::Web,
            FlagClass::GuardAndExit => WeightKey::Wdb,
        };
        w * u64::from(self.get(dir_key)) / u64::from(self.scale)
    }

    /// A relay's bandwidth scaled for a position: `bandwidth * weight`.
    ///
    /// The division by the scale in "`weight * Wxy / 10000`" is left out: it
    /// is the same for every relay, so it does not change the probabilities,
    /// and it would round small test-network bandwidths down to zero.
    pub fn weighted_bandwidth(&self, relay: &Relay, position: Position) -> u128 {
        u128::from(relay.weight) * u128::from(self.weight(position, relay.flags))
    }
}

/// Pick one item with probability proportional to its weight; uniformly if
/// every weight is zero (as C-tor does when no relay has bandwidth).
pub(crate) fn pick_weighted<T: Copy, R: Rng + ?Sized>(
    items: &[(T, u128)],
    rng: &mut R,
) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let total = items
        .iter()
        .fold(0_u128, |acc, (_, w)| acc.saturating_add(*w));
    if total == 0 {
        let i = rng.random_range(0..items.len());
        return items.get(i).map(|(t, _)| *t);
    }
    let mut x = rng.random_range(0..total);
    for (t, w) in items {
        if x < *w {
            return Some(*t);
        }
        x -= *w;
    }
    // Only reachable if the total saturated.
    items.iter().rev().find(|(_, w)| *w > 0).map(|(t, _)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "bandwidth-weights Wbd=0 Wbe=0 Wbg=4096 Wbm=10000 Wdb=10000 Web=10000 \
        Wed=10000 Wee=10000 Weg=10000 Wem=10000 Wgb=10000 Wgd=0 Wgg=5904 Wgm=5904 Wmb=10000 \
        Wmd=0 Wme=0 Wmg=4096 Wmm=10000";

    #[test]
    fn parse_real_line() {
        let w = BandwidthWeights::parse(REAL).unwrap();
        assert_eq!(w.scale(), 10_000);
        assert_eq!(w.get(WeightKey::Wgg), 5904);
        assert_eq!(w.get(WeightKey::Wmg), 4096);
        assert_eq!(w.get(WeightKey::Wgd), 0);
        assert_eq!(w.get(WeightKey::Wmm), 10_000);
        // Without the keyword too.
        let body = REAL.trim_start_matches("bandwidth-weights");
        assert_eq!(BandwidthWeights::parse(body).unwrap(), w);
    }

    #[test]
    fn weights_by_position_and_class() {
        let w = BandwidthWeights::parse(REAL).unwrap();
        let g = RelayFlags::GUARD;
        let e = RelayFlags::EXIT;
        let d = g | e;
        let m = RelayFlags::FAST;
        assert_eq!(w.weight(Position::Guard, g), 5904);
        assert_eq!(w.weight(Position::Guard, m), 5904);
        assert_eq!(w.weight(Position::Guard, d), 0);
        assert_eq!(w.weight(Position::Guard, e), 0);
        assert_eq!(w.weight(Position::Middle, g), 4096);
        assert_eq!(w.weight(Position::Middle, e), 0);
        assert_eq!(w.weight(Position::Middle, m), 10_000);
        assert_eq!(w.weight(Position::Exit, e), 10_000);
        assert_eq!(w.weight(Position::Exit, d), 10_000);
        // BadExit counts as a non-exit.
        assert_eq!(w.weight(Position::Middle, e | RelayFlags::BAD_EXIT), 10_000);
        assert_eq!(w.weight(Position::Middle, d | RelayFlags::BAD_EXIT), 4096);
        // BEGIN_DIR: Wbg * Wgb / scale for a V2Dir guard.
        assert_eq!(w.weight(Position::BeginDir, g | RelayFlags::V2DIR), 4096);
        assert_eq!(w.weight(Position::BeginDir, e | RelayFlags::V2DIR), 0);
    }

    #[test]
    fn dir_weights_multiply() {
        let w = BandwidthWeights::parse("Wbm=5000 Wmb=5000").unwrap();
        assert_eq!(w.weight(Position::BeginDir, RelayFlags::V2DIR), 2500);
        assert_eq!(w.weight(Position::BeginDir, RelayFlags::empty()), 5000);
        // Only BEGIN_DIR uses the *b weights.
        assert_eq!(w.weight(Position::Middle, RelayFlags::V2DIR), 10_000);
    }

    #[test]
    fn weighted_bandwidth_is_product() {
        let w = BandwidthWeights::parse(REAL).unwrap();
        let mut r = crate::relay::Relay::new(
            crate::relay::RelayId::new([1; 20]),
            "r",
            std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1),
        );
        r.weight = 3;
        r.flags = RelayFlags::GUARD;
        assert_eq!(w.weighted_bandwidth(&r, Position::Middle), 3 * 4096);
        r.weight = u64::MAX;
        assert_eq!(
            w.weighted_bandwidth(&r, Position::Guard),
            u128::from(u64::MAX) * 5904
        );
    }

    #[test]
    fn missing_weights_default() {
        let w = BandwidthWeights::parse("").unwrap();
        assert_eq!(w, BandwidthWeights::default());
        for k in WeightKey::ALL {
            assert_eq!(w.get(k), 10_000, "{k}");
        }
        assert_eq!(BandwidthWeights::parse("bandwidth-weights").unwrap(), w);

        // Copies per dir-spec §3.8.3 when only the original is present.
        let w = BandwidthWeights::parse(
            "Wgg=6000 Wee=7000 Wed=3000 Wmd=2000 Wmg=4000 Wme=3000 Wmm=9000",
        )
        .unwrap();
        assert_eq!(w.get(WeightKey::Wgm), 6000);
        assert_eq!(w.get(WeightKey::Wem), 7000);
        assert_eq!(w.get(WeightKey::Weg), 3000);
        assert_eq!(w.get(WeightKey::Wbd), 2000);
        assert_eq!(w.get(WeightKey::Wbg), 4000);
        assert_eq!(w.get(WeightKey::Wbe), 3000);
        assert_eq!(w.get(WeightKey::Wbm), 9000);
        // Everything else is the scale.
        assert_eq!(w.get(WeightKey::Wgd), 10_000);
        assert_eq!(w.get(WeightKey::Wgb), 10_000);
        // An explicit value wins over the copy.
        let w = BandwidthWeights::parse("Wgg=6000 Wgm=1").unwrap();
        assert_eq!(w.get(WeightKey::Wgm), 1);
    }

    #[test]
    fn unknown_keys_ignored() {
        let w = BandwidthWeights::parse("Wxy=99999999 Wgg=10").unwrap();
        assert_eq!(w.get(WeightKey::Wgg), 10);
    }

    #[test]
    fn parse_errors() {
        use WeightsError as E;
        assert!(matches!(
            BandwidthWeights::parse("Wgg"),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            BandwidthWeights::parse("=5"),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            BandwidthWeights::parse("Wgg="),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            BandwidthWeights::parse("Wgg=1.5"),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            BandwidthWeights::parse("Wgg=+5"),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            BandwidthWeights::parse("Wgg=-"),
            Err(E::Malformed(_))
        ));
        // Outside Int32 is malformed, even for unknown keys.
        assert!(matches!(
            BandwidthWeights::parse("Wzz=2147483648"),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            BandwidthWeights::parse("Wgg=5 Wgg=5"),
            Err(E::Duplicate(_))
        ));
        let e = BandwidthWeights::parse("Wgg=-1").unwrap_err();
        assert_eq!(
            e,
            E::OutOfRange {
                key: "Wgg".into(),
                value: -1,
                scale: 10_000
            }
        );
        assert!(e.to_string().contains("Wgg=-1"));
        assert!(matches!(
            BandwidthWeights::parse("Wmm=10001"),
            Err(E::OutOfRange { .. })
        ));
        // A custom scale moves the range.
        assert!(BandwidthWeights::parse_with_scale("Wmm=10001", 20_000).is_ok());
        assert!(matches!(
            BandwidthWeights::parse_with_scale("Wmm=1", 0),
            Err(E::BadScale(0))
        ));
        assert!(matches!(
            BandwidthWeights::from_pairs([("Wgg", i64::from(u32::MAX) + 1)], 10_000),
            Err(E::OutOfRange { .. })
        ));
    }

    #[test]
    fn key_names_round_trip() {
        for k in WeightKey::ALL {
            assert_eq!(WeightKey::from_name(k.name()), Some(k));
        }
        assert_eq!(WeightKey::from_name("wgg"), None);
    }
}
