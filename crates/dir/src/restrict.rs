//! Node restrictions: which relays may fill each position of a path, like
//! C-tor's `EntryNodes`, `MiddleNodes` and `ExitNodes`.
//!
//! Each list names relays by RSA identity fingerprint (40 hex digits,
//! optionally prefixed by `$`) or by nickname (1 to 19 letters and digits,
//! matched without regard to case, as C-tor does; nicknames are not unique
//! on the public network, so fingerprints are the safe choice there). An
//! empty list leaves its position unrestricted. A listed relay still has to
//! meet every other rule of its position (flags, exit policy, protocols,
//! distinctness): the lists narrow the choice, they never widen it.

use std::fmt;
use std::str::FromStr;

use crate::error::NodeSpecError;
use crate::relay::{Relay, RelayId};
use crate::weights::Position;

/// One entry of a node list: a fingerprint or a nickname.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeSpec {
    /// An RSA identity.
    Id(RelayId),
    /// A nickname, matched case-insensitively.
    Nickname(String),
}

impl NodeSpec {
    /// Does `relay` match this entry?
    pub fn matches(&self, relay: &Relay) -> bool {
        match self {
            Self::Id(id) => relay.id == *id,
            Self::Nickname(n) => relay.nickname.eq_ignore_ascii_case(n),
        }
    }
}

impl FromStr for NodeSpec {
    type Err = NodeSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let hex = t.strip_prefix('$').unwrap_or(t);
        if hex.len() == 2 * RelayId::LEN && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return hex
                .parse()
                .map(Self::Id)
                .map_err(|_| NodeSpecError(s.chars().take(80).collect()));
        }
        // tor's is_legal_nickname: 1 to 19 ASCII letters and digits.
        if (1..=19).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(Self::Nickname(t.to_string()));
        }
        Err(NodeSpecError(s.chars().take(80).collect()))
    }
}

impl fmt::Display for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "${id}"),
            Self::Nickname(n) => f.write_str(n),
        }
    }
}

/// The relays allowed as guard, middle and exit; an empty list allows
/// every relay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRestrictions {
    /// First hops (`EntryNodes`): guards come only from these.
    pub entry: Vec<NodeSpec>,
    /// Middle hops (`MiddleNodes`).
    pub middle: Vec<NodeSpec>,
    /// Last hops (`ExitNodes`).
    pub exit: Vec<NodeSpec>,
}

impl NodeRestrictions {
    /// Parses three lists of fingerprints or nicknames.
    pub fn parse<S: AsRef<str>>(
        entry: &[S],
        middle: &[S],
        exit: &[S],
    ) -> Result<Self, NodeSpecError> {
        let list = |items: &[S]| -> Result<Vec<NodeSpec>, NodeSpecError> {
            items.iter().map(|s| s.as_ref().parse()).collect()
        };
        Ok(Self {
            entry: list(entry)?,
            middle: list(middle)?,
            exit: list(exit)?,
        })
    }

    /// True when no position is restricted.
    pub fn is_empty(&self) -> bool {
        self.entry.is_empty() && self.middle.is_empty() && self.exit.is_empty()
    }

    /// The list for `position` (directory caches are never restricted).
    pub fn list(&self, position: Position) -> &[NodeSpec] {
        match position {
            Position::Guard => &self.entry,
            Position::Middle => &self.middle,
            Position::Exit => &self.exit,
            Position::BeginDir => &[],
        }
    }

    /// Is `position` restricted to a list?
    pub fn restricts(&self, position: Position) -> bool {
        !self.list(position).is_empty()
    }

    /// May `relay` fill `position`?
    pub fn allows(&self, relay: &Relay, position: Position) -> bool {
        let list = self.list(position);
        list.is_empty() || list.iter().any(|s| s.matches(relay))
    }

    /// The configuration key of `position`'s list, for messages.
    pub fn key(position: Position) -> &'static str {
        match position {
            Position::Guard => "entry_nodes",
            Position::Middle => "middle_nodes",
            Position::Exit => "exit_nodes",
            Position::BeginDir => "(none)",
        }
    }

    /// `entry_nodes [relay0, $AB..]`, for messages.
    pub fn describe(&self, position: Position) -> String {
        let names: Vec<String> = self.list(position).iter().map(|s| s.to_string()).collect();
        format!("{} [{}]", Self::key(position), names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn relay(n: u8, nick: &str) -> Relay {
        Relay::new(
            RelayId::new([n; 20]),
            nick,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9000),
        )
    }

    #[test]
    fn parses_fingerprints_and_nicknames() {
        let fp = "AB".repeat(20);
        assert_eq!(
            fp.parse::<NodeSpec>().unwrap(),
            NodeSpec::Id(RelayId::new([0xab; 20]))
        );
        assert_eq!(
            format!("${}", fp.to_lowercase())
                .parse::<NodeSpec>()
                .unwrap(),
            NodeSpec::Id(RelayId::new([0xab; 20]))
        );
        assert_eq!(
            " relay0 ".parse::<NodeSpec>().unwrap(),
            NodeSpec::Nickname("relay0".into())
        );
        for bad in ["", "relay-0", "a".repeat(20).as_str(), "$XYZ", "exit 0"] {
            let e = bad.parse::<NodeSpec>().unwrap_err();
            assert!(e.to_string().contains("fingerprint"), "{e}");
        }
        // 40 characters that are not all hex: a too-long nickname.
        assert!("G".repeat(40).parse::<NodeSpec>().is_err());
        assert_eq!(
            NodeSpec::Id(RelayId::new([1; 20])).to_string(),
            format!("${}", "01".repeat(20))
        );
    }

    #[test]
    fn matching_and_positions() {
        let r0 = relay(1, "Relay0");
        let r1 = relay(2, "relay1");
        let fp1 = "02".repeat(20);
        let n = NodeRestrictions::parse(&["relay0"], &[fp1.as_str()], &[] as &[&str; 0]).unwrap();
        assert!(!n.is_empty());
        assert!(n.allows(&r0, Position::Guard), "nicknames ignore case");
        assert!(!n.allows(&r1, Position::Guard));
        assert!(n.allows(&r1, Position::Middle));
        assert!(!n.allows(&r0, Position::Middle));
        assert!(n.allows(&r0, Position::Exit) && n.allows(&r1, Position::Exit));
        assert!(n.allows(&r1, Position::BeginDir));
        assert!(n.restricts(Position::Guard) && !n.restricts(Position::Exit));
        assert_eq!(
            n.describe(Position::Middle),
            format!("middle_nodes [${fp1}]")
        );
        assert!(NodeRestrictions::default().is_empty());
        assert!(NodeRestrictions::parse(&["ok"], &["not ok"], &["x"]).is_err());
    }
}
