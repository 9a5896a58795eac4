//! Typed identifiers. Each layer names its objects with its own id type so
//! that a circuit id can never be passed where a stream id is expected.

use std::fmt;
use std::num::NonZeroU16;

/// A circuit id on one channel (tor-spec §5.1.1). Four bytes on link
/// protocol 4 and later; zero is reserved for channel-level cells, so a
/// `CircId` is never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircId(std::num::NonZeroU32);

impl CircId {
    /// The id, or `None` for zero (which names no circuit).
    pub fn new(id: u32) -> Option<Self> {
        std::num::NonZeroU32::new(id).map(Self)
    }

    /// The id as sent on the wire.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// True if the most significant bit is set. The initiator of a channel
    /// chooses circuit ids with this bit set (tor-spec §5.1.1, link
    /// protocol 4 and later).
    pub fn high_bit(self) -> bool {
        self.0.get() & 0x8000_0000 != 0
    }
}

impl fmt::Display for CircId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circ {:#010x}", self.0.get())
    }
}

/// A stream id within one circuit (tor-spec §6.1); zero names the circuit
/// itself, so a `StreamId` is never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(NonZeroU16);

impl StreamId {
    /// The id, or `None` for zero.
    pub fn new(id: u16) -> Option<Self> {
        NonZeroU16::new(id).map(Self)
    }

    /// The id as sent on the wire.
    pub fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}", self.0.get())
    }
}

/// One leg of a Conflux tunnel, local to the tunnel that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u8);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg {}", self.0)
    }
}

/// One leg of a tunnel, from its launch until its circuit is released:
/// the tunnel's name for it toward the driver. A Conflux leg also gets a
/// [`LegId`] from its set when it links; a `LegKey` is never reused within
/// a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegKey(pub u32);

impl fmt::Display for LegKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg #{}", self.0)
    }
}

/// A channel at a relay, from its opening to its end: the relay node's
/// name for it toward the driver; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChanKey(pub u64);

impl fmt::Display for ChanKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chan #{}", self.0)
    }
}

/// A circuit at a relay (which has a circuit id on each of its two
/// channels): the relay node's name for it; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircKey(pub u64);

impl fmt::Display for CircKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit #{}", self.0)
    }
}

/// A Conflux set at an exit relay (prop 329): the relay node's name for
/// it toward the driver; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetKey(pub u64);

impl fmt::Display for SetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "set #{}", self.0)
    }
}

/// What owns exit streams at a relay: one circuit, or a Conflux set whose
/// legs share one stream map (prop 329 §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeKey {
    /// A circuit that is not a Conflux leg.
    Circuit(CircKey),
    /// A Conflux set.
    Set(SetKey),
}

impl fmt::Display for EdgeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeKey::Circuit(c) => c.fmt(f),
            EdgeKey::Set(s) => s.fmt(f),
        }
    }
}

/// A hop on a circuit: 0 is the first hop (the guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HopNum(pub u8);

impl fmt::Display for HopNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hop {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ids_are_refused() {
        assert!(CircId::new(0).is_none());
        assert!(StreamId::new(0).is_none());
        assert_eq!(CircId::new(7).map(CircId::get), Some(7));
    }

    #[test]
    fn initiator_bit() {
        assert!(CircId::new(0x8000_0001).is_some_and(CircId::high_bit));
        assert!(!CircId::new(1).is_some_and(CircId::high_bit));
    }
}
