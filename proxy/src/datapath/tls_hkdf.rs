//! HKDF for the TLS 1.3 key schedule with each HMAC key prepared once.
//!
//! rustls' aws-lc-rs suites use `aws_lc_rs::hkdf`, whose PRK from an extract keeps
//! the secret and salt and runs the whole extract again on every expand, and whose
//! expand sets up the HMAC key (its two padded key blocks) on every call. A TLS 1.3
//! handshake expands about twenty times (traffic secrets, keys, IVs, finished keys,
//! tickets), so this was 7.6 % of the worker's CPU in full ECDSA handshakes (perf);
//! with prepared keys it is 4.8 %, about 5 µs less per handshake.
//!
//! Here the key schedule goes through rustls' own RFC 5869 construction
//! ([`HkdfUsingHmac`]) on aws-lc-rs HMAC keys: an extract is one HMAC, and each
//! expand copies the prepared key state and hashes only the label. Same primitives,
//! same outputs (checked against RFC 5869's test vectors below). Secrets stay in
//! types that zero them when dropped: rustls' `Tag`/`OkmBlock`, and aws-lc's HMAC
//! context, which `HMAC_CTX_cleanup` clears.

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use rustls::SupportedCipherSuite;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::{Hkdf, HkdfExpander, HkdfUsingHmac, OkmBlock};
use rustls::{CipherSuiteCommon, Tls13CipherSuite};

/// An HMAC algorithm whose keys are prepared once (`aws_lc_rs::hmac::Key`).
struct PreparedHmac(hmac::Algorithm);

struct PreparedKey(hmac::Key);

impl Hmac for PreparedHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(PreparedKey(hmac::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

impl Key for PreparedKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        // Starts from a copy of the prepared key state.
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(first);
        for part in middle {
            ctx.update(part);
        }
        ctx.update(last);
        Tag::new(ctx.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: PreparedHmac = PreparedHmac(hmac::HMAC_SHA256);
static HMAC_SHA384: PreparedHmac = PreparedHmac(hmac::HMAC_SHA384);
static HKDF_SHA256: PreparedHkdf = PreparedHkdf(&HMAC_SHA256);
static HKDF_SHA384: PreparedHkdf = PreparedHkdf(&HMAC_SHA384);

/// rustls' HKDF construction on [`PreparedHmac`], except that an extract's PRK is
/// held only in rustls' `Tag` and `OkmBlock`, which are zeroed when dropped
/// (`HkdfUsingHmac::extract_from_secret` copies it into a plain `Vec`).
struct PreparedHkdf(&'static PreparedHmac);

impl Hkdf for PreparedHkdf {
    fn extract_from_zero_ikm(&self, salt: Option<&[u8]>) -> Box<dyn HkdfExpander> {
        let zeroes = [0u8; Tag::MAX_LEN];
        self.extract_from_secret(salt, &zeroes[..self.0.hash_output_len()])
    }

    fn extract_from_secret(&self, salt: Option<&[u8]>, secret: &[u8]) -> Box<dyn HkdfExpander> {
        let zeroes = [0u8; Tag::MAX_LEN];
        let salt = salt.unwrap_or(&zeroes[..self.0.hash_output_len()]);
        let prk = self.0.with_key(salt).sign(&[secret]);
        self.expander_for_okm(&OkmBlock::new(prk.as_ref()))
    }

    fn expander_for_okm(&self, okm: &OkmBlock) -> Box<dyn HkdfExpander> {
        HkdfUsingHmac(self.0).expander_for_okm(okm)
    }

    fn hmac_sign(&self, key: &OkmBlock, message: &[u8]) -> Tag {
        HkdfUsingHmac(self.0).hmac_sign(key, message)
    }
}

/// rustls' aws-lc-rs TLS 1.3 suites, each with the prepared-key HKDF of its hash.
static SUITES: LazyLock<[Tls13CipherSuite; 3]> = LazyLock::new(|| {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    [
        prepared(cs::TLS13_AES_128_GCM_SHA256, &HKDF_SHA256),
        prepared(cs::TLS13_AES_256_GCM_SHA384, &HKDF_SHA384),
        prepared(cs::TLS13_CHACHA20_POLY1305_SHA256, &HKDF_SHA256),
    ]
});

fn prepared(suite: SupportedCipherSuite, hkdf: &'static PreparedHkdf) -> Tls13CipherSuite {
    let SupportedCipherSuite::Tls13(original) = suite else {
        unreachable!("{:?} is a TLS 1.3 suite", suite.suite());
    };
    Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: original.common.suite,
            hash_provider: original.common.hash_provider,
            confidentiality_limit: original.common.confidentiality_limit,
        },
        hkdf_provider: hkdf,
        aead_alg: original.aead_alg,
        quic: original.quic,
    }
}

/// `suite` with the prepared-key HKDF when it is one of rustls' aws-lc-rs TLS 1.3
/// suites; any other suite as it is.
pub fn with_prepared_hkdf(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    match SUITES.iter().find(|s| s.common.suite == suite.suite()) {
        Some(ours) if matches!(suite, SupportedCipherSuite::Tls13(_)) => {
            SupportedCipherSuite::Tls13(ours)
        }
        _ => suite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5869, test case 1 (SHA-256): extract, then a 42-byte expand.
    #[test]
    fn rfc5869_test_case_1() {
        let ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let expander = HKDF_SHA256.extract_from_secret(Some(&salt), &ikm);
        let mut okm = [0u8; 42];
        expander.expand_slice(&[&info], &mut okm).unwrap();
        assert_eq!(
            okm.to_vec(),
            hex(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
            )
        );
    }

    /// RFC 5869, test case 3 (SHA-256, no salt, no info).
    #[test]
    fn rfc5869_test_case_3() {
        let ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let expander = HKDF_SHA256.extract_from_secret(None, &ikm);
        let mut okm = [0u8; 42];
        expander.expand_slice(&[], &mut okm).unwrap();
        assert_eq!(
            okm.to_vec(),
            hex(
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
            )
        );
    }

    /// Same output as the aws-lc-rs suites' own HKDF, for both hashes and every
    /// entry point the key schedule uses.
    #[test]
    fn matches_the_providers_hkdf() {
        use rustls::crypto::aws_lc_rs::cipher_suite as cs;
        for original in [cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384] {
            let (SupportedCipherSuite::Tls13(theirs), SupportedCipherSuite::Tls13(ours)) =
                (original, with_prepared_hkdf(original))
            else {
                panic!("not TLS 1.3");
            };
            let (theirs, ours) = (theirs.hkdf_provider, ours.hkdf_provider);
            let salt = [7u8; 48];
            let secret = [9u8; 48];
            let info: [&[u8]; 2] = [b"tls13 ", b"c hs traffic"];
            let block = |e: Box<dyn rustls::crypto::tls13::HkdfExpander>| e.expand_block(&info);
            let a = block(theirs.extract_from_secret(Some(&salt[..32]), &secret));
            let b = block(ours.extract_from_secret(Some(&salt[..32]), &secret));
            assert_eq!(a.as_ref(), b.as_ref());
            let a = block(theirs.extract_from_zero_ikm(None));
            let b = block(ours.extract_from_zero_ikm(None));
            assert_eq!(a.as_ref(), b.as_ref());
            let okm = OkmBlock::new(&secret[..theirs.extract_from_zero_ikm(None).hash_len()]);
            let a = block(theirs.expander_for_okm(&okm));
            let b = block(ours.expander_for_okm(&okm));
            assert_eq!(a.as_ref(), b.as_ref());
            let (a, b) = (theirs.hmac_sign(&okm, b"m"), ours.hmac_sign(&okm, b"m"));
            assert_eq!(a.as_ref(), b.as_ref());
        }
    }

    #[test]
    fn tls12_suites_are_unchanged() {
        use rustls::crypto::aws_lc_rs::cipher_suite as cs;
        let suite = cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        assert_eq!(with_prepared_hkdf(suite), suite);
    }
}
