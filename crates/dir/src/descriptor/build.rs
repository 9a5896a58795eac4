//! Building and signing a server descriptor (dir-spec §2.1.1), item by item
//! in the order C-tor writes them (`router_dump_router_to_string`), with
//! tor-netdoc's `NetdocEncoder` for the item syntax and our own code for
//! the certificates and signatures it does not make (TAP `onion-key` and
//! `onion-key-crosscert`, signatures by an expanded ed25519 key).

use std::time::{Duration, SystemTime};

use base64ct::{Base64Unpadded, Encoding as _};
use digest::Digest as _;
use tor_cert::{CertType, CertifiedKey, Ed25519Cert};
use tor_checkable::{SelfSigned as _, TimeBound as _};
use tor_llcrypto::d::{Sha1, Sha256};
use tor_llcrypto::pk::ed25519::{self, Ed25519Identity};
use tor_llcrypto::pk::keymanip::convert_curve25519_to_ed25519_private;
use tor_llcrypto::pk::{curve25519, rsa};
use tor_netdoc::encode::NetdocEncoder;
use tor_netdoc::types::Iso8601TimeSp;
use tor_netdoc::types::policy::RuleKind;

use super::error::DescriptorError;
use super::info::{DescriptorInfo, published_secs};

/// Largest descriptor C-tor authorities accept (`MAX_DESCRIPTOR_UPLOAD_SIZE`
/// in `process_descs.c`).
pub const MAX_DESCRIPTOR_LEN: usize = 20_000;

/// Lifetime of the `ntor-onion-key-crosscert`: C-tor signs it from the
/// published time for the onion key lifetime (`get_onion_key_lifetime`,
/// consensus parameter `onion-key-rotation-days`, default 28 days).
pub const NTOR_CROSSCERT_LIFETIME: Duration = Duration::from_secs(28 * 24 * 3600);

/// Prefix of the text the `router-sig-ed25519` signature covers (dir-spec
/// §2.1.1).
const ED_SIG_PREFIX: &[u8] = b"Tor router descriptor signature v1";

/// The keys a descriptor is made from. The relay's key store hands these
/// out; the master identity is read from the signing-key certificate.
#[derive(Clone, Copy)]
pub struct DescriptorKeys<'a> {
    /// RSA-1024 identity key: `signing-key`, `fingerprint`,
    /// `router-signature`.
    pub identity: &'a rsa::KeyPair,
    /// RSA-1024 TAP onion key: `onion-key` and `onion-key-crosscert` only
    /// (C-tor authorities still require both).
    pub tap_onion: &'a rsa::KeyPair,
    /// The medium-term ed25519 signing key (`router-sig-ed25519`).
    pub signing: &'a ed25519::ExpandedKeypair,
    /// The encoded type-4 certificate of the signing key by the master
    /// identity key, with the signed-with-ed25519-key extension
    /// (`identity-ed25519`).
    pub signing_cert: &'a [u8],
    /// The current curve25519 ntor onion key (`ntor-onion-key`).
    pub ntor: &'a curve25519::StaticKeypair,
}

impl std::fmt::Debug for DescriptorKeys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DescriptorKeys")
            .field("identity", &self.identity.to_public_key().to_rsa_identity())
            .field("signing", &Ed25519Identity::from(self.signing.public()))
            .finish_non_exhaustive()
    }
}

/// A signed server descriptor, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDescriptor {
    text: String,
    digest: [u8; 20],
    rsa_identity: rsa::RsaIdentity,
    ed_identity: Ed25519Identity,
    published: SystemTime,
}

impl ServerDescriptor {
    /// The document, from `router` to the end of `router-signature`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The descriptor digest: SHA-1 of the text from `router` through
    /// `router-signature\n` (dir-spec §2.1.1), as in `/tor/server/d/`.
    pub fn digest(&self) -> [u8; 20] {
        self.digest
    }

    /// The RSA identity (fingerprint).
    pub fn rsa_identity(&self) -> rsa::RsaIdentity {
        self.rsa_identity
    }

    /// The ed25519 master identity.
    pub fn ed_identity(&self) -> Ed25519Identity {
        self.ed_identity
    }

    /// The `published` time, to the second.
    pub fn published(&self) -> SystemTime {
        self.published
    }
}

/// Build and sign the descriptor of the relay with `keys` saying `info`.
pub fn build_descriptor(
    keys: &DescriptorKeys<'_>,
    info: &DescriptorInfo,
) -> Result<ServerDescriptor, DescriptorError> {
    info.validate()?;
    let published = published_secs(info.published)?;
    let master = check_signing_cert(keys, published)?;
    let identity = keys.identity.to_public_key();
    check_rsa_1024(&identity, "identity")?;
    let tap = keys.tap_onion.to_public_key();
    check_rsa_1024(&tap, "TAP onion")?;
    let tap_crosscert = tap_crosscert(keys.tap_onion, &identity, &master)?;
    let (ntor_crosscert, sign_bit) = ntor_crosscert(keys.ntor, &master, published)?;

    let mut enc = NetdocEncoder::new();
    enc.item("router")
        .arg(&info.nickname)
        .arg(&info.address.to_string())
        .arg(&info.or_port)
        .arg(&0_u16) // SOCKSPort, always 0
        .arg(&0_u16); // DirPort: none, we serve no directory over HTTP
    enc.item("identity-ed25519")
        .object_bytes("ED25519 CERT", keys.signing_cert.to_vec());
    enc.item("master-key-ed25519").arg(&master.to_string());
    enc.item("platform").args_raw_string(&info.platform);
    enc.item("proto").args_raw_string(&info.proto);
    enc.item("published").arg(&Iso8601TimeSp(published));
    enc.item("fingerprint")
        .args_raw_string(&spaced_fingerprint(&identity.to_rsa_identity()));
    enc.item("uptime").arg(&info.uptime);
    enc.item("bandwidth")
        .arg(&info.bandwidth.average)
        .arg(&info.bandwidth.burst)
        .arg(&info.bandwidth.observed);
    enc.item("onion-key")
        .object_bytes("RSA PUBLIC KEY", tap.to_der());
    enc.item("signing-key")
        .object_bytes("RSA PUBLIC KEY", identity.to_der());
    enc.item("onion-key-crosscert")
        .object_bytes("CROSSCERT", tap_crosscert);
    enc.item("ntor-onion-key-crosscert")
        .arg(&sign_bit)
        .object_bytes("ED25519 CERT", ntor_crosscert);
    if info.hidden_service_dir {
        enc.item("hidden-service-dir");
    }
    if let Some(contact) = &info.contact {
        enc.item("contact").args_raw_string(contact);
    }
    enc.item("ntor-onion-key")
        .arg(&Base64Unpadded::encode_string(keys.ntor.public.as_bytes()));
    for rule in info.exit_policy.rules() {
        let keyword = match rule.kind {
            RuleKind::Accept => "accept",
            RuleKind::Reject => "reject",
        };
        enc.item(keyword).arg(&rule.pattern.to_string());
    }
    // After the exit policy, as C-tor writes it (`router_dump_router_to_string`).
    if info.tunnelled_dir_server {
        enc.item("tunnelled-dir-server");
    }

    // "router-sig-ed25519": the signing key over SHA-256 of the prefix and
    // the text from "router " through "router-sig-ed25519 ".
    let mut h = Sha256::new();
    h.update(ED_SIG_PREFIX);
    h.update(enc.text_sofar().map_err(bug)?);
    h.update(b"router-sig-ed25519 ");
    let ed_sig = keys.signing.sign(&h.finalize());
    enc.item("router-sig-ed25519")
        .arg(&Base64Unpadded::encode_string(&ed_sig.to_bytes()));

    // "router-signature": PKCS#1 v1.5 without DigestInfo, by the identity
    // key, over SHA-1 of the text from "router " through
    // "router-signature\n". That SHA-1 is also the descriptor's digest.
    let mut h = Sha1::new();
    h.update(enc.text_sofar().map_err(bug)?);
    h.update(b"router-signature\n");
    let digest: [u8; 20] = h.finalize().into();
    let rsa_sig = keys
        .identity
        .sign(&digest)
        .map_err(|e| DescriptorError::Encode(format!("RSA signature: {e}")))?;
    enc.item("router-signature")
        .object_bytes("SIGNATURE", rsa_sig);

    let text = enc.finish().map_err(bug)?;
    if text.len() > MAX_DESCRIPTOR_LEN {
        return Err(DescriptorError::TooLarge {
            size: text.len(),
            limit: MAX_DESCRIPTOR_LEN,
        });
    }
    Ok(ServerDescriptor {
        text,
        digest,
        rsa_identity: identity.to_rsa_identity(),
        ed_identity: master,
        published,
    })
}

fn bug(e: impl std::fmt::Display) -> DescriptorError {
    DescriptorError::Encode(e.to_string())
}

/// The fingerprint as the `fingerprint` item writes it: ten groups of four
/// upper-case hex digits.
fn spaced_fingerprint(id: &rsa::RsaIdentity) -> String {
    let hex = hex::encode_upper(id.as_bytes());
    let groups: Vec<&str> = hex
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    groups.join(" ")
}

/// Authorities refuse RSA keys other than 1024 bits with exponent 65537.
fn check_rsa_1024(key: &rsa::PublicKey, which: &str) -> Result<(), DescriptorError> {
    if key.bits() != 1024 || !key.exponent_is(65537) {
        return Err(DescriptorError::Keys(format!(
            "the {which} key must be RSA-1024 with exponent 65537 (it has {} bits)",
            key.bits()
        )));
    }
    Ok(())
}

/// Check that `keys.signing_cert` is a valid type-4 certificate of
/// `keys.signing` by the master key named in its signed-with extension, at
/// `when`; return the master identity.
fn check_signing_cert(
    keys: &DescriptorKeys<'_>,
    when: SystemTime,
) -> Result<Ed25519Identity, DescriptorError> {
    let bad = |what: &str| DescriptorError::Keys(format!("signing-key certificate: {what}"));
    let cert = Ed25519Cert::decode(keys.signing_cert)
        .map_err(|e| bad(&format!("does not decode: {e}")))?;
    if cert.peek_cert_type() != CertType::IDENTITY_V_SIGNING {
        return Err(bad(&format!("type {}, not 4", cert.peek_cert_type())));
    }
    let signing = Ed25519Identity::from(keys.signing.public());
    if cert.peek_subject_key() != &CertifiedKey::Ed25519(signing) {
        return Err(bad("certifies another key than the signing key"));
    }
    let unchecked = cert
        .should_have_signing_key()
        .map_err(|_| bad("has no signed-with-ed25519-key extension"))?;
    let master = *unchecked.peek_signing_key();
    unchecked
        .check_signature()
        .map_err(|_| bad("bad signature"))?
        .if_valid_at(&when)
        .map_err(|e| bad(&format!("not valid at the published time: {e}")))?;
    Ok(master)
}

/// `onion-key-crosscert`: the TAP key's PKCS#1 v1.5 signature (no hash, no
/// DigestInfo) over SHA-1(DER of the identity key) || the ed25519 master
/// identity (dir-spec §2.1.1; C-tor's `make_tap_onion_key_crosscert`).
fn tap_crosscert(
    tap: &rsa::KeyPair,
    identity: &rsa::PublicKey,
    master: &Ed25519Identity,
) -> Result<Vec<u8>, DescriptorError> {
    let mut signed = Vec::with_capacity(52);
    signed.extend_from_slice(identity.to_rsa_identity().as_bytes());
    signed.extend_from_slice(master.as_bytes());
    tap.sign(&signed)
        .map_err(|e| DescriptorError::Encode(format!("TAP crosscert: {e}")))
}

/// `ntor-onion-key-crosscert`: a type-0A certificate of the master
/// identity, signed by the ntor key converted to ed25519, valid from
/// `published` for [`NTOR_CROSSCERT_LIFETIME`]; with the sign bit of the
/// converted key (dir-spec §2.1.1, "converting-to-ed25519").
fn ntor_crosscert(
    ntor: &curve25519::StaticKeypair,
    master: &Ed25519Identity,
    published: SystemTime,
) -> Result<(Vec<u8>, u8), DescriptorError> {
    // Clamp as X25519 does before using the secret as an ed25519 scalar
    // (C-tor stores clamped keys; a key from elsewhere may not be).
    let mut bytes = ntor.secret.to_bytes();
    if let Some(b) = bytes.first_mut() {
        *b &= 248;
    }
    if let Some(b) = bytes.last_mut() {
        *b = (*b & 127) | 64;
    }
    let secret = curve25519::StaticSecret::from(bytes);
    if curve25519::PublicKey::from(&secret) != ntor.public {
        return Err(DescriptorError::Keys(
            "the ntor public key does not match its secret".into(),
        ));
    }
    let (ed_ntor, sign_bit) = convert_curve25519_to_ed25519_private(&secret).ok_or_else(|| {
        DescriptorError::Keys("the ntor key cannot be converted to ed25519".into())
    })?;
    let cert = Ed25519Cert::builder()
        .cert_type(CertType::NTOR_CC_IDENTITY)
        .cert_key(CertifiedKey::Ed25519(*master))
        .expiration(published + NTOR_CROSSCERT_LIFETIME)
        .encode_and_sign(&ed_ntor)
        .map_err(|e| DescriptorError::Encode(format!("ntor crosscert: {e}")))?;
    Ok((cert.into(), sign_bit))
}
