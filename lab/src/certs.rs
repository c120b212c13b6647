//! Test certificates (rcgen): self-signed, one per key type, with a chosen subject.

use std::path::{Path, PathBuf};

use anyhow::Context;

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

/// Like [`try_write`]; panics on failure.
pub fn write(
    dir: &Path,
    stem: &str,
    key_type: KeyType,
    common_name: &str,
    names: &[&str],
) -> CertFiles {
    try_write(dir, stem, key_type, common_name, names).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Writes `<stem>.pem` and `<stem>.key` into `dir`: a self-signed certificate with
/// subject CN = `common_name` and subject alternative names = `names`.
pub fn try_write(
    dir: &Path,
    stem: &str,
    key_type: KeyType,
    common_name: &str,
    names: &[&str],
) -> anyhow::Result<CertFiles> {
    let key = match key_type {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
    }
    .context("generating a key")?;
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .context("certificate names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&key).context("self-signing")?;
    let files = CertFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
        common_name: common_name.to_string(),
    };
    std::fs::write(&files.cert, cert.pem())
        .with_context(|| format!("writing {}", files.cert.display()))?;
    std::fs::write(&files.key, key.serialize_pem())
        .with_context(|| format!("writing {}", files.key.display()))?;
    Ok(files)
}
