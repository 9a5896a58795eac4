//! The client's state directory: what must survive a restart and is not a
//! cache (the guard set, guard-spec §A.5), kept apart from the directory
//! cache as tor keeps its `state` file in the DataDirectory.
//!
//! - The directory is private: created 0700; one of ours with looser
//!   permissions is fixed (tor does the same), one owned by another user
//!   is refused.
//! - One process at a time: a lock file held for the client's life (an
//!   advisory lock, freed by the kernel if the process dies), so two
//!   proxies never share a guard set. Clients in one process (tests, the
//!   demo) share the open directory instead of locking each other out.
//! - Keyed to its network: a `network` file names the network (a digest of
//!   its authorities' identities); a state written for another network (a
//!   private network regenerated in the same place) is set aside, never
//!   used.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The lock file.
const LOCK_FILE: &str = "lock";
/// Which network the state belongs to.
const NETWORK_FILE: &str = "network";
/// The guard state (braid-dir's `GuardSet::to_toml`).
const GUARDS_FILE: &str = "guards.toml";
/// The learned circuit build times (path-spec §2.4).
const BUILD_TIMES_FILE: &str = "build_times";

/// The state directory cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another process holds the directory's lock: stop it or pick another
    /// `--state` directory.
    #[error("state directory {path} is in use by another braid process (its lock is held)")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The directory belongs to another user: it cannot be trusted.
    #[error("state directory {path} is owned by uid {owner}, not by us (uid {uid})")]
    NotOurs {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        uid: u32,
    },
    /// Creating, reading or writing failed.
    #[error("state directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An open, locked state directory. Cheap to clone: clones share the
/// lock, which is freed when the last one goes.
#[derive(Debug, Clone)]
pub struct StateDir {
    inner: Arc<Locked>,
}

#[derive(Debug)]
struct Locked {
    path: PathBuf,
    network: String,
    /// Held for as long as this lives.
    _lock: File,
}

/// The state directories this process holds, by canonical path.
static OPEN: Mutex<Option<HashMap<PathBuf, Weak<Locked>>>> = Mutex::new(None);

/// The name of a network for [`StateDir::open`]: a digest of its
/// authorities' v3 identities, in any order.
pub fn network_key<'a>(v3idents: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut ids: Vec<&[u8]> = v3idents.into_iter().collect();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id);
    }
    let d = h.finalize();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl StateDir {
    /// Open (creating it if needed) and lock the state directory `path` for
    /// the network named `network` (see [`network_key`]).
    pub fn open(path: &Path, network: &str) -> Result<Self, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io_err(path))?;
        let meta = fs::metadata(path).map_err(io_err(path))?;
        let uid = our_uid(path)?;
        if meta.uid() != uid {
            return Err(StateError::NotOurs {
                path: path.to_owned(),
                owner: meta.uid(),
                uid,
            });
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "state directory {} had permissions {:o}; setting them to 0700",
                path.display(),
                meta.permissions().mode() & 0o777
            );
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_err(path))?;
        }
        let canonical = fs::canonicalize(path).map_err(io_err(path))?;
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let open = open.get_or_insert_with(HashMap::new);
        open.retain(|_, w| w.strong_count() > 0);
        if let Some(held) = open.get(&canonical).and_then(Weak::upgrade) {
            if held.network != network {
                return Err(StateError::Locked {
                    path: path.to_owned(),
                });
            }
            return Ok(Self { inner: held });
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let dir = Self {
            inner: Arc::new(Locked {
                path: path.to_owned(),
                network: network.to_owned(),
                _lock: lock,
            }),
        };
        dir.check_network(network)?;
        open.insert(canonical, Arc::downgrade(&dir.inner));
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Set aside a state written for another network, then record ours.
    fn check_network(&self, network: &str) -> Result<(), StateError> {
        let file = self.path().join(NETWORK_FILE);
        match fs::read_to_string(&file) {
            Ok(t) if t.trim() == network => return Ok(()),
            Ok(t) => {
                let old = self.path().join(format!("guards.{}.toml", t.trim()));
                tracing::warn!(
                    "state directory {} held the state of another network ({}); keeping it as {} and starting afresh",
                    self.path().display(),
                    t.trim(),
                    old.display()
                );
                match fs::rename(self.path().join(GUARDS_FILE), &old) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&old)(e)),
                }
                // Another network's build times say nothing of this one.
                let times = self.path().join(BUILD_TIMES_FILE);
                match fs::remove_file(&times) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&times)(e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&file)(e)),
        }
        self.store(NETWORK_FILE, &format!("{network}\n"))
    }

    /// The saved guard state, if any.
    pub fn load_guards(&self) -> Result<Option<String>, StateError> {
        let path = self.path().join(GUARDS_FILE);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Replace the guard state, atomically (write, sync, rename).
    pub fn store_guards(&self, text: &str) -> Result<(), StateError> {
        self.store(GUARDS_FILE, text)
    }

    /// The saved circuit build times, if any.
    pub fn load_build_times(&self) -> Result<Option<String>, StateError> {
        let path = self.path().join(BUILD_TIMES_FILE);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Replace the saved circuit build times, atomically.
    pub fn store_build_times(&self, text: &str) -> Result<(), StateError> {
        self.store(BUILD_TIMES_FILE, text)
    }

    fn store(&self, name: &str, text: &str) -> Result<(), StateError> {
        let path = self.path().join(name);
        crate::dir_cache::write_atomic(self.path(), &path, text, 0o600).map_err(io_err(&path))
    }
}

/// Our effective uid: the owner of a file we just created.
fn our_uid(dir: &Path) -> Result<u32, StateError> {
    let probe = dir.join(format!(".uid-probe.{}", std::process::id()));
    let f = File::create(&probe).map_err(io_err(&probe))?;
    let uid = f.metadata().map_err(io_err(&probe))?.uid();
    drop(f);
    let _ = fs::remove_file(&probe);
    Ok(uid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("braid-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn created_private_and_locked() {
        let d = tmp("lock");
        let s = StateDir::open(&d, "net1").unwrap();
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Another process is refused: the lock is held (a second open file
        // description of the lock file stands for it).
        let other = File::open(d.join(LOCK_FILE)).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        // This process shares it, for the same network only.
        let again = StateDir::open(&d, "net1").unwrap();
        let e = StateDir::open(&d, "net2").unwrap_err();
        assert!(matches!(e, StateError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("in use by another braid process"));
        drop(s);
        drop(again);
        // Free once the last holder is gone.
        other.try_lock().unwrap();
        other.unlock().unwrap();
        StateDir::open(&d, "net1").unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn loose_permissions_are_fixed() {
        let d = tmp("perm");
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let _s = StateDir::open(&d, "n").unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn guards_round_trip_and_another_networks_state_is_set_aside() {
        let d = tmp("net");
        {
            let s = StateDir::open(&d, "aaaa").unwrap();
            assert_eq!(s.load_guards().unwrap(), None);
            s.store_guards("[[guard]]\nx = 1\n").unwrap();
            assert_eq!(
                fs::metadata(d.join(GUARDS_FILE))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
        }
        {
            let s = StateDir::open(&d, "aaaa").unwrap();
            assert_eq!(
                s.load_guards().unwrap().as_deref(),
                Some("[[guard]]\nx = 1\n")
            );
        }
        // The network was regenerated: its guards are not ours.
        let s = StateDir::open(&d, "bbbb").unwrap();
        assert_eq!(s.load_guards().unwrap(), None);
        assert!(d.join("guards.aaaa.toml").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_network_key_ignores_order() {
        let a: &[u8] = &[1; 20];
        let b: &[u8] = &[2; 20];
        assert_eq!(network_key([a, b]), network_key([b, a]));
        assert_ne!(network_key([a]), network_key([b]));
        assert_eq!(network_key([a]).len(), 16);
    }
}
