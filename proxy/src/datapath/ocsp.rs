//! OCSP responses stapled to certificates (`ocsp = "file"` on a certificate): the
//! DER response is read at load and on reload, and stapled only if it is a successful
//! response about this certificate (serial number, and the issuer's key when the chain
//! has the issuer), says "good", and is current. Otherwise the certificate is served
//! without a staple: a problem with the response never breaks a handshake.

use std::time::SystemTime;

use der::Decode;
use rustls_pki_types::CertificateDer;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a response is not stapled (the `reason` label of
/// `proxy_tls_ocsp_not_stapled_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OcspProblem {
    #[error("the file cannot be read")]
    Unreadable,
    #[error("not a DER-encoded OCSP response")]
    Malformed,
    #[error("the responder did not answer successfully")]
    Unsuccessful,
    #[error("it is about another certificate")]
    WrongCertificate,
    #[error("it says the certificate is revoked")]
    Revoked,
    #[error("it does not say the certificate is good")]
    NotGood,
    #[error("it has expired (nextUpdate has passed)")]
    Expired,
    #[error("it is not valid yet (thisUpdate is in the future)")]
    NotYetValid,
}

impl OcspProblem {
    pub fn label(self) -> &'static str {
        match self {
            OcspProblem::Unreadable => "unreadable",
            OcspProblem::Malformed => "malformed",
            OcspProblem::Unsuccessful => "unsuccessful",
            OcspProblem::WrongCertificate => "wrong_certificate",
            OcspProblem::Revoked => "revoked",
            OcspProblem::NotGood => "not_good",
            OcspProblem::Expired => "expired",
            OcspProblem::NotYetValid => "not_yet_valid",
        }
    }
}

/// Checks `response` against the chain (leaf first) at `now`.
pub fn check(
    response: &[u8],
    chain: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<(), OcspProblem> {
    let outer = OcspResponse::from_der(response).map_err(|_| OcspProblem::Malformed)?;
    if outer.response_status != OcspResponseStatus::Successful {
        return Err(OcspProblem::Unsuccessful);
    }
    let bytes = outer.response_bytes.ok_or(OcspProblem::Malformed)?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|_| OcspProblem::Malformed)?;
    let leaf = chain.first().ok_or(OcspProblem::WrongCertificate)?;
    let (_, leaf) =
        X509Certificate::from_der(leaf.as_ref()).map_err(|_| OcspProblem::WrongCertificate)?;
    let issuer_key = chain
        .get(1)
        .and_then(|c| X509Certificate::from_der(c.as_ref()).ok())
        .map(|(_, c)| c.public_key().subject_public_key.data.to_vec());
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| {
            r.cert_id.serial_number.as_bytes() == leaf.raw_serial()
                && issuer_key
                    .as_deref()
                    .is_none_or(|key| key_hash_matches(&r.cert_id, key))
        })
        .ok_or(OcspProblem::WrongCertificate)?;
    match single.cert_status {
        CertStatus::Good(_) => {}
        CertStatus::Revoked(_) => return Err(OcspProblem::Revoked),
        CertStatus::Unknown(_) => return Err(OcspProblem::NotGood),
    }
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    if single.this_update.0.to_unix_duration() > now {
        return Err(OcspProblem::NotYetValid);
    }
    if single
        .next_update
        .is_some_and(|next| next.0.to_unix_duration() <= now)
    {
        return Err(OcspProblem::Expired);
    }
    Ok(())
}

/// Does the response's issuerKeyHash hash the issuer's public key (SHA-1 or SHA-256)?
fn key_hash_matches(id: &x509_ocsp::CertId, issuer_key: &[u8]) -> bool {
    use aws_lc_rs::digest;
    let algorithm = match id.hash_algorithm.oid.to_string().as_str() {
        "1.3.14.3.2.26" => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        "2.16.840.1.101.3.4.2.1" => &digest::SHA256,
        _ => return false,
    };
    digest::digest(algorithm, issuer_key).as_ref() == id.issuer_key_hash.as_bytes()
}
