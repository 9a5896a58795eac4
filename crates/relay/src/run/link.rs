//! The link handshake's keys and the TLS configurations built from them,
//! rebuilt before the link certificates expire (C-tor makes new link and
//! authentication keys every two days).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use braid_core::channel::{RelayIdentityKeys, RelayLinkKeys};
use rustls::client::ClientConfig;
use rustls::server::ServerConfig;
use tokio::sync::watch;

use super::tls;
use crate::error::{KeyError, RunError};

/// Rebuild the link keys this long before they expire, and at least this
/// often.
const ROTATE_MARGIN: Duration = Duration::from_secs(6 * 3600);
/// The longest a set of link keys is used.
const ROTATE_MAX: Duration = Duration::from_secs(24 * 3600);
/// Wait this long after a failed rebuild.
const ROTATE_RETRY: Duration = Duration::from_secs(600);

/// What every channel handshake needs: our link keys and certificates
/// and the TLS configurations that present them.
#[derive(Debug)]
pub(crate) struct Link {
    /// Keys and certificates of the link handshake.
    pub(crate) keys: Arc<RelayLinkKeys>,
    /// TLS server configuration with the link certificate.
    pub(crate) server: Arc<ServerConfig>,
    /// TLS client configuration for extending.
    pub(crate) client: Arc<ClientConfig>,
}

impl Link {
    /// New link keys from `ids`, valid from now. Slow (a 2048-bit RSA key):
    /// run it off the async threads.
    pub(crate) fn build(ids: Result<RelayIdentityKeys, KeyError>) -> Result<Self, RunError> {
        let keys = RelayLinkKeys::new(ids?, &mut rand::rng(), SystemTime::now())
            .map_err(RunError::LinkKeys)?;
        Ok(Self {
            server: tls::server_config(&keys)?,
            client: tls::client_config()?,
            keys: Arc::new(keys),
        })
    }

    /// When to build the next keys.
    fn rotate_in(&self) -> Duration {
        self.keys
            .expiry()
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(ROTATE_MARGIN)
            .min(ROTATE_MAX)
    }
}

/// Build [`Link`]s from `ids` (a fresh copy each time) for as long as the
/// receivers live, publishing each on `tx`; at once when `now` is
/// notified (a new signing key must certify new link keys).
pub(crate) async fn rotate(
    ids: impl Fn() -> Result<RelayIdentityKeys, KeyError> + Send + Sync + 'static,
    tx: watch::Sender<Arc<Link>>,
    now: Arc<tokio::sync::Notify>,
) {
    let ids = Arc::new(ids);
    loop {
        let wait = tx.borrow().rotate_in();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = now.notified() => {}
            () = tx.closed() => return,
        }
        let ids = Arc::clone(&ids);
        match tokio::task::spawn_blocking(move || Link::build(ids())).await {
            Ok(Ok(link)) => {
                tracing::info!("new link keys, valid until {:?}", link.keys.expiry());
                tx.send_replace(Arc::new(link));
            }
            Ok(Err(e)) => {
                tracing::error!("cannot make new link keys: {e}; retrying in {ROTATE_RETRY:?}");
                tokio::time::sleep(ROTATE_RETRY).await;
            }
            Err(e) => {
                tracing::error!("link key task failed: {e}");
                tokio::time::sleep(ROTATE_RETRY).await;
            }
        }
    }
}
