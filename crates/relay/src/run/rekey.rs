//! Keys renewed while the relay runs (C-tor's `relay_periodic.c`):
//!
//! - the onion keys (ntor and TAP) every `onion-key-rotation-days` of the
//!   consensus (28 by default, 1 to 90), counted from when the current ones
//!   were made (`rotate_onion_key_callback`); the descriptor is published
//!   again at once, since clients must learn the new `ntor-onion-key`;
//! - the previous ntor key forgotten `onion-key-grace-period-days` (7 by
//!   default, 1 to the rotation period) after that
//!   (`check_onion_keys_expiry_time_callback`): clients with the older
//!   descriptor can still extend to us until then;
//! - the ed25519 signing key renewed [`SIGNING_KEY_SLOP`] before its
//!   certificate expires (`check_ed_keys_callback`), then new link keys
//!   and a new descriptor, both of which it certifies.
//!
//! Each change is written to the key directory first, so a restart loads
//! the keys the network knows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc, watch};

use super::msg::ToNode;
use crate::error::KeyError;
use crate::keys::{RelayKeys, SIGNING_KEY_SLOP};

const DAY: u64 = 86_400;
/// Look at the keys at least this often (C-tor checks hourly), so a clock
/// that jumps is noticed.
const CHECK_EVERY: Duration = Duration::from_secs(3600);
/// Wait this long after a renewal that failed.
const RETRY: Duration = Duration::from_secs(600);

/// The onion-key timing the consensus sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySchedule {
    /// How long a set of onion keys is current.
    pub(crate) rotation: Duration,
    /// How long the previous ntor key is still accepted.
    pub(crate) grace: Duration,
}

impl Default for KeySchedule {
    fn default() -> Self {
        Self::from_params(&BTreeMap::new())
    }
}

impl KeySchedule {
    /// From the consensus' `params` (C-tor's `get_onion_key_lifetime` and
    /// `get_onion_key_grace_period`, with their bounds).
    pub(crate) fn from_params(params: &BTreeMap<String, i32>) -> Self {
        let days = |name: &str, default: i32, min: i32, max: i32| {
            params.get(name).copied().unwrap_or(default).clamp(min, max)
        };
        let rotation = days("onion-key-rotation-days", 28, 1, 90);
        let grace = days("onion-key-grace-period-days", 7, 1, rotation);
        let secs = |d: i32| Duration::from_secs(u64::try_from(d).unwrap_or(1) * DAY);
        Self {
            rotation: secs(rotation),
            grace: secs(grace),
        }
    }
}

/// A renewal of the relay's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAction {
    /// New onion keys, the current ntor key kept as the previous.
    RotateOnion,
    /// Forget the previous ntor key.
    ExpirePrevious,
    /// A new signing key and certificate.
    RenewSigning,
}

/// The next renewal `keys` need under `schedule`, and when. The signing
/// key is left alone when the master key is offline (the relay said so at
/// start, and stops being usable when the certificate expires).
pub(crate) fn next_action(keys: &RelayKeys, schedule: KeySchedule) -> (SystemTime, KeyAction) {
    let set_at = keys.onion_set_at();
    let mut next = (set_at + schedule.rotation, KeyAction::RotateOnion);
    let mut consider = |at: SystemTime, action| {
        if at < next.0 {
            next = (at, action);
        }
    };
    if keys.ntor_previous().is_some() {
        consider(set_at + schedule.grace, KeyAction::ExpirePrevious);
    }
    if keys.master_secret().is_some() {
        let renew = keys
            .signing_cert_expiry()
            .checked_sub(SIGNING_KEY_SLOP)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        consider(renew, KeyAction::RenewSigning);
    }
    next
}

/// Apply `action` to `keys` at `now` and store the result in `dir`.
pub(crate) fn apply(
    keys: &mut RelayKeys,
    action: KeyAction,
    dir: &std::path::Path,
    now: SystemTime,
) -> Result<(), KeyError> {
    let rng = &mut rand::rng();
    match action {
        KeyAction::RotateOnion => {
            keys.rotate_onion_keys(rng, now)?;
            keys.store_onion_keys(dir)
        }
        KeyAction::ExpirePrevious => {
            keys.expire_previous_onion_key();
            keys.store_onion_keys(dir)
        }
        KeyAction::RenewSigning => {
            keys.renew_signing_key(rng, now)?;
            keys.store_signing_key(dir)
        }
    }
}

/// What the renewal task needs.
pub(crate) struct Rekey {
    /// The keys every task reads.
    pub(crate) keys: Arc<RwLock<RelayKeys>>,
    /// The key directory.
    pub(crate) dir: PathBuf,
    /// The consensus' onion-key timing.
    pub(crate) schedule: watch::Receiver<KeySchedule>,
    /// The node task, told of new onion keys.
    pub(crate) to_node: mpsc::Sender<ToNode>,
    /// Wakes the publisher for a new descriptor.
    pub(crate) republish: Arc<Notify>,
    /// Wakes the link-key task for new link certificates.
    pub(crate) relink: Arc<Notify>,
}

/// Renew the keys when [`next_action`] says, for as long as the node task
/// lives.
pub(crate) async fn rekey_loop(mut r: Rekey) {
    loop {
        let schedule = *r.schedule.borrow_and_update();
        let (at, action) = next_action(&read(&r.keys), schedule);
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(CHECK_EVERY);
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = r.schedule.changed() => if changed.is_err() { return },
                () = r.to_node.closed() => return,
            }
            continue;
        }
        let (keys, dir) = (Arc::clone(&r.keys), r.dir.clone());
        let done = tokio::task::spawn_blocking(move || {
            let mut k = keys.write().unwrap_or_else(|e| e.into_inner());
            apply(&mut k, action, &dir, SystemTime::now()).map(|()| k.onion_keys())
        })
        .await;
        let onion = match done {
            Ok(Ok(onion)) => onion,
            Ok(Err(e)) => {
                tracing::error!("{action:?}: {e}; retrying in {RETRY:?}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::error!("{action:?}: the task failed: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        match action {
            KeyAction::RotateOnion => {
                tracing::info!(
                    "new onion keys (every {} days); the previous ntor key is accepted for {} days",
                    schedule.rotation.as_secs() / DAY,
                    schedule.grace.as_secs() / DAY
                );
                r.republish.notify_one();
            }
            KeyAction::ExpirePrevious => tracing::info!("the previous ntor onion key expired"),
            KeyAction::RenewSigning => {
                tracing::info!(
                    "new signing key, certified until {:?}",
                    read(&r.keys).signing_cert_expiry()
                );
                r.relink.notify_one();
                r.republish.notify_one();
            }
        }
        if action != KeyAction::RenewSigning
            && r.to_node
                .send(ToNode::OnionKeys(Box::new(onion)))
                .await
                .is_err()
        {
            return;
        }
    }
}

/// The keys, for reading (a poisoned lock still holds whole keys: every
/// change is made in one assignment).
pub(crate) fn read(keys: &RwLock<RelayKeys>) -> std::sync::RwLockReadGuard<'_, RelayKeys> {
    keys.read().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
