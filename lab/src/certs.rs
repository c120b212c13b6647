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

/// A test certificate authority: issues client certificates (good, expired) and a
/// CRL revoking some of them. Written as PEM files under one directory.
pub struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    dir: PathBuf,
    /// `<stem>.pem` of the CA certificate (what `client_auth.ca` points at).
    pub cert: PathBuf,
    next_serial: u64,
}

impl Ca {
    /// A self-signed ECDSA CA named `common_name`, written as `<stem>.pem`.
    pub fn new(dir: &Path, stem: &str, common_name: &str) -> anyhow::Result<Ca> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, cert.pem()).with_context(|| format!("writing {}", path.display()))?;
        Ok(Ca {
            params,
            key,
            dir: dir.to_path_buf(),
            cert: path,
            next_serial: 1000,
        })
    }

    /// A client certificate (CN = `common_name`, clientAuth) valid from `not_before` to
    /// `not_after` (years), written as `<stem>.pem`/`<stem>.key`; its serial number.
    pub fn client(
        &mut self,
        stem: &str,
        common_name: &str,
        key_type: KeyType,
        valid_years: (i32, i32),
    ) -> anyhow::Result<(CertFiles, u64)> {
        let key = match key_type {
            KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::Rsa2048 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyType::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
        }?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(valid_years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(valid_years.1, 1, 1);
        let serial = self.next_serial;
        self.next_serial += 1;
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        Ok((self.sign(stem, common_name, &params, &key)?, serial))
    }

    /// A server certificate for the IP address `ip` (also its CN), serverAuth, valid
    /// 2020-2100, written as `<stem>.pem`/`<stem>.key`.
    pub fn server(&mut self, stem: &str, ip: std::net::IpAddr) -> anyhow::Result<CertFiles> {
        self.server_for(stem, &[], &[ip], (2020, 2100))
    }

    /// A server certificate for DNS `names` and IP addresses `ips` (the first of
    /// them its CN), serverAuth, valid from `not_before` to `not_after` (years).
    pub fn server_for(
        &mut self,
        stem: &str,
        names: &[&str],
        ips: &[std::net::IpAddr],
        (not_before, not_after): (i32, i32),
    ) -> anyhow::Result<CertFiles> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        let common_name = names
            .first()
            .map(|n| n.to_string())
            .or(ips.first().map(|ip| ip.to_string()))
            .unwrap_or_default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name.as_str());
        for name in names {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName((*name).try_into()?));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = rcgen::date_time_ymd(not_before, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
        params.serial_number = Some(rcgen::SerialNumber::from(self.next_serial));
        self.next_serial += 1;
        self.sign(stem, &common_name, &params, &key)
    }

    /// Signs `params` for `key` and writes `<stem>.pem`/`<stem>.key`.
    fn sign(
        &self,
        stem: &str,
        common_name: &str,
        params: &rcgen::CertificateParams,
        key: &rcgen::KeyPair,
    ) -> anyhow::Result<CertFiles> {
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(key, &issuer)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
            common_name: common_name.to_string(),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }

    /// A CRL revoking `serials`, written as `<stem>.pem`.
    pub fn crl(&self, stem: &str, serials: &[u64]) -> anyhow::Result<PathBuf> {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let crl = params.signed_by(&issuer)?;
        let path = self.dir.join(format!("{stem}.pem"));
        std::fs::write(&path, crl.pem()?)?;
        Ok(path)
    }
}
