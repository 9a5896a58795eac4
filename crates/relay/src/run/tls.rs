//! TLS for the ORPort with rustls (ring provider): the server side with the
//! RSA link certificate of [`RelayLinkKeys::tls`], and the client side a
//! relay uses to extend, which accepts any certificate.
//!
//! Relays present self-signed certificates with random names; what makes a
//! relay authentic is its CERTS cell, whose Signing->Link certificate
//! certifies the SHA-256 of the TLS certificate (tor-spec §4.2). So the
//! client verifier accepts any chain but still has rustls check the
//! handshake signatures: the peer must hold the key of the certificate it
//! shows, and that certificate goes to the link handshake. (The client's
//! `braid_client::channel::tls` has the same verifier; both are protocol
//! free and could move to a shared crate.)

use std::sync::Arc;

use braid_core::channel::RelayLinkKeys;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, Resumption};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ServerConfig;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::RunError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration for our ORPort: the TLS certificate and
/// key of `keys`, TLS 1.2 and 1.3, no client certificate (an initiator
/// authenticates in the link handshake), no session tickets.
pub(crate) fn server_config(keys: &RelayLinkKeys) -> Result<Arc<ServerConfig>, RunError> {
    let certs = keys
        .tls()
        .certificates_der()
        .into_iter()
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect();
    let key = keys
        .tls()
        .private_key_pkcs8_der()
        .map_err(|e| RunError::Tls(format!("encoding the TLS key: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(key.to_vec().into());
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RunError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| RunError::Tls(format!("the TLS certificate: {e}")))?;
    // Every handshake carries the certificate the CERTS cell certifies.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The rustls client configuration for extending to other relays: any
/// certificate (see the module documentation), no session resumption.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, RunError> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCert(provider.signature_verification_algorithms));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RunError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// A random SNI of the form C-tor sends, `www.<random>.com`, or the
/// address when that cannot be a DNS name.
pub(crate) fn server_name() -> ServerName<'static> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let len: usize = rand::random_range(4..=25);
    let mut name = String::from("www.");
    for _ in 0..len {
        let i = usize::from(rand::random::<u8>() & 31);
        name.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'a')));
    }
    name.push_str(".com");
    ServerName::try_from(name)
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into()))
}

/// Accepts any server certificate (the CERTS cell authenticates it), but
/// verifies the TLS handshake signatures for real.
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // tor-spec §4.2: checked against the CERTS cell, not a CA.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
