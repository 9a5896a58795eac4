//! Documents recorded from a private network (crates/dir/testdata), shared
//! by the directory fuzz targets: the authorities to trust, a time inside
//! the recorded consensus' lifetime, and certificates to verify with.

#![allow(dead_code, reason = "each target uses part of it")]
use std::time::{Duration, SystemTime};

use braid_dir::RelayId;

pub const CERTS: &str = include_str!("../../crates/dir/testdata/private-net/certs");
const AUTHORITIES: &str = include_str!("../../crates/dir/testdata/private-net/authorities");

pub fn authorities() -> Vec<RelayId> {
    AUTHORITIES.lines().filter_map(|l| l.parse().ok()).collect()
}

pub fn during() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_258_700)
}
