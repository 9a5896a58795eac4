//! The directory cache on disk: one file per document kind, holding only
//! documents that verified when they were written.
//!
//! Writes are atomic (a temporary file in the same directory, fsync, rename,
//! fsync of the directory), so a crash or a full disk leaves the previous
//! file whole: the last good cache is never overwritten by a partial or bad
//! one. A file that fails verification on load is renamed to `NAME.corrupt`
//! (kept for inspection, replaced by the next corrupt one) and refetched.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use braid_dir::DocKind;

/// The file of the guard state in the cache folder.
const GUARDS_FILE: &str = "guards.toml";

/// A directory cache rooted at one folder.
#[derive(Debug, Clone)]
pub struct DirCache {
    dir: PathBuf,
}

impl DirCache {
    /// Use (and create if needed) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds documents of `kind`.
    pub fn path(&self, kind: DocKind) -> PathBuf {
        self.dir.join(match kind {
            DocKind::Consensus => "consensus-microdesc",
            DocKind::AuthorityCert => "authority-certs",
            DocKind::Microdesc => "microdescs",
        })
    }

    /// The cached text of `kind`, if any. A file that is not UTF-8 is
    /// reported as invalid data (the caller sets it aside).
    pub fn load(&self, kind: DocKind) -> io::Result<Option<String>> {
        match fs::read(self.path(kind)) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace the file of `kind` with `text`, atomically.
    pub fn store(&self, kind: DocKind, text: &str) -> io::Result<()> {
        self.store_path(&self.path(kind), text)
    }

    /// The persisted guard state (guard-spec §4), if any.
    pub fn load_guards(&self) -> io::Result<Option<String>> {
        match fs::read_to_string(self.dir.join(GUARDS_FILE)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace the persisted guard state, atomically.
    pub fn store_guards(&self, text: &str) -> io::Result<()> {
        self.store_path(&self.dir.join(GUARDS_FILE), text)
    }

    fn store_path(&self, path: &Path, text: &str) -> io::Result<()> {
        write_atomic(&self.dir, path, text, 0o666)
    }

    /// Set a file that failed verification aside as `NAME.corrupt`.
    pub fn quarantine(&self, kind: DocKind) -> io::Result<PathBuf> {
        let path = self.path(kind);
        let mut aside = path.clone().into_os_string();
        aside.push(".corrupt");
        let aside = PathBuf::from(aside);
        fs::rename(&path, &aside)?;
        Ok(aside)
    }
}

/// Replace `path` (a file in `dir`) with `text` atomically: write a
/// temporary file created with `mode` (less the umask), sync it, rename it
/// over `path`, sync `dir` so the rename is durable. Used by the cache and
/// by the state directory ([`crate::state`]).
pub(crate) fn write_atomic(dir: &Path, path: &Path, text: &str, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("doc")
        .to_owned();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("braid-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn store_load_quarantine() {
        let dir = temp("basic");
        let cache = DirCache::open(&dir).unwrap();
        assert_eq!(cache.load(DocKind::Consensus).unwrap(), None);
        cache.store(DocKind::Consensus, "one").unwrap();
        cache.store(DocKind::Consensus, "two").unwrap();
        assert_eq!(
            cache.load(DocKind::Consensus).unwrap().as_deref(),
            Some("two")
        );
        // No temporary files are left behind.
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["consensus-microdesc".to_owned()]);
        let aside = cache.quarantine(DocKind::Consensus).unwrap();
        assert!(aside.ends_with("consensus-microdesc.corrupt"));
        assert_eq!(cache.load(DocKind::Consensus).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = temp("fail");
        let cache = DirCache::open(&dir).unwrap();
        cache.store(DocKind::Microdesc, "good").unwrap();
        // A directory where the temporary file should go makes the write
        // fail, as a full disk would.
        let blocker = dir.join(format!(".microdescs.tmp.{}", std::process::id()));
        fs::create_dir(&blocker).unwrap();
        assert!(cache.store(DocKind::Microdesc, "new").is_err());
        assert_eq!(
            cache.load(DocKind::Microdesc).unwrap().as_deref(),
            Some("good")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_utf8_file_is_invalid_data() {
        let dir = temp("utf8");
        let cache = DirCache::open(&dir).unwrap();
        fs::write(cache.path(DocKind::AuthorityCert), [0xff, 0xfe]).unwrap();
        let e = cache.load(DocKind::AuthorityCert).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(&dir).unwrap();
    }
}
