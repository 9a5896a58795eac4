//! TLS to a relay's ORPort with rustls (ring provider).
//!
//! Relays present self-signed certificates with random names; what makes a
//! relay authentic is its CERTS cell, whose Signing->Link certificate
//! certifies the SHA-256 of the TLS certificate (tor-spec §4.2). So the
//! certificate verifier here accepts any chain, but still has rustls check
//! the handshake signatures with the provider's real algorithms: the peer
//! must hold the private key of the certificate it shows, and that
//! certificate (its DER, see [`TlsInfo::peer_cert`]) goes to the link
//! handshake.
//!
//! Session resumption is off, so every handshake carries the certificate.
//! SNI: C-tor clients send a random `www.<random>.com` name, which relays
//! ignore; we do the same ([`random_sni`]).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, Resumption};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, DnsName, ServerName, UnixTime};
use rustls::{CipherSuite, DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::ChannelDriverError;

/// Accepts any server certificate chain (relays' certificates are
/// self-signed; the CERTS cell authenticates them), but verifies the TLS
/// handshake signatures for real.
#[derive(Debug)]
pub struct AcceptAnyCertVerifier {
    /// The provider's signature verification algorithms.
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyCertVerifier {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: &CryptoProvider) -> Self {
        AcceptAnyCertVerifier {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyCertVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // tor-spec §4.2: the certificate is checked against the CERTS cell
        // by the link handshake, not against any CA or name.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls client configuration for ORPorts: ring provider, TLS 1.2 and
/// 1.3, any certificate (see [`AcceptAnyCertVerifier`]), no client
/// certificate, no session resumption, SNI on (with a random name).
pub fn client_config() -> Result<Arc<ClientConfig>, ChannelDriverError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertVerifier::new(&provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.enable_sni = true;
    Ok(Arc::new(config))
}

/// A random host name of the form C-tor clients send as SNI:
/// `www.` + 4 to 25 random base32 characters + `.com`.
pub fn random_sni() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let len: usize = rand::random_range(4..=25);
    let mut name = String::with_capacity(len + 8);
    name.push_str("www.");
    for _ in 0..len {
        let i = usize::from(rand::random::<u8>() & 31);
        name.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'a')));
    }
    name.push_str(".com");
    name
}

/// What the TLS handshake settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The negotiated protocol version (C-tor 0.4.9 on OpenSSL 3: TLS 1.3).
    pub version: Option<ProtocolVersion>,
    /// The negotiated cipher suite.
    pub cipher_suite: Option<CipherSuite>,
    /// The DER of the relay's leaf certificate, which its Signing->Link
    /// certificate must certify (tor-spec §4.2).
    pub peer_cert: Vec<u8>,
    /// The SNI name we sent.
    pub sni: String,
}

/// Runs the TLS handshake over `io` (a connected TCP stream to an ORPort).
///
/// On success, returns the stream and what the handshake settled. A
/// handshake that ends without a server certificate fails with
/// [`ChannelDriverError::NoPeerCertificate`]. No timeout here: the caller
/// sets one.
pub async fn connect<IO>(
    config: Arc<ClientConfig>,
    io: IO,
    addr: std::net::SocketAddr,
) -> Result<(TlsStream<IO>, TlsInfo), ChannelDriverError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let sni = random_sni();
    let name = DnsName::try_from(sni.clone())
        .map(|n| ServerName::DnsName(n.to_owned()))
        // Cannot happen (the alphabet is DNS-safe); sending no SNI is fine.
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
    let stream = TlsConnector::from(config)
        .connect(name, io)
        .await
        .map_err(|source| ChannelDriverError::Tls { addr, source })?;
    let (_, conn) = stream.get_ref();
    let peer_cert = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or(ChannelDriverError::NoPeerCertificate { addr })?;
    let info = TlsInfo {
        version: conn.protocol_version(),
        cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
        peer_cert,
        sni,
    };
    Ok((stream, info))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;
    use rustls::ServerConfig;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A self-signed RSA-2048 certificate (made with `openssl req -x509`),
    /// like the ones relays present, and its key (PKCS#8).
    const CERT: &[u8] = include_bytes!("testdata/cert_a.der");
    const KEY: &[u8] = include_bytes!("testdata/key_a.pk8");
    /// Another RSA-2048 key, which `CERT` does not certify.
    const OTHER_KEY: &[u8] = include_bytes!("testdata/key_b.pk8");

    #[test]
    fn sni_looks_like_ctor() {
        for _ in 0..100 {
            let s = random_sni();
            assert!(s.starts_with("www.") && s.ends_with(".com"), "{s}");
            let middle = &s[4..s.len() - 4];
            assert!((4..=25).contains(&middle.len()), "{s}");
            assert!(DnsName::try_from(s.clone()).is_ok(), "{s}");
        }
    }

    /// Presents `CERT` but signs with `key`, whatever the key.
    #[derive(Debug)]
    struct FixedKey(Arc<CertifiedKey>);

    impl ResolvesServerCert for FixedKey {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    fn server_config(key: &'static [u8], tls12_only: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
            .unwrap();
        let certified = CertifiedKey::new(vec![CertificateDer::from(CERT)], signing_key);
        let builder = ServerConfig::builder_with_provider(provider);
        let builder = if tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        };
        Arc::new(
            builder
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(FixedKey(Arc::new(certified)))),
        )
    }

    /// A one-connection TLS echo server on 127.0.0.1.
    async fn server(config: Arc<ServerConfig>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut buf = [0_u8; 5];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(&buf).await;
                    let _ = tls.flush().await;
                }
            }
        });
        addr
    }

    async fn client(addr: std::net::SocketAddr) -> Result<(), ChannelDriverError> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut tls, info) = connect(client_config()?, tcp, addr).await?;
        assert_eq!(info.peer_cert, CERT);
        tls.write_all(b"hello").await.unwrap();
        tls.flush().await.unwrap();
        let mut buf = [0_u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        Ok(())
    }

    #[tokio::test]
    async fn self_signed_cert_accepted_and_captured() {
        for tls12_only in [false, true] {
            let addr = server(server_config(KEY, tls12_only)).await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (_tls, info) = connect(client_config().unwrap(), tcp, addr).await.unwrap();
            assert_eq!(info.peer_cert, CERT);
            let want = if tls12_only {
                ProtocolVersion::TLSv1_2
            } else {
                ProtocolVersion::TLSv1_3
            };
            assert_eq!(info.version, Some(want));
            assert!(info.cipher_suite.is_some());
            drop(_tls);
            let addr = server(server_config(KEY, tls12_only)).await;
            client(addr).await.unwrap();
        }
    }

    #[tokio::test]
    async fn handshake_signature_is_checked() {
        // The server shows CERT but signs with a key CERT does not certify:
        // accepting any certificate must not mean accepting any signature.
        for tls12_only in [false, true] {
            let addr = server(server_config(OTHER_KEY, tls12_only)).await;
            let err = client(addr).await.unwrap_err();
            assert!(
                matches!(err, ChannelDriverError::Tls { .. }),
                "tls12_only={tls12_only}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.to_lowercase().contains("signature"),
                "tls12_only={tls12_only}: {msg}"
            );
        }
    }
}
