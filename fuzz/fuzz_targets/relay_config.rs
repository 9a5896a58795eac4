//! A relay's configuration file (`braid_relay::RelayConfig::parse`): any
//! text, mostly TOML built around a valid `[braid_relay]` table with one
//! field replaced by fuzz bytes, or the bytes alone.
//!
//! Invariants: no panic; an accepted file gives a nickname of 1 to 19
//! letters and digits, a non-zero ORPort, limits of at least 1, a
//! descriptor that passes its own checks, and `exit` only with a policy
//! that accepts something.
#![no_main]

use std::path::Path;
use std::time::SystemTime;

use braid_relay::RelayConfig;
use libfuzzer_sys::fuzz_target;

const FIELDS: [(&str, &str); 12] = [
    ("nickname", "\"braidrelay0\""),
    ("address", "\"127.0.0.1\""),
    ("or_port", "9001"),
    ("bandwidth_rate", "1000000"),
    ("bandwidth_burst", "2000000"),
    ("proto", "\"Link=4-5 LinkAuth=3 Relay=2,4\""),
    ("exit_policy", "[\"accept 127.0.0.0/8:*\", \"reject *:*\"]"),
    ("contact", "\"x\""),
    ("exit", "true"),
    ("max_dns_lookups", "4"),
    ("max_mem_in_queues", "100000"),
    ("listen", "\"127.0.0.1:9001\""),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let fuzzed = String::from_utf8_lossy(rest);
    let text = if sel == 0xff {
        fuzzed.into_owned()
    } else {
        let which = usize::from(sel) % FIELDS.len();
        let mut t = String::from("[braid_relay]\n");
        for (i, (k, v)) in FIELDS.iter().enumerate() {
            if i == which {
                t.push_str(&format!("{k} = {fuzzed}\n"));
            } else {
                t.push_str(&format!("{k} = {v}\n"));
            }
        }
        t.push_str(
            "[[authority]]\nnickname = \"auth0\"\naddress = \"127.0.0.1\"\ndir_port = 17001\n\
             v3ident = \"DF42171FC3F4BE879C6F3F36C488ADFCE0C9D819\"\n",
        );
        t
    };
    let Ok(c) = RelayConfig::parse(&text, Path::new("/nonexistent/relay.toml")) else {
        return;
    };
    assert!((1..=19).contains(&c.nickname.len()), "{:?}", c.nickname);
    assert!(c.nickname.chars().all(|ch| ch.is_ascii_alphanumeric()));
    assert_ne!(c.or_port, 0);
    assert!(c.max_dns_lookups >= 1 && c.max_handshakes >= 1 && c.max_mem_in_queues >= 1);
    assert!(
        c.descriptor_info(SystemTime::UNIX_EPOCH, 0, 0).validate().is_ok(),
        "accepted a file whose descriptor fails its checks"
    );
    if c.exit {
        assert!(c.exit_policy.is_exit(), "exit with a policy that accepts nothing");
    }
});
