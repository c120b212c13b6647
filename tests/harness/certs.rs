//! Test certificates (rcgen): self-signed, one per key type, with a chosen subject.

use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug)]
pub enum KeyType {
    EcdsaP256,
    Rsa2048,
    Ed25519,
}

/// A certificate and key written as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub common_name: String,
}

/// Writes `<stem>.pem` and `<stem>.key` into `dir`: subject CN = `common_name`,
/// subject alternative names = `names`.
pub fn write(
    dir: &Path,
    stem: &str,
    key_type: KeyType,
    common_name: &str,
    names: &[&str],
) -> CertFiles {
    let key = match key_type {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
    }
    .expect("generate key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("certificate params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&key).expect("self-sign");
    let files = CertFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
        common_name: common_name.to_string(),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write cert");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    files
}
