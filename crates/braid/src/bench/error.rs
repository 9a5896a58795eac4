//! Why a benchmark stopped.

use std::path::PathBuf;

use braid_testnet::TestnetError;

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    #[error(transparent)]
    Testnet(#[from] TestnetError),
    #[error("braid proxy: {0}")]
    Proxy(String),
    #[error("the network has no {0}")]
    Missing(&'static str),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}
