//! Braid's CONFLUX_LINK/LINKED extension list (`braid_core::conflux::ext`,
//! Braid proposal 001 §2.2): an arbitrary relay body under either command,
//! as braid-core's relay cell decoder hands a LINK/LINKED with trailing
//! bytes over.
//!
//! Invariants: no panic; what splits is a plain LINK/LINKED of the same
//! command; the extensions read from it (RESUME_CAP, LEG) extend the
//! message back into a body that splits to the same extensions.
#![no_main]

use braid_core::conflux::ext::{extend, split};
use libfuzzer_sys::fuzz_target;
use tor_cell::relaycell::msg::{AnyRelayMsg, Unrecognized};
use tor_cell::relaycell::{RelayCmd, RelayMsg as _};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let cmd = if which & 1 == 0 {
        RelayCmd::CONFLUX_LINK
    } else {
        RelayCmd::CONFLUX_LINKED
    };
    let msg = AnyRelayMsg::Unrecognized(Unrecognized::new(cmd, body.to_vec()));
    let Ok((plain, ext)) = split(msg) else {
        return;
    };
    assert_eq!(plain.cmd(), cmd);
    assert!(matches!(
        plain,
        AnyRelayMsg::ConfluxLink(_) | AnyRelayMsg::ConfluxLinked(_)
    ));
    let again = extend(plain, &ext).expect("a parsed LINK extends");
    let (_, back) = split(again).expect("our own extensions split");
    assert_eq!(back, ext);
});
