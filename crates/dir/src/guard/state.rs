//! The persisted guard state (guard-spec §4.1, §4.3; format after §A.5):
//! the sampled and confirmed guards to and from TOML.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{GuardParams, GuardSet, Reachability, SampledGuard, since};
use crate::error::GuardError;
use crate::relay::RelayId;

/// Version of the persisted state format.
const STATE_VERSION: u32 = 1;

impl GuardSet {
    /// Serialize the persistent state (§4.1, §4.3; format after §A.5) as
    /// TOML.
    pub fn to_toml(&self) -> Result<String, GuardError> {
        let secs = |t: SystemTime| since(t, UNIX_EPOCH).as_secs();
        let guards = self
            .sampled
            .iter()
            .map(|g| GuardEntry {
                rsa_id: g.id,
                nickname: g.nickname.clone(),
                sampled_on: secs(g.added_on),
                sampled_by: g.added_by.clone(),
                listed: g.listed,
                unlisted_since: g.unlisted_since.map(secs),
                confirmed_on: g.confirmed_on.map(secs),
                confirmed_idx: self.confirmed.iter().position(|c| *c == g.id),
                extra: g.extra.clone(),
            })
            .collect();
        let state = StateFile {
            version: STATE_VERSION,
            guards,
        };
        toml::to_string(&state).map_err(|e| GuardError::Serialize(e.to_string()))
    }

    /// Restore a guard set saved by [`Self::to_toml`]. Transient state
    /// (reachability, pending) starts fresh, and nothing is usable until the
    /// next [`Self::update_consensus`]. A corrupt file gives
    /// [`GuardError::CorruptState`]; the caller should then start with
    /// [`Self::new`].
    pub fn from_toml(text: &str, params: GuardParams) -> Result<Self, GuardError> {
        let corrupt = GuardError::CorruptState;
        let state: StateFile = toml::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(corrupt(format!(
                "unsupported version {} (expected {STATE_VERSION})",
                state.version
            )));
        }
        let time = |s: u64| {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(s))
                .ok_or_else(|| corrupt(format!("time {s} out of range")))
        };
        let mut set = Self::new(params);
        let mut confirmed: Vec<(usize, RelayId)> = Vec::new();
        for e in state.guards {
            if set.get(&e.rsa_id).is_some() {
                return Err(corrupt(format!("guard {} listed twice", e.rsa_id)));
            }
            if let Some(idx) = e.confirmed_idx {
                if confirmed.iter().any(|(i, _)| *i == idx) {
                    return Err(corrupt(format!("confirmed_idx {idx} used twice")));
                }
                confirmed.push((idx, e.rsa_id));
            }
            set.sampled.push(SampledGuard {
                id: e.rsa_id,
                nickname: e.nickname,
                added_on: time(e.sampled_on)?,
                added_by: e.sampled_by,
                listed: e.listed,
                unlisted_since: e.unlisted_since.map(time).transpose()?,
                confirmed_on: e.confirmed_on.map(time).transpose()?,
                extra: e.extra,
                reachable: Reachability::Maybe,
                failing_since: None,
                last_tried: None,
                pending: false,
                listing: None,
            });
        }
        confirmed.sort_unstable();
        set.confirmed = confirmed.into_iter().map(|(_, id)| id).collect();
        Ok(set)
    }
}

/// The persisted state file.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default, rename = "guard")]
    guards: Vec<GuardEntry>,
}

/// One persisted sampled guard; field names follow guard-spec §A.5, times
/// are seconds since the Unix epoch.
#[derive(Debug, Serialize, Deserialize)]
struct GuardEntry {
    rsa_id: RelayId,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    nickname: String,
    sampled_on: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sampled_by: Option<String>,
    listed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unlisted_since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_on: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_idx: Option<usize>,
    /// Keys we do not know, kept for whoever wrote them (§A.5).
    #[serde(flatten)]
    extra: BTreeMap<String, toml::Value>,
}
