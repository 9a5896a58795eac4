//! Braid's link handshake in the relay's roles against C-tor (Debian's tor
//! 0.4.9) on 127.0.0.1: a tokio + rustls driver around braid-core's
//! sans-IO `ResponderHandshake` and `ClientHandshake`, for this test only.
//!
//! One C-tor relay (its own DataDirectory, a DirAuthority that does not
//! exist, so it talks to nothing else) and one C-tor client:
//!
//! 1. Braid authenticates as a relay to the C-tor relay's ORPort (CERTS
//!    2/4/6/7, AUTHENTICATE): the C-tor relay must log our RSA identity
//!    for the channel.
//! 2. A Braid client circuit through the C-tor relay asks it to EXTEND2 to
//!    Braid's responder: the C-tor relay, as an authenticating initiator,
//!    must accept our CERTS (1/2/4/5/7) and we must accept its CERTS and
//!    AUTHENTICATE. (This runs first: once 1 has opened an authenticated
//!    channel from us, C-tor extends over that one instead of connecting.)
//! 3. The C-tor client, with Braid as its bridge, must accept our CERTS;
//!    we see an unauthenticated initiator.
//!
//! Starts two tor processes (killed when the test ends, by their handles)
//! and takes a few seconds: `cargo test -p braid-core --test ctor_link --
//! --nocapture`.
//! With `BRAID_RECORD_AUTH0003=FILE` it also writes the C-tor relay's
//! authenticating handshake of step 2 to FILE (the recording in
//! `src/channel/testdata/ctor_auth0003.txt` was made so).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "test"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use braid_core::channel::{
    AUTH0003_EXPORTER_LABEL, CellCodec, ClientHandshake, ExpectedIdentity, HandshakeOutcome,
    HandshakeParams, Initiator, InitiatorAuth, RelayIdentityKeys, RelayLinkKeys,
    ResponderHandshake, ResponderOutcome, ResponderParams,
};
use braid_core::circuit::{CircEvent, CircParams, ClientCircuit, HopTarget};
use braid_core::ids::CircId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tor_cell::chancell::ChanCell;
use tor_llcrypto::pk::curve25519;
use tor_llcrypto::pk::ed25519::{self, Ed25519Identity};
use tor_llcrypto::pk::rsa::{KeyPair as RsaKeyPair, RsaIdentity};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Braid's relay keys, made fresh.
fn braid_keys() -> Arc<RelayLinkKeys> {
    let mut rng = rand::rng();
    let now = SystemTime::now();
    let month = Duration::from_secs(30 * 86_400);
    let ids = RelayIdentityKeys::from_master_keys(
        RsaKeyPair::generate(&mut rng).unwrap(),
        &ed25519::Keypair::generate(&mut rng),
        &ed25519::Keypair::generate(&mut rng),
        now + month,
    )
    .unwrap();
    Arc::new(RelayLinkKeys::new(ids, &mut rng, now).unwrap())
}

// ----- TLS -----

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(keys: &RelayLinkKeys) -> Arc<rustls::ServerConfig> {
    let certs = keys
        .tls()
        .certificates_der()
        .into_iter()
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(keys.tls().private_key_pkcs8_der().unwrap().to_vec().into());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

/// Relays' certificates are checked by the CERTS cell, not by a CA.
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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

async fn tls_connect(addr: SocketAddr) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let p = provider();
    let config = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(p.signature_verification_algorithms)))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("www.example.com").unwrap(), tcp)
        .await
        .unwrap();
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (tls, cert)
}

// ----- Braid's sides -----

/// Accept connections on `listener` and run the responder on each;
/// report every outcome (or error) on `tx`. After the handshake, read and
/// drop what comes (we serve no circuits).
async fn serve(
    listener: TcpListener,
    keys: Arc<RelayLinkKeys>,
    tx: mpsc::UnboundedSender<Result<ResponderOutcome, String>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&keys));
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            return;
        };
        let (acceptor, keys, tx) = (acceptor.clone(), keys.clone(), tx.clone());
        tokio::spawn(async move {
            let mut tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    let _ = tx.send(Err(format!("TLS accept: {e}")));
                    return;
                }
            };
            let tls_cert = keys.tls_cert_der().to_vec();
            let params = ResponderParams::new(keys)
                .with_peer_addr(peer.ip())
                .with_my_addrs(vec![LOCALHOST]);
            let mut h = ResponderHandshake::new(params, &mut rand::rng(), Instant::now());
            let mut buf = vec![0; 16 * 1024];
            // What went each way, and the exporter, for a recording.
            let (mut sent, mut received, mut exported) = (Vec::new(), Vec::new(), None);
            let result = loop {
                if let Some(out) = h.poll_transmit() {
                    sent.extend_from_slice(&out);
                    if let Err(e) = tls.write_all(&out).await {
                        break Err(format!("write: {e}"));
                    }
                    let _ = tls.flush().await;
                }
                if h.is_open() {
                    break Ok(h.outcome().unwrap().clone());
                }
                if let Some(req) = h.tls_export_request() {
                    let material = tls
                        .get_ref()
                        .1
                        .export_keying_material([0; 32], req.label, Some(&req.context))
                        .unwrap();
                    exported = Some((req.context, material));
                    if let Err(e) = h.handle_tls_export(SystemTime::now(), material) {
                        break Err(e.to_string());
                    }
                    continue;
                }
                match tls.read(&mut buf).await {
                    Ok(0) => break Err("EOF during the handshake".into()),
                    Ok(n) => {
                        received.extend_from_slice(&buf[..n]);
                        if let Err(e) = h.handle_bytes(SystemTime::now(), &buf[..n]) {
                            break Err(e.to_string());
                        }
                    }
                    Err(e) => break Err(format!("read: {e}")),
                }
            };
            if let (Ok(o), Some((context, value)), Ok(path)) =
                (&result, exported, std::env::var("BRAID_RECORD_AUTH0003"))
                && matches!(o.initiator, Initiator::Relay(_))
            {
                record(&path, &sent, &received, &tls_cert, &context, &value);
            }
            let _ = tx.send(result);
            while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
        });
    }
}

/// Write a C-tor relay's authenticating handshake with us to `path`, as
/// `name: hex` lines (braid-core's `ctor_auth0003` test reads it).
fn record(
    path: &str,
    sent: &[u8],
    received: &[u8],
    tls_cert: &[u8],
    context: &[u8; 32],
    value: &[u8; 32],
) {
    let time = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let text = format!(
        "# A C-tor 0.4.9 relay (initiator) authenticating to Braid (responder),\n\
         # recorded by crates/core/tests/ctor_link.rs (BRAID_RECORD_AUTH0003).\n\
         time: {time}\nresponder_sent: {}\ninitiator_sent: {}\nresponder_tls_cert: {}\n\
         exporter_context: {}\nexporter_value: {}\n",
        hex::encode(sent),
        hex::encode(received),
        hex::encode(tls_cert),
        hex::encode(context),
        hex::encode(value),
    );
    std::fs::write(path, text).unwrap();
    println!("recorded to {path}");
}

/// Run the initiator's handshake over `tls`; returns the outcome and the
/// channel's codec.
async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    tls: &mut S,
    params: HandshakeParams,
) -> (HandshakeOutcome, CellCodec) {
    let mut h = ClientHandshake::new(params, Instant::now());
    let mut buf = vec![0; 16 * 1024];
    while !h.is_open() {
        if let Some(out) = h.poll_transmit() {
            tls.write_all(&out).await.unwrap();
            tls.flush().await.unwrap();
        }
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "EOF during the handshake");
        h.handle_bytes(SystemTime::now(), &buf[..n]).unwrap();
    }
    let opened = h.finish().unwrap();
    tls.write_all(&opened.unsent).await.unwrap();
    tls.flush().await.unwrap();
    (opened.outcome, opened.codec)
}

// ----- C-tor -----

struct CTor {
    /// Killed on drop.
    _child: tokio::process::Child,
    dir: PathBuf,
}

impl CTor {
    async fn start(dir: &Path, torrc: &str) -> CTor {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("torrc");
        std::fs::write(&path, torrc).unwrap();
        let tor = std::env::var("BRAID_TOR").unwrap_or_else(|_| "tor".into());
        let child = tokio::process::Command::new(tor)
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("running tor (set BRAID_TOR)");
        CTor {
            _child: child,
            dir: dir.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("info.log")).unwrap_or_default()
    }

    /// Wait until the log has `needle`.
    async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// A DirAuthority line for an authority nobody runs, so C-tor contacts
/// nothing but us.
fn fake_authority() -> String {
    format!(
        "DirAuthority nobody orport=1 no-v2 v3ident={} 127.0.0.1:2 {}\n",
        "A".repeat(40),
        "B".repeat(40)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The C-tor relay's identities and ntor key, from its DataDirectory.
fn ctor_relay_target(data: &Path, addr: SocketAddr) -> HopTarget {
    let word = |f: &str| {
        std::fs::read_to_string(data.join(f))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let rsa_id = RsaIdentity::from_hex(&word("fingerprint")).unwrap();
    let ed_id = Ed25519Identity::from_base64(&word("fingerprint-ed25519")).unwrap();
    // "== c25519v1: onion ==" padded to 32 bytes, then the secret key.
    let ntor = std::fs::read(data.join("keys/secret_onion_key_ntor")).unwrap();
    let secret: [u8; 32] = ntor[32..64].try_into().unwrap();
    let secret = curve25519::StaticSecret::from(secret);
    HopTarget {
        rsa_id,
        ed_id,
        ntor_onion_key: curve25519::PublicKey::from(&secret),
        addr,
        ntor_v3: false,
        request_cc: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctor_relay_and_client_interop() {
    let base = std::env::temp_dir().join(format!("braid-ctor-link-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let keys = braid_keys();
    let braid_fp = keys.rsa_identity().as_hex_upper();
    println!("Braid relay {braid_fp} {}", keys.ed_identity());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let braid_addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(serve(listener, keys.clone(), tx));

    // The C-tor relay.
    let or_port = free_port();
    let relay_dir = base.join("relay");
    let relay = CTor::start(
        &relay_dir,
        &format!(
            "DataDirectory {dir}\nSocksPort 0\nORPort 127.0.0.1:{or_port}\nAddress 127.0.0.1\n\
             Nickname ctorrelay\nContactInfo braid-test\nTestingTorNetwork 1\nAssumeReachable 1\n\
             PublishServerDescriptor 0\nExitRelay 0\nSafeLogging 0\nLog info file {dir}/info.log\n{auth}",
            dir = relay_dir.display(),
            auth = fake_authority()
        ),
    )
    .await;
    let ctor_addr = SocketAddr::new(LOCALHOST, or_port);
    let mut ready = false;
    for _ in 0..150 {
        if relay_dir.join("fingerprint-ed25519").exists()
            && TcpStream::connect(ctor_addr).await.is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "C-tor relay did not start:\n{}", relay.log());
    let ctor = ctor_relay_target(&relay_dir, ctor_addr);
    println!("C-tor relay {} {}", ctor.rsa_id.as_hex_upper(), ctor.ed_id);
    let expected = ExpectedIdentity {
        rsa: ctor.rsa_id,
        ed25519: Some(ctor.ed_id),
    };

    // 2. A client circuit through the C-tor relay, extended to Braid.
    let (mut tls2, cert2) = tls_connect(ctor_addr).await;
    let params = HandshakeParams::new(expected, cert2).with_peer_addr(LOCALHOST);
    let (_, mut codec) = initiate(&mut tls2, params).await;
    let circ_id = CircId::new(0x8000_0001).unwrap();
    let mut circ = ClientCircuit::new(
        circ_id,
        ctor.clone(),
        CircParams::default(),
        &mut rand::rng(),
        Instant::now(),
    )
    .unwrap();
    let braid_target = HopTarget {
        rsa_id: keys.rsa_identity(),
        ed_id: keys.ed_identity(),
        ntor_onion_key: curve25519::PublicKey::from(&curve25519::StaticSecret::from([7; 32])),
        addr: braid_addr,
        ntor_v3: false,
        request_cc: false,
    };
    let mut extended = false;
    let mut buf = vec![0; 16 * 1024];
    let wire_id = tor_cell::chancell::CircId::new(circ_id.get());
    let deadline = Instant::now() + Duration::from_secs(20);
    let relay_outcome = loop {
        assert!(
            Instant::now() < deadline,
            "no channel from C-tor; its log:\n{}",
            relay.log()
        );
        while let Some(msg) = circ.poll_transmit() {
            let mut out = Vec::new();
            codec
                .encode_cell(ChanCell::new(wire_id, msg), &mut out)
                .unwrap();
            tls2.write_all(&out).await.unwrap();
            tls2.flush().await.unwrap();
        }
        while let Some(ev) = circ.poll_event() {
            println!("2. circuit event: {ev:?}");
            if matches!(ev, CircEvent::Built { n_hops: 1 }) && !extended {
                circ.extend(braid_target.clone(), Instant::now()).unwrap();
                extended = true;
            }
        }
        if extended
            && let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
        {
            break r;
        }
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), tls2.read(&mut buf)).await
        {
            assert!(n > 0, "C-tor closed the client channel");
            codec.handle_bytes(&buf[..n]).unwrap();
            while let Some(cell) = codec.poll_cell().unwrap() {
                let (id, msg) = cell.into_circid_and_msg();
                if id == wire_id {
                    circ.handle_cell(Instant::now(), msg).unwrap();
                }
            }
        }
    };
    println!("2. C-tor relay opened a channel to us: {relay_outcome:?}");
    let outcome = relay_outcome.expect("handshake with the C-tor relay as initiator");
    let Initiator::Relay(id) = outcome.initiator else {
        panic!("C-tor did not authenticate: {outcome:?}")
    };
    assert_eq!(id.rsa, ctor.rsa_id);
    assert_eq!(id.ed25519, ctor.ed_id);
    assert!(
        relay
            .wait_log(
                "Authenticated it with RSA and Ed25519",
                Duration::from_secs(5)
            )
            .await,
        "C-tor did not log our certificates as good; its log:\n{}",
        relay.log()
    );

    // 1. Braid authenticates to the C-tor relay.
    let (mut tls, cert) = tls_connect(ctor_addr).await;
    let exporter = tls
        .get_ref()
        .1
        .export_keying_material(
            [0; 32],
            AUTH0003_EXPORTER_LABEL,
            Some(&keys.auth0003_exporter_context()),
        )
        .unwrap();
    let auth = InitiatorAuth::new(keys.clone(), exporter, vec![LOCALHOST], &mut rand::rng());
    let params = HandshakeParams::new(expected, cert)
        .with_peer_addr(LOCALHOST)
        .with_relay_auth(auth);
    let (outcome, _) = initiate(&mut tls, params).await;
    println!("1. we authenticated to C-tor: {outcome:?}");
    assert!(outcome.authenticated);
    assert_eq!(outcome.peer.rsa, ctor.rsa_id);
    let seen = format!("Its ID digest is {braid_fp}");
    assert!(
        relay.wait_log(&seen, Duration::from_secs(10)).await,
        "C-tor did not take our identity; its log:\n{}",
        relay.log()
    );
    println!("1. C-tor relay's log: {seen}");

    // 3. The C-tor client with Braid as its bridge.
    let client_dir = base.join("client");
    let client = CTor::start(
        &client_dir,
        &format!(
            "DataDirectory {dir}\nSocksPort 0\nUseBridges 1\nBridge 127.0.0.1:{port} {braid_fp}\n\
             TestingTorNetwork 1\nSafeLogging 0\nLog info file {dir}/info.log\n{auth}",
            dir = client_dir.display(),
            port = braid_addr.port(),
            auth = fake_authority()
        ),
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("no connection from the C-tor client")
        .unwrap();
    println!("3. C-tor client connected: {r:?}");
    assert_eq!(r.unwrap().initiator, Initiator::Unauthenticated);
    assert!(
        client
            .wait_log(
                "Authenticated it with RSA and Ed25519",
                Duration::from_secs(10)
            )
            .await,
        "C-tor client did not log our certificates as good; its log:\n{}",
        client.log()
    );
    for (who, log) in [("relay", relay.log()), ("client", client.log())] {
        for line in log
            .lines()
            .filter(|l| l.contains("certificates on") || l.contains("Got good NETINFO"))
        {
            println!("C-tor {who}: {line}");
        }
    }
    drop(client);
    drop(relay);
    let _ = std::fs::remove_dir_all(&base);
}
