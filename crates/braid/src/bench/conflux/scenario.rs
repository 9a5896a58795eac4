//! The scenarios: each leg's middle and its link, who transfers, and the
//! C-tor client's pinning.

use std::collections::BTreeMap;

/// Braid's schedulers, in table order.
pub(super) const SCHEDULERS: [&str; 3] = ["minrtt", "lowrtt", "ecf"];

/// Braid's default scheduler: the one plotted.
pub(super) const DEFAULT_SCHEDULER: &str = "ecf";

/// A middle's link.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    pub(super) rate: &'static str,
    pub(super) delay: &'static str,
}

/// Whose exit the sets end at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExitKind {
    /// The network's C-tor exit, `exit0` (LowRTT for downloads).
    Tor,
    /// The Braid exit, `braidexit0` (the scheduler the client's UX asks
    /// for: ECF for throughput).
    Braid,
}

impl ExitKind {
    /// The exit relay's nickname.
    pub(super) fn relay(self) -> &'static str {
        match self {
            ExitKind::Tor => "exit0",
            ExitKind::Braid => "braidexit0",
        }
    }
}

/// One scenario: a middle per leg, and the exit.
#[derive(Debug, Clone)]
pub(super) struct Scenario {
    /// Unique: the links' name, and `+braid-exit` for the Braid exit.
    pub(super) name: &'static str,
    /// The links' name (what `--scenario` takes).
    pub(super) base: &'static str,
    pub(super) about: &'static str,
    pub(super) middles: Vec<Link>,
    pub(super) exit: ExitKind,
}

impl Scenario {
    pub(super) fn legs(&self) -> usize {
        self.middles.len()
    }
    pub(super) fn guard(&self, i: usize) -> String {
        format!("relay{i}")
    }
    pub(super) fn middle(&self, i: usize) -> String {
        format!("relay{}", self.legs() + i)
    }
}

/// Every scenario, each with the C-tor exit then the Braid exit.
pub(super) fn scenarios() -> Vec<Scenario> {
    let l = |rate, delay| Link { rate, delay };
    let links = [
        (
            ["uniform", "uniform+braid-exit"],
            "2 legs, both middles 2 MiB/s + 10 ms",
            vec![l("2MiB", "10ms"), l("2MiB", "10ms")],
        ),
        (
            ["bw-1-3", "bw-1-3+braid-exit"],
            "2 legs, middles 1 MiB/s and 3 MiB/s, 10 ms",
            vec![l("1MiB", "10ms"), l("3MiB", "10ms")],
        ),
        (
            ["rtt-1-5", "rtt-1-5+braid-exit"],
            "2 legs, middles 2 MiB/s with 10 ms and 50 ms",
            vec![l("2MiB", "10ms"), l("2MiB", "50ms")],
        ),
        (
            ["3-legs", "3-legs+braid-exit"],
            "3 legs, middles 2 MiB/s + 10 ms",
            vec![l("2MiB", "10ms"), l("2MiB", "10ms"), l("2MiB", "10ms")],
        ),
    ];
    let mut out = Vec::new();
    for ([tor, braid], about, middles) in links {
        for (name, exit) in [(tor, ExitKind::Tor), (braid, ExitKind::Braid)] {
            out.push(Scenario {
                name,
                base: tor,
                about,
                middles: middles.clone(),
                exit,
            });
        }
    }
    out
}

/// The names `--scenario` accepts.
pub(super) fn scenario_names() -> Vec<&'static str> {
    scenarios()
        .iter()
        .filter(|s| s.exit == ExitKind::Tor)
        .map(|s| s.base)
        .collect()
}

/// Who transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    /// A Braid single circuit through leg `i` alone.
    Leg(usize),
    /// Braid Conflux with this scheduler.
    Braid(&'static str),
    /// The C-tor client's Conflux set.
    Ctor,
}

impl Who {
    pub(super) fn label(self) -> String {
        match self {
            Who::Leg(i) => format!("leg {} alone (Braid)", i + 1),
            Who::Braid(s) => format!("Braid {s}"),
            Who::Ctor => "C-tor".into(),
        }
    }
    pub(super) fn kind(self) -> &'static str {
        match self {
            Who::Leg(_) => "leg",
            Who::Braid(_) => "braid",
            Who::Ctor => "ctor",
        }
    }
}

/// The C-tor client's pinning lines (tor accepts nicknames).
pub(super) fn ctor_torrc(sc: &Scenario) -> Vec<String> {
    let k = sc.legs();
    let guards: Vec<String> = (0..k).map(|i| sc.guard(i)).collect();
    let middles: Vec<String> = (0..k).map(|i| sc.middle(i)).collect();
    vec![
        format!("EntryNodes {}", guards.join(",")),
        format!("MiddleNodes {}", middles.join(",")),
        format!("ExitNodes {}", sc.exit.relay()),
    ]
}

/// C-tor clients build sets of `cfx_num_legs_set` legs (default 2).
pub(super) fn consensus_params(sc: &Scenario) -> BTreeMap<String, i32> {
    let mut p = BTreeMap::new();
    if sc.legs() != 2 {
        p.insert(
            "cfx_num_legs_set".into(),
            i32::try_from(sc.legs()).unwrap_or(2),
        );
    }
    p
}

#[cfg(test)]
mod tests {
    use braid_testnet::RelayShape;

    use super::*;

    #[test]
    fn scenarios_are_the_four_of_the_issue() {
        let s: Vec<Scenario> = scenarios()
            .into_iter()
            .filter(|s| s.exit == ExitKind::Tor)
            .collect();
        assert_eq!(scenario_names(), ["uniform", "bw-1-3", "rtt-1-5", "3-legs"]);
        assert_eq!(s[3].legs(), 3);
        assert_eq!(s[3].guard(2), "relay2");
        assert_eq!(s[3].middle(0), "relay3");
        let braid = &scenarios()[7];
        assert_eq!((braid.name, braid.base), ("3-legs+braid-exit", "3-legs"));
        assert_eq!(ctor_torrc(braid)[2], "ExitNodes braidexit0");
        assert_eq!(
            ctor_torrc(&s[3]),
            [
                "EntryNodes relay0,relay1,relay2",
                "MiddleNodes relay3,relay4,relay5",
                "ExitNodes exit0"
            ]
        );
        assert!(consensus_params(&s[0]).is_empty());
        assert_eq!(consensus_params(&s[3]).get("cfx_num_legs_set"), Some(&3));
        for sc in &s {
            for (i, l) in sc.middles.iter().enumerate() {
                RelayShape::parse_flag(&format!("{}:{}:{}", sc.middle(i), l.rate, l.delay))
                    .unwrap();
            }
        }
    }
}
