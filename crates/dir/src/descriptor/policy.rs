//! A relay's exit policy as it goes into its server descriptor: `accept`
//! and `reject` rules in torrc's syntax (dir-spec §2.1.1, items `accept`
//! and `reject`; tor-manual `ExitPolicy`).

use std::fmt;

use tor_netdoc::types::policy::{AddrPortPattern, IpPattern, RuleKind};

use super::error::DescriptorError;

/// Most rules a policy may hold. Each line costs 15 to 40 bytes and the
/// whole descriptor must stay under 20,000 (dir-spec §2.1.1 via C-tor's
/// `MAX_DESCRIPTOR_UPLOAD_SIZE`); the size check after encoding is what
/// counts, this only bounds the work before it.
pub const MAX_RULES: usize = 500;

/// One `accept` or `reject` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRule {
    /// Accept or reject.
    pub kind: RuleKind,
    /// The addresses and ports it matches (IPv4 or `*`).
    pub pattern: AddrPortPattern,
}

impl fmt::Display for ExitRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.pattern)
    }
}

/// An exit policy: rules in order, the first match wins. What no rule
/// matches is rejected: [`ExitPolicy::rules`] ends with `reject *:*` unless
/// the last rule given already matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitPolicy {
    rules: Vec<ExitRule>,
}

impl ExitPolicy {
    /// `reject *:*`: the policy of a relay that is not an exit.
    pub fn reject_all() -> Self {
        Self {
            rules: vec![ExitRule {
                kind: RuleKind::Reject,
                pattern: AddrPortPattern::new_all(),
            }],
        }
    }

    /// Parse rules written as in torrc's `ExitPolicy` option: each entry
    /// `accept PATTERN` or `reject PATTERN`, several entries on one line
    /// separated by commas, where PATTERN is `ADDR[/BITS]:PORTS` with
    /// ADDR an IPv4 address or `*` and PORTS `*`, a port or a range.
    /// IPv6 patterns are refused: a server descriptor's `accept`/`reject`
    /// lines are IPv4 only (IPv6 goes in `ipv6-policy`, which we do not
    /// write). Blank entries are skipped.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, DescriptorError> {
        let mut rules = Vec::new();
        for line in lines {
            for entry in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if rules.len() >= MAX_RULES {
                    return Err(policy_error(entry, "more than 500 rules"));
                }
                rules.push(parse_rule(entry)?);
            }
        }
        if rules.is_empty() {
            return Err(policy_error("", "no rules (use `reject *:*` for no exit)"));
        }
        let last_matches_all = rules
            .last()
            .is_some_and(|r| r.pattern == AddrPortPattern::new_all());
        if !last_matches_all {
            rules.push(ExitRule {
                kind: RuleKind::Reject,
                pattern: AddrPortPattern::new_all(),
            });
        }
        Ok(Self { rules })
    }

    /// The rules as they go into the descriptor, ending with one that
    /// matches everything.
    pub fn rules(&self) -> &[ExitRule] {
        &self.rules
    }

    /// Whether the policy lets a stream exit to `addr`:`port`: the first
    /// rule that matches decides (dir-spec §2.1.1: "the first matching
    /// rule"), matched with tor-netdoc's patterns; none matching (which
    /// [`Self::rules`]' last rule rules out) rejects.
    pub fn allows(&self, addr: std::net::IpAddr, port: u16) -> bool {
        self.rules
            .iter()
            .find(|r| r.pattern.matches(&addr, port))
            .is_some_and(|r| r.kind == RuleKind::Accept)
    }

    /// Whether any address and port is accepted.
    pub fn is_exit(&self) -> bool {
        self.rules.iter().any(|r| r.kind == RuleKind::Accept)
    }
}

fn policy_error(line: &str, reason: &str) -> DescriptorError {
    DescriptorError::Policy {
        line: line.chars().take(80).collect(),
        reason: reason.to_owned(),
    }
}

fn parse_rule(entry: &str) -> Result<ExitRule, DescriptorError> {
    let mut words = entry.split_ascii_whitespace();
    let (Some(kind), Some(pattern), None) = (words.next(), words.next(), words.next()) else {
        return Err(policy_error(
            entry,
            "expected `accept PATTERN` or `reject PATTERN`",
        ));
    };
    let kind = match kind {
        "accept" => RuleKind::Accept,
        "reject" => RuleKind::Reject,
        _ => return Err(policy_error(entry, "expected `accept` or `reject`")),
    };
    let pattern: AddrPortPattern = pattern
        .parse()
        .map_err(|e| policy_error(entry, &format!("bad pattern: {e}")))?;
    if let IpPattern::Net(net) = pattern.addrs
        && net.addr().is_ipv6()
    {
        return Err(policy_error(
            entry,
            "IPv6 patterns cannot go in a descriptor's accept/reject lines",
        ));
    }
    Ok(ExitRule { kind, pattern })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn lines(p: &ExitPolicy) -> Vec<String> {
        p.rules().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reject_all_is_one_rule() {
        assert_eq!(lines(&ExitPolicy::reject_all()), ["reject *:*"]);
        assert!(!ExitPolicy::reject_all().is_exit());
    }

    #[test]
    fn torrc_syntax_with_commas_and_implicit_reject() {
        let p = ExitPolicy::parse([
            "accept 127.0.0.0/8:*, reject 10.0.0.0/8:*",
            "accept *:80-443",
            "  ",
        ])
        .unwrap();
        assert_eq!(
            lines(&p),
            [
                "accept 127.0.0.0/8:*",
                "reject 10.0.0.0/8:*",
                "accept *:80-443",
                "reject *:*"
            ]
        );
        assert!(p.is_exit());
        let open = ExitPolicy::parse(["accept *:*"]).unwrap();
        assert_eq!(lines(&open), ["accept *:*"]);
        let single = ExitPolicy::parse(["accept 1.2.3.4:22"]).unwrap();
        assert_eq!(lines(&single), ["accept 1.2.3.4:22", "reject *:*"]);
    }

    #[test]
    fn bad_rules_are_explained() {
        for (input, needle) in [
            ("allow *:*", "accept"),
            ("accept", "expected"),
            ("accept *:* extra", "expected"),
            ("accept [::1]:80", "IPv6"),
            ("accept 1.2.3.4/40:80", "bad pattern"),
            ("accept *:99999", "bad pattern"),
            ("accept 1.2.3:80", "bad pattern"),
            ("", "no rules"),
        ] {
            let e = ExitPolicy::parse([input]).unwrap_err();
            assert!(e.to_string().contains(needle), "{input:?}: {e}");
        }
        let many: Vec<String> = (1..=MAX_RULES + 1)
            .map(|p| format!("accept *:{p}"))
            .collect();
        let e = ExitPolicy::parse(many.iter().map(String::as_str)).unwrap_err();
        assert!(e.to_string().contains("500"), "{e}");
    }

    #[test]
    fn allows_first_match_wins() {
        let p = ExitPolicy::parse([
            "reject 127.0.0.1:25",
            "accept 127.0.0.0/8:*, reject 10.0.0.0/8:*",
            "accept *:80-443",
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(!p.allows(ip("127.0.0.1"), 25), "the first rule");
        assert!(p.allows(ip("127.0.0.1"), 26));
        assert!(p.allows(ip("127.9.9.9"), 1));
        assert!(!p.allows(ip("10.1.2.3"), 80), "rejected before accept *:80");
        assert!(p.allows(ip("192.0.2.1"), 80));
        assert!(p.allows(ip("192.0.2.1"), 443));
        assert!(!p.allows(ip("192.0.2.1"), 444), "the implicit reject *:*");
        assert!(!ExitPolicy::reject_all().allows(ip("192.0.2.1"), 80));
    }
}
