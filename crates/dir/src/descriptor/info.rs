//! What a relay says about itself in its server descriptor, apart from its
//! keys, and the checks each field must pass (dir-spec §2.1.1; C-tor's
//! `router_parse_entry_from_string` and `dirserv_router_get_status`).

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::DescriptorError;
use super::policy::ExitPolicy;

/// Longest nickname (dir-spec §2.1.1, `router`: 1 to 19 characters).
pub const MAX_NICKNAME_LEN: usize = 19;
/// Longest `platform`, `proto` or `contact` value we write. Nothing in the
/// spec bounds them; this keeps one field from eating the 20,000-byte
/// descriptor budget.
pub const MAX_TEXT_LEN: usize = 1000;
/// Largest bandwidth value: C-tor parses them as non-negative `int`s.
pub const MAX_BANDWIDTH: u32 = i32::MAX as u32;

/// Bandwidths in bytes per second (dir-spec §2.1.1, `bandwidth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    /// Long-term average the relay is willing to sustain; at least 1
    /// (C-tor authorities refuse 0).
    pub average: u32,
    /// Burst it is willing to sustain in short intervals.
    pub burst: u32,
    /// Bandwidth it has observed itself capable of.
    pub observed: u32,
}

/// Everything in a server descriptor except keys and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorInfo {
    /// 1 to 19 ASCII letters and digits.
    pub nickname: String,
    /// The IPv4 address of the ORPort.
    pub address: Ipv4Addr,
    /// The ORPort, not 0.
    pub or_port: u16,
    /// Bandwidths.
    pub bandwidth: Bandwidth,
    /// Software and OS, e.g. `Braid 0.1.0 on Linux`
    /// ([`braid_platform`]). Must not start with `Tor `: authorities parse
    /// such a string as a C-tor version and refuse what is not one.
    pub platform: String,
    /// The `proto` line's value, written as given after a syntax check
    /// (e.g. `Link=4-5 LinkAuth=3 Relay=2-4`): it advertises only what the
    /// relay implements, which only the caller knows.
    pub proto: String,
    /// The exit policy (`reject *:*` for a relay that is not an exit).
    pub exit_policy: ExitPolicy,
    /// Contact information for the operator, printable ASCII.
    pub contact: Option<String>,
    /// Advertise `hidden-service-dir` (the relay stores onion-service
    /// descriptors).
    pub hidden_service_dir: bool,
    /// Advertise `tunnelled-dir-server`: the relay answers directory
    /// requests over BEGIN_DIR (dir-spec §2.1.1). Authorities then vote it
    /// V2Dir, without which C-tor clients neither sample it as a guard nor
    /// fetch from it.
    pub tunnelled_dir_server: bool,
    /// Seconds the relay has been running.
    pub uptime: u64,
    /// When the descriptor is made; written to the second (authorities
    /// refuse one more than 12 h ahead of them or 24 h behind).
    pub published: SystemTime,
}

/// The platform string of Braid `version` on `os`: `Braid 0.1.0 on Linux`.
pub fn braid_platform(version: &str, os: &str) -> String {
    format!("Braid {version} on {os}")
}

impl DescriptorInfo {
    /// Check every field; the descriptor builder calls this first.
    pub fn validate(&self) -> Result<(), DescriptorError> {
        let nick = &self.nickname;
        if nick.is_empty()
            || nick.len() > MAX_NICKNAME_LEN
            || !nick.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(DescriptorError::invalid(
                "nickname",
                nick,
                "1 to 19 ASCII letters and digits",
            ));
        }
        if self.or_port == 0 {
            return Err(DescriptorError::invalid("or_port", "0", "must not be 0"));
        }
        if self.address.is_unspecified() || self.address.is_broadcast() {
            return Err(DescriptorError::invalid(
                "address",
                &self.address.to_string(),
                "not a host address",
            ));
        }
        let bw = self.bandwidth;
        if bw.average == 0 {
            return Err(DescriptorError::invalid(
                "bandwidth average",
                "0",
                "authorities refuse 0",
            ));
        }
        for (field, v) in [
            ("bandwidth average", bw.average),
            ("bandwidth burst", bw.burst),
            ("bandwidth observed", bw.observed),
        ] {
            if v > MAX_BANDWIDTH {
                return Err(DescriptorError::invalid(
                    field,
                    &v.to_string(),
                    "at most 2147483647",
                ));
            }
        }
        check_text("platform", &self.platform)?;
        if self.platform.starts_with("Tor ") {
            return Err(DescriptorError::invalid(
                "platform",
                &self.platform,
                "must not start with \"Tor \" (authorities would parse it as a C-tor version)",
            ));
        }
        check_text("proto", &self.proto)?;
        if self.proto.parse::<tor_protover::Protocols>().is_err() {
            return Err(DescriptorError::invalid(
                "proto",
                &self.proto,
                "not a protocol list (NAME=RANGES separated by spaces)",
            ));
        }
        if let Some(contact) = &self.contact {
            check_text("contact", contact)?;
        }
        if self.uptime > i64::MAX as u64 {
            return Err(DescriptorError::invalid(
                "uptime",
                &self.uptime.to_string(),
                "too large",
            ));
        }
        published_secs(self.published)?;
        Ok(())
    }
}

/// `published` as whole seconds since 1970 (dir-spec writes it to the
/// second); refused before 1970 or after 9999.
pub(crate) fn published_secs(t: SystemTime) -> Result<SystemTime, DescriptorError> {
    /// 9999-12-31 23:59:59 UTC: the last time the format can write.
    const LAST: u64 = 253_402_300_799;
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| DescriptorError::invalid("published", "before 1970", "out of range"))?
        .as_secs();
    if secs > LAST {
        return Err(DescriptorError::invalid(
            "published",
            &secs.to_string(),
            "after year 9999",
        ));
    }
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Non-empty printable ASCII (space allowed), no longer than
/// [`MAX_TEXT_LEN`], not starting or ending with a space.
fn check_text(field: &'static str, value: &str) -> Result<(), DescriptorError> {
    if value.is_empty() || value.len() > MAX_TEXT_LEN {
        return Err(DescriptorError::invalid(
            field,
            value,
            "must be 1 to 1000 characters",
        ));
    }
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(DescriptorError::invalid(
            field,
            value,
            "only printable ASCII characters",
        ));
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(DescriptorError::invalid(
            field,
            value,
            "no leading or trailing space",
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// A valid non-exit's information, published at `published`.
    pub(crate) fn sample(published: SystemTime) -> DescriptorInfo {
        DescriptorInfo {
            nickname: "braidrelay0".into(),
            address: Ipv4Addr::LOCALHOST,
            or_port: 9001,
            bandwidth: Bandwidth {
                average: 1_000_000,
                burst: 2_000_000,
                observed: 500_000,
            },
            platform: braid_platform("0.1.0", "Linux"),
            proto: "Link=4-5 LinkAuth=3 Relay=2-4".into(),
            exit_policy: ExitPolicy::reject_all(),
            contact: Some("braid <braid@example.invalid>".into()),
            hidden_service_dir: false,
            tunnelled_dir_server: false,
            uptime: 0,
            published,
        }
    }

    #[test]
    fn sample_is_valid_and_each_bad_field_is_named() {
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        sample(t).validate().unwrap();
        type Spoil = Box<dyn Fn(&mut DescriptorInfo)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("nickname", Box::new(|i| i.nickname = String::new())),
            ("nickname", Box::new(|i| i.nickname = "a".repeat(20))),
            ("nickname", Box::new(|i| i.nickname = "bad-nick".into())),
            ("or_port", Box::new(|i| i.or_port = 0)),
            ("address", Box::new(|i| i.address = Ipv4Addr::UNSPECIFIED)),
            ("bandwidth average", Box::new(|i| i.bandwidth.average = 0)),
            (
                "bandwidth burst",
                Box::new(|i| i.bandwidth.burst = u32::MAX),
            ),
            ("platform", Box::new(|i| i.platform = "Tor 0.4.9.1".into())),
            ("platform", Box::new(|i| i.platform = "Braid\n1".into())),
            ("proto", Box::new(|i| i.proto = "Link=x".into())),
            ("proto", Box::new(|i| i.proto = String::new())),
            ("contact", Box::new(|i| i.contact = Some("é".into()))),
            ("contact", Box::new(|i| i.contact = Some(" x".into()))),
            ("contact", Box::new(|i| i.contact = Some("x".repeat(1001)))),
            ("uptime", Box::new(|i| i.uptime = u64::MAX)),
            (
                "published",
                Box::new(|i| i.published = UNIX_EPOCH - Duration::from_secs(1)),
            ),
        ];
        for (field, spoil) in cases {
            let mut info = sample(t);
            spoil(&mut info);
            let e = info.validate().unwrap_err();
            assert!(
                matches!(&e, DescriptorError::Invalid { field: f, .. } if *f == field),
                "{field}: {e}"
            );
        }
    }

    #[test]
    fn published_is_truncated_to_the_second() {
        let t = UNIX_EPOCH + Duration::from_millis(1_800_000_000_999);
        assert_eq!(
            published_secs(t).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000)
        );
    }
}
