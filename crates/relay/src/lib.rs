//! The relay side of Braid: the driver that owns the relay's keys on disk
//! and publishes its server descriptor to the directory authorities. The
//! protocol logic it drives lives in braid-dir (the descriptor and its
//! upload schedule) and braid-core.
//!
//! - [`config`]: the relay's configuration file.
//! - [`keys`]: the relay's keys in a C-tor `keys/` directory.
//! - [`publish`]: uploading the descriptor to the authorities.
//! - [`http`]: the minimal HTTP/1.0 client for their DirPorts.
//! - [`run`]: `braid relay run`, the tokio driver of the relay.
//! - [`error`]: the error types.

pub mod config;
pub mod error;
pub mod http;
mod keyfile;
pub mod keys;
pub mod publish;
pub mod run;

pub use config::RelayConfig;
pub use error::{ConfigError, FetchError, KeyError, LinkError, PublishError, RunError};
pub use keys::{KeysOpened, RelayKeys};
pub use publish::{PublishEvent, Publisher};
