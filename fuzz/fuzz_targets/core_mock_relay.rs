//! A relay's link keys and the CERTS cell it sends (tor-spec §4.2), shared
//! by the channel fuzz targets: the CERTS recorded from a real C-tor relay
//! (valid at one instant, for a TLS certificate we only know the digest
//! of), and a generated relay whose chain verifies against a TLS
//! certificate we hold, so the link handshake can get past CERTS.
//! The X.509 RSA identity certificate comes from braid-core's test
//! support (`test_support::x509`, the `test-support` feature).
#![allow(dead_code, reason = "each target uses part of it")]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use braid_core::channel::ExpectedIdentity;
use braid_core::channel::certs::tls_cert_digest;
use braid_core::test_support::x509::rsa_cert;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tor_cert::rsa::EncodedRsaCrosscert;
use tor_cert::{CertType, CertifiedKey, Ed25519Cert};
use tor_llcrypto::pk::ed25519::{Ed25519Identity, Keypair as EdKeypair};
use tor_llcrypto::pk::rsa::{KeyPair as RsaKeyPair, RsaIdentity};

const DAY: Duration = Duration::from_secs(86_400);

/// The instant the generated relay's certificates are checked at.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_258_700)
}

/// A CERTS cell body from its certificates, in order.
pub fn certs_body(entries: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![entries.len() as u8];
    for (t, body) in entries {
        out.push(*t);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The CERTS of a real C-tor relay on a chutney network, as recorded in
/// arti's tor-proto tests (and braid-core's `real_relay_certs_accepted`).
pub struct Recorded {
    pub body: Vec<u8>,
    pub tls_digest: [u8; 32],
    pub expected: ExpectedIdentity,
    /// 2020-09-26T18:01:20Z, when it was valid.
    pub when: SystemTime,
}

pub fn recorded() -> &'static Recorded {
    static R: OnceLock<Recorded> = OnceLock::new();
    R.get_or_init(|| {
        const T2: &str = "308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A";
        const T4: &str = "01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602";
        const T5: &str = "01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C";
        const T7: &str = "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F";
        let body = certs_body(&[(2, unhex(T2)), (4, unhex(T4)), (5, unhex(T5)), (7, unhex(T7))]);
        let tls_digest: [u8; 32] =
            unhex("b4fd606b64e4cbd466b8d76cb131069bae6f3aa1878857c9f624e31d77a799b8")
                .try_into()
                .expect("32 bytes");
        let rsa = RsaIdentity::from_bytes(&unhex("2f1fb49bb332a9eec617e41e911c33fb3890aef3"))
            .expect("20 bytes");
        let ed = Ed25519Identity::from_bytes(&unhex(
            "dcb604db2034b00fd16986d4adb9d16b21cb4e4457a33dec0f538903683e96e9",
        ))
        .expect("32 bytes");
        Recorded {
            body,
            tls_digest,
            expected: ExpectedIdentity { rsa, ed25519: Some(ed) },
            when: SystemTime::UNIX_EPOCH + Duration::from_secs(1_601_143_280),
        }
    })
}

/// A relay with keys from a fixed seed.
pub struct MockRelay {
    rsa: RsaKeyPair,
    ed_id: EdKeypair,
    ed_sign: EdKeypair,
    pub tls_cert: Vec<u8>,
    /// Its CERTS body, valid at [`now`], in C-tor's order (2, 4, 5, 7).
    pub certs: Vec<u8>,
}

impl MockRelay {
    pub fn shared() -> &'static MockRelay {
        static R: OnceLock<MockRelay> = OnceLock::new();
        R.get_or_init(|| {
            let mut rng = StdRng::seed_from_u64(0x6272_6169_64);
            let rsa = RsaKeyPair::generate(&mut rng).expect("RSA key");
            let ed_id = EdKeypair::from(&[11_u8; 32]);
            let ed_sign = EdKeypair::from(&[12_u8; 32]);
            let tls_cert = b"the relay's TLS certificate (only its digest matters)".to_vec();
            let mut r = MockRelay {
                rsa,
                ed_id,
                ed_sign,
                tls_cert,
                certs: Vec::new(),
            };
            let t = now();
            r.certs = certs_body(&[
                (2, r.rsa_id_cert(t - DAY, t + 365 * DAY)),
                (4, r.cert(CertType::IDENTITY_V_SIGNING, t + 2 * DAY)),
                (5, r.cert(CertType::SIGNING_V_TLS_CERT, t + 2 * DAY)),
                (7, r.cert(CertType::RSA_ID_V_IDENTITY, t + 2 * DAY)),
            ]);
            r
        })
    }

    pub fn expected(&self) -> ExpectedIdentity {
        ExpectedIdentity {
            rsa: self.rsa.to_public_key().to_rsa_identity(),
            ed25519: Some(self.ed_id.verifying_key().into()),
        }
    }

    pub fn tls_digest(&self) -> [u8; 32] {
        tls_cert_digest(&self.tls_cert)
    }

    fn cert(&self, cert_type: CertType, expiry: SystemTime) -> Vec<u8> {
        let ed_id: Ed25519Identity = self.ed_id.verifying_key().into();
        match cert_type {
            CertType::IDENTITY_V_SIGNING => Ed25519Cert::builder()
                .cert_type(cert_type)
                .expiration(expiry)
                .signing_key(ed_id)
                .cert_key(CertifiedKey::Ed25519(self.ed_sign.verifying_key().into()))
                .encode_and_sign(&self.ed_id)
                .expect("encodes")
                .into(),
            CertType::SIGNING_V_TLS_CERT => Ed25519Cert::builder()
                .cert_type(cert_type)
                .expiration(expiry)
                .cert_key(CertifiedKey::X509Sha256Digest(self.tls_digest()))
                .encode_and_sign(&self.ed_sign)
                .expect("encodes")
                .into(),
            _ => EncodedRsaCrosscert::encode_and_sign(&self.rsa, &ed_id, expiry)
                .expect("encodes")
                .into(),
        }
    }

    fn rsa_id_cert(&self, not_before: SystemTime, not_after: SystemTime) -> Vec<u8> {
        rsa_cert(&self.rsa.to_public_key(), &self.rsa, not_before, not_after)
    }
}
