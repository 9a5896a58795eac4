//! Just enough X.509 to check a relay's RSA identity certificate (CERTS type
//! 2, tor-spec §4.2): the certified RSA key, the validity dates, and the
//! self-signature.
//!
//! This is a small strict DER reader, not a general X.509 implementation: it
//! reads the fields Tor needs (RFC 5280 §4.1) and ignores names and
//! extensions. C-tor makes these certificates with OpenSSL, signed with
//! sha256WithRSAEncryption; we also accept sha1WithRSAEncryption, which old
//! relays used.

use std::time::{Duration, SystemTime};

use digest::Digest;
use tor_llcrypto::d::{Sha1, Sha256};
use tor_llcrypto::pk::rsa::PublicKey;

use crate::time;

/// OID 1.2.840.113549.1.1.1 (rsaEncryption), content octets.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// OID 1.2.840.113549.1.1.11 (sha256WithRSAEncryption), content octets.
const OID_SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// OID 1.2.840.113549.1.1.5 (sha1WithRSAEncryption), content octets.
const OID_SHA1_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];

/// DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2, note 1).
const DIGEST_INFO_SHA256: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// DER DigestInfo prefix for SHA-1 (RFC 8017 §9.2, note 1).
const DIGEST_INFO_SHA1: &[u8] = &[
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

/// DER tags we read.
mod tag {
    /// INTEGER
    pub(super) const INTEGER: u8 = 0x02;
    /// BIT STRING
    pub(super) const BIT_STRING: u8 = 0x03;
    /// NULL
    pub(super) const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub(super) const OID: u8 = 0x06;
    /// UTCTime
    pub(super) const UTC_TIME: u8 = 0x17;
    /// GeneralizedTime
    pub(super) const GENERALIZED_TIME: u8 = 0x18;
    /// SEQUENCE (constructed)
    pub(super) const SEQUENCE: u8 = 0x30;
    /// `[0]` constructed, context-specific (the TBSCertificate version)
    pub(super) const CONTEXT_0: u8 = 0xa0;
}

/// The signature algorithms we accept on an RSA identity certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigAlg {
    /// sha256WithRSAEncryption (what C-tor produces).
    Sha256WithRsa,
    /// sha1WithRSAEncryption (older relays).
    Sha1WithRsa,
}

/// A parsed, not yet verified, RSA identity certificate.
pub(crate) struct RsaIdCert<'a> {
    /// The certified key (SubjectPublicKeyInfo).
    key: PublicKey,
    /// validity.notBefore
    not_before: SystemTime,
    /// validity.notAfter
    not_after: SystemTime,
    /// The signed bytes: the whole DER TBSCertificate.
    tbs: &'a [u8],
    /// The algorithm of the outer signature.
    sig_alg: SigAlg,
    /// The signature bits.
    signature: &'a [u8],
}

impl std::fmt::Debug for RsaIdCert<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaIdCert")
            .field("key_bits", &self.key.bits())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("sig_alg", &self.sig_alg)
            .finish_non_exhaustive()
    }
}

impl<'a> RsaIdCert<'a> {
    /// Parse a DER X.509 certificate holding an RSA key.
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self, String> {
        // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
        //                            signatureValue }   (RFC 5280 §4.1)
        let mut outer = Der::new(der);
        let cert = outer.expect(tag::SEQUENCE, "Certificate")?;
        outer.finish("Certificate")?;
        let mut cert = Der::new(cert);
        let (tbs_tag, tbs_body, tbs) = cert.read()?;
        if tbs_tag != tag::SEQUENCE {
            return Err("TBSCertificate is not a SEQUENCE".into());
        }
        let sig_alg_outer = read_sig_alg(&mut cert)?;
        let signature = read_bit_string(&mut cert, "signatureValue")?;
        cert.finish("Certificate")?;

        // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber,
        //   signature, issuer, validity, subject, subjectPublicKeyInfo, ... }
        let mut t = Der::new(tbs_body);
        if t.peek_tag() == Some(tag::CONTEXT_0) {
            t.expect(tag::CONTEXT_0, "version")?;
        }
        t.expect(tag::INTEGER, "serialNumber")?;
        let sig_alg_inner = read_sig_alg(&mut t)?;
        if sig_alg_inner != sig_alg_outer {
            // RFC 5280 §4.1.1.2: the two MUST be the same.
            return Err("signature algorithms of TBSCertificate and Certificate differ".into());
        }
        t.expect(tag::SEQUENCE, "issuer")?;
        let mut validity = Der::new(t.expect(tag::SEQUENCE, "validity")?);
        let not_before = read_time(&mut validity)?;
        let not_after = read_time(&mut validity)?;
        validity.finish("validity")?;
        t.expect(tag::SEQUENCE, "subject")?;
        // SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey }
        let mut spki = Der::new(t.expect(tag::SEQUENCE, "subjectPublicKeyInfo")?);
        let mut alg = Der::new(spki.expect(tag::SEQUENCE, "algorithm")?);
        if alg.expect(tag::OID, "algorithm")? != OID_RSA_ENCRYPTION {
            return Err("subject key is not an RSA key".into());
        }
        let key_der = read_bit_string(&mut spki, "subjectPublicKey")?;
        let key = PublicKey::from_der(key_der).ok_or("subject key is not a valid RSAPublicKey")?;
        // Whatever follows (issuerUniqueID, extensions) does not matter to Tor.

        Ok(RsaIdCert {
            key,
            not_before,
            not_after,
            tbs,
            sig_alg: sig_alg_outer,
            signature,
        })
    }

    /// The certified RSA key.
    pub(crate) fn key(&self) -> &PublicKey {
        &self.key
    }

    /// validity.notBefore
    pub(crate) fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// validity.notAfter
    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// True if the certificate is signed by its own key ("self-signed",
    /// tor-spec §4.2). PKCS#1 v1.5 with a DigestInfo, as X.509 wants.
    pub(crate) fn is_self_signed(&self) -> bool {
        let mut hashed = Vec::with_capacity(DIGEST_INFO_SHA256.len() + 32);
        match self.sig_alg {
            SigAlg::Sha256WithRsa => {
                hashed.extend_from_slice(DIGEST_INFO_SHA256);
                hashed.extend_from_slice(&Sha256::digest(self.tbs));
            }
            SigAlg::Sha1WithRsa => {
                hashed.extend_from_slice(DIGEST_INFO_SHA1);
                hashed.extend_from_slice(&Sha1::digest(self.tbs));
            }
        }
        self.key.verify(&hashed, self.signature).is_ok()
    }
}

/// Read an AlgorithmIdentifier and map it to a signature algorithm we accept.
fn read_sig_alg(d: &mut Der<'_>) -> Result<SigAlg, String> {
    let mut alg = Der::new(d.expect(tag::SEQUENCE, "AlgorithmIdentifier")?);
    let oid = alg.expect(tag::OID, "algorithm")?;
    let sig_alg = if oid == OID_SHA256_WITH_RSA {
        SigAlg::Sha256WithRsa
    } else if oid == OID_SHA1_WITH_RSA {
        SigAlg::Sha1WithRsa
    } else {
        return Err("unsupported signature algorithm".into());
    };
    // Parameters: NULL, or absent.
    if alg.peek_tag().is_some() {
        if !alg.expect(tag::NULL, "parameters")?.is_empty() {
            return Err("non-empty NULL".into());
        }
        alg.finish("AlgorithmIdentifier")?;
    }
    Ok(sig_alg)
}

/// Read a BIT STRING with no unused bits and return its bytes.
fn read_bit_string<'a>(d: &mut Der<'a>, what: &str) -> Result<&'a [u8], String> {
    match d.expect(tag::BIT_STRING, what)?.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err(format!("{what}: BIT STRING with unused bits or empty")),
    }
}

/// Read a UTCTime or GeneralizedTime in the DER form `...Z` (RFC 5280
/// §4.1.2.5).
fn read_time(d: &mut Der<'_>) -> Result<SystemTime, String> {
    let (t, body, _) = d.read()?;
    let text = std::str::from_utf8(body).map_err(|_| "time is not ASCII".to_string())?;
    let digits = text
        .strip_suffix('Z')
        .ok_or_else(|| "time does not end in Z".to_string())?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("time has non-digits".into());
    }
    let (year, rest) = match (t, digits.len()) {
        (tag::UTC_TIME, 12) => {
            let yy = num(digits, 0, 2)?;
            // RFC 5280 §4.1.2.5.1: YY >= 50 means 19YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (tag::GENERALIZED_TIME, 14) => (num(digits, 0, 4)?, 4),
        _ => return Err("time is neither UTCTime nor GeneralizedTime in DER form".into()),
    };
    let month = num(digits, rest, 2)?;
    let day = num(digits, rest + 2, 2)?;
    let hour = num(digits, rest + 4, 2)?;
    let minute = num(digits, rest + 6, 2)?;
    let second = num(digits, rest + 8, 2)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err("time field out of range".into());
    }
    let year = i32::try_from(year).map_err(|_| "time year out of range".to_string())?;
    let days = time::days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    }
    .ok_or_else(|| "time not representable".to_string())
}

/// The number in `s[at..at + len]` (all ASCII digits, checked by the caller).
fn num(s: &str, at: usize, len: usize) -> Result<u32, String> {
    s.get(at..at + len)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| "bad time digits".to_string())
}

/// A strict DER reader over a byte slice.
struct Der<'a> {
    /// What is left to read.
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    /// Read from `data`.
    fn new(data: &'a [u8]) -> Self {
        Der { rest: data }
    }

    /// The tag of the next element, if any.
    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Read one element: (tag, contents, whole encoding).
    fn read(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), String> {
        let start = self.rest;
        let (&t, after_tag) = start.split_first().ok_or("truncated DER (tag)")?;
        if t & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not used here".into());
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or("truncated DER (length)")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err("unsupported DER length form".into());
            }
            let (len_bytes, after) = after_len
                .split_at_checked(n)
                .ok_or("truncated DER (long length)")?;
            after_len = after;
            if len_bytes.first() == Some(&0) {
                return Err("non-minimal DER length".into());
            }
            let len = len_bytes
                .iter()
                .fold(0_usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err("non-minimal DER length".into());
            }
            len
        };
        let (contents, rest) = after_len
            .split_at_checked(len)
            .ok_or("truncated DER (contents)")?;
        let whole_len = start.len() - rest.len();
        let whole = start.get(..whole_len).ok_or("DER length overflow")?;
        self.rest = rest;
        Ok((t, contents, whole))
    }

    /// Read one element that must have tag `t`; return its contents.
    fn expect(&mut self, t: u8, what: &str) -> Result<&'a [u8], String> {
        let (got, contents, _) = self.read()?;
        if got != t {
            return Err(format!(
                "{what}: expected DER tag {t:#04x}, found {got:#04x}"
            ));
        }
        Ok(contents)
    }

    /// Fail if anything is left.
    fn finish(&self, what: &str) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!("trailing bytes after {what}"))
        }
    }
}

/// Test support: DER elements and self-signed X.509 certificates as C-tor
/// makes them for its RSA identity. Compiled for tests and with the
/// `test-support` feature (public as `braid_core::test_support::x509`, for
/// the fuzz targets).
#[cfg(any(test, feature = "test-support"))]
pub mod build {
    #![allow(clippy::unwrap_used, reason = "test support")]

    use super::*;
    use tor_llcrypto::pk::rsa::KeyPair;

    /// One DER element.
    pub fn tlv(t: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![t];
        let len = contents.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend_from_slice(&[0x81, len as u8]);
        } else {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(contents);
        out
    }

    /// A UTCTime for `t` (1950..2050).
    fn utc_time(t: SystemTime) -> Vec<u8> {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = time::civil_from_days(days);
        let s = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            y % 100,
            m,
            d,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        tlv(tag::UTC_TIME, s.as_bytes())
    }

    /// A self-signed X.509 certificate for `key`, as C-tor makes for its
    /// RSA identity (sha256WithRSAEncryption), valid from `not_before` to
    /// `not_after`. `signer` signs it (normally `key` itself).
    pub fn rsa_cert(
        key: &PublicKey,
        signer: &KeyPair,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Vec<u8> {
        let alg = tlv(
            tag::SEQUENCE,
            &[tlv(tag::OID, OID_SHA256_WITH_RSA), tlv(tag::NULL, &[])].concat(),
        );
        let name = tlv(
            tag::SEQUENCE,
            &tlv(
                0x31,
                &tlv(
                    tag::SEQUENCE,
                    &[
                        tlv(tag::OID, &[0x55, 0x04, 0x03]),
                        tlv(0x0c, b"www.braid.invalid"),
                    ]
                    .concat(),
                ),
            ),
        );
        let validity = tlv(
            tag::SEQUENCE,
            &[utc_time(not_before), utc_time(not_after)].concat(),
        );
        let mut key_bits = vec![0];
        key_bits.extend_from_slice(&key.to_der());
        let spki = tlv(
            tag::SEQUENCE,
            &[
                tlv(
                    tag::SEQUENCE,
                    &[tlv(tag::OID, OID_RSA_ENCRYPTION), tlv(tag::NULL, &[])].concat(),
                ),
                tlv(tag::BIT_STRING, &key_bits),
            ]
            .concat(),
        );
        let tbs = tlv(
            tag::SEQUENCE,
            &[
                tlv(tag::CONTEXT_0, &tlv(tag::INTEGER, &[2])),
                tlv(tag::INTEGER, &[0x11, 0x22, 0x33]),
                alg.clone(),
                name.clone(),
                validity,
                name,
                spki,
            ]
            .concat(),
        );
        let mut hashed = DIGEST_INFO_SHA256.to_vec();
        hashed.extend_from_slice(&Sha256::digest(&tbs));
        let mut sig_bits = vec![0];
        sig_bits.extend_from_slice(&signer.sign(&hashed).unwrap());
        tlv(
            tag::SEQUENCE,
            &[tbs, alg, tlv(tag::BIT_STRING, &sig_bits)].concat(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    /// A relay's RSA identity certificate from a chutney network, as recorded
    /// in arti's tor-proto handshake tests (valid 2020-08-10 to 2021-08-10).
    const CHUTNEY_T2: &str = "308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn real_ctor_cert() {
        let der = hex::decode(CHUTNEY_T2).unwrap();
        let c = RsaIdCert::parse(&der).unwrap();
        assert_eq!(c.key().bits(), 1024);
        assert!(c.key().exponent_is(65537));
        assert_eq!(c.not_before(), at(1_597_017_600)); // 2020-08-10T00:00:00Z
        assert_eq!(c.not_after(), at(1_628_553_600)); // 2021-08-10T00:00:00Z
        assert!(c.is_self_signed());
        assert_eq!(
            hex::encode(c.key().to_rsa_identity().as_bytes()),
            "2f1fb49bb332a9eec617e41e911c33fb3890aef3"
        );
        // Same key as tor-llcrypto's kludge finds.
        let k = tor_llcrypto::util::x509_extract_rsa_subject_kludge(&der).unwrap();
        assert_eq!(k.to_der(), c.key().to_der());

        // Any flipped byte in the signature breaks it.
        let mut bad = der.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert!(!RsaIdCert::parse(&bad).unwrap().is_self_signed());
        // A flipped byte in the signed part too (here: in the subject name).
        let mut bad = der;
        bad[100] ^= 1;
        assert!(!RsaIdCert::parse(&bad).unwrap().is_self_signed());
    }

    #[test]
    fn built_cert_round_trip() {
        let k = KeyPairs::get();
        let nb = at(1_700_000_000);
        let na = at(1_800_000_000);
        let der = build::rsa_cert(&k.0.to_public_key(), &k.0, nb, na);
        let c = RsaIdCert::parse(&der).unwrap();
        assert_eq!(c.not_before(), nb);
        assert_eq!(c.not_after(), na);
        assert!(c.is_self_signed());
        // Signed by another key: not self-signed.
        let der = build::rsa_cert(&k.0.to_public_key(), &k.1, nb, na);
        assert!(!RsaIdCert::parse(&der).unwrap().is_self_signed());
    }

    /// Two RSA keys, generated once.
    struct KeyPairs(
        tor_llcrypto::pk::rsa::KeyPair,
        tor_llcrypto::pk::rsa::KeyPair,
    );
    impl KeyPairs {
        fn get() -> &'static KeyPairs {
            static K: std::sync::OnceLock<KeyPairs> = std::sync::OnceLock::new();
            K.get_or_init(|| {
                let mut rng = rand::rng();
                KeyPairs(
                    tor_llcrypto::pk::rsa::KeyPair::generate(&mut rng).unwrap(),
                    tor_llcrypto::pk::rsa::KeyPair::generate(&mut rng).unwrap(),
                )
            })
        }
    }

    #[test]
    fn times() {
        let parse = |t: u8, s: &str| read_time(&mut Der::new(&build::tlv(t, s.as_bytes())));
        assert_eq!(
            parse(tag::UTC_TIME, "491231235959Z").unwrap(),
            at(2_524_607_999)
        );
        // 1950: before the Unix epoch, still fine.
        assert_eq!(
            parse(tag::UTC_TIME, "500101000000Z").unwrap(),
            SystemTime::UNIX_EPOCH - Duration::from_secs(631_152_000)
        );
        assert_eq!(
            parse(tag::GENERALIZED_TIME, "20200926180120Z").unwrap(),
            at(1_601_143_280)
        );
        assert!(parse(tag::UTC_TIME, "200926180120").is_err());
        assert!(parse(tag::UTC_TIME, "2009261801+0Z").is_err());
        assert!(parse(tag::UTC_TIME, "201326180120Z").is_err());
        assert!(parse(tag::GENERALIZED_TIME, "200926180120Z").is_err());
        assert!(parse(0x13, "200926180120Z").is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicking() {
        let der = hex::decode(CHUTNEY_T2).unwrap();
        for cut in 0..der.len() {
            assert!(RsaIdCert::parse(&der[..cut]).is_err());
        }
        let mut long = der.clone();
        long.push(0);
        assert!(RsaIdCert::parse(&long).is_err());
        assert!(RsaIdCert::parse(b"").is_err());
        assert!(RsaIdCert::parse(&[0x30, 0x80]).is_err());
        assert!(RsaIdCert::parse(&[0x30, 0x81, 0x05]).is_err());
        assert!(RsaIdCert::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = RsaIdCert::parse(&data);
        }
    }
}
