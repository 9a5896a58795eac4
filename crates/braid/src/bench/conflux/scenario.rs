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

/// One scenario: a middle per leg.
#[derive(Debug, Clone)]
pub(super) struct Scenario {
    pub(super) name: &'static str,
    pub(super) about: &'static str,
    pub(super) middles: Vec<Link>,
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

pub(super) fn scenarios() -> Vec<Scenario> {
    let l = |rate, delay| Link { rate, delay };
    vec![
        Scenario {
            name: "uniform",
            about: "2 legs, both middles 2 MiB/s + 10 ms",
            middles: vec![l("2MiB", "10ms"), l("2MiB", "10ms")],
        },
        Scenario {
            name: "bw-1-3",
            about: "2 legs, middles 1 MiB/s and 3 MiB/s, 10 ms",
            middles: vec![l("1MiB", "10ms"), l("3MiB", "10ms")],
        },
        Scenario {
            name: "rtt-1-5",
            about: "2 legs, middles 2 MiB/s with 10 ms and 50 ms",
            middles: vec![l("2MiB", "10ms"), l("2MiB", "50ms")],
        },
        Scenario {
            name: "3-legs",
            about: "3 legs, middles 2 MiB/s + 10 ms",
            middles: vec![l("2MiB", "10ms"), l("2MiB", "10ms"), l("2MiB", "10ms")],
        },
    ]
}

/// The names `--scenario` accepts.
pub(super) fn scenario_names() -> Vec<&'static str> {
    scenarios().iter().map(|s| s.name).collect()
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
        "ExitNodes exit0".into(),
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
        let s = scenarios();
        assert_eq!(scenario_names(), ["uniform", "bw-1-3", "rtt-1-5", "3-legs"]);
        assert_eq!(s[3].legs(), 3);
        assert_eq!(s[3].guard(2), "relay2");
        assert_eq!(s[3].middle(0), "relay3");
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
