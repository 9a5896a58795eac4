//! The SOCKS front end's entry points: [`Connector`] for [`TorClient`],
//! CONNECT and RESOLVE / RESOLVE_PTR requests.

use braid_core::stream::{Host, ResolvedAnswer, Socks5Reply, Target};

use super::{BEGIN_ATTEMPTS, TorClient, check_name};
use crate::safelog::sensitive;
use crate::socks::{Connector, SocksCommand, SocksRequest, SocksTarget};
use crate::tunnel::TorStream;

fn to_target(t: &SocksTarget) -> Target {
    match t {
        SocksTarget::Hostname(h, p) => Target {
            host: Host::Hostname(h.clone()),
            port: *p,
        },
        SocksTarget::Ip(ip, p) => Target {
            host: Host::from(*ip),
            port: *p,
        },
    }
}

impl Connector for TorClient {
    type Stream = TorStream;

    async fn connect(&self, request: &SocksRequest) -> Result<TorStream, Socks5Reply> {
        TorClient::connect(self, to_target(&request.target), &request.isolation)
            .await
            .map_err(|e| {
                tracing::info!("request for {}: {e}", sensitive(&request.target));
                e.reply
            })
    }

    /// A RESOLVE of a hostname answers its first address; a RESOLVE_PTR of
    /// an address its first name (tor-spec §6.4).
    async fn resolve(&self, request: &SocksRequest) -> Result<SocksTarget, Socks5Reply> {
        let reverse = request.command == SocksCommand::ResolvePtr;
        if let (false, SocksTarget::Hostname(host, _)) = (reverse, &request.target) {
            check_name(host).map_err(|e| e.reply)?;
        }
        // A failed build is retried, as for CONNECT: a circuit through a
        // relay that just died fails at once.
        let mut built = Err(Socks5Reply::GeneralFailure);
        for _ in 0..BEGIN_ATTEMPTS {
            match self.tunnel_for(&request.isolation, 80).await {
                Ok(t) => {
                    built = Ok(t);
                    break;
                }
                Err(e) => tracing::info!("circuit for a resolve failed: {e}"),
            }
        }
        let tunnel = built?;
        let answers = match (&request.target, reverse) {
            (SocksTarget::Hostname(host, _), false) => tunnel.resolve(host).await,
            (SocksTarget::Ip(addr, _), true) => tunnel.resolve_reverse(*addr).await,
            _ => return Err(Socks5Reply::AddressTypeNotSupported),
        }
        .map_err(|e| e.reply)?;
        answers
            .into_iter()
            .find_map(|a| match a {
                ResolvedAnswer::Ip { addr, .. } if !reverse => Some(SocksTarget::Ip(addr, 0)),
                ResolvedAnswer::Hostname { name, .. } if reverse => {
                    Some(SocksTarget::Hostname(name, 0))
                }
                _ => None,
            })
            .ok_or(Socks5Reply::HostUnreachable)
    }
}
