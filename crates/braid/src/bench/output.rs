//! Writing the benchmarks' result files.

use std::path::Path;

use serde::Serialize;

use super::error::BenchError;

/// Writes `text` to `path`.
pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|source| BenchError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` to `path` as pretty-printed JSON.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BenchError> {
    let json = serde_json::to_string_pretty(value).map_err(|e| BenchError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    write_text(path, &json)
}
