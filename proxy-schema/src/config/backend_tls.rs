//! `[pool.tls]`: TLS from the proxy to a pool's backends (re-encryption behind a
//! terminating listener, TLS origination behind a plain one), with the backends'
//! certificates verified and, optionally, a client certificate.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{ConfigIssue, KeyPath};
use super::tls_version::TlsVersion;

/// `[pool.tls]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    /// What the backends' certificates must chain to: a PEM file of CA certificates,
    /// or `"system"` for the host's trust store (/etc/ssl/certs). Required unless
    /// `insecure_skip_verify = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<TrustAnchors>,
    /// The name sent as SNI and verified in the backend's certificate. Default: for a
    /// backend found in DNS the name it was found under (the `name` entry's host or the
    /// SRV target); otherwise its IP address, verified against the certificate's IP
    /// addresses, no SNI sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM client certificate chain presented to the backends (with `key`): mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// ALPN protocols offered to the backends, in preference order. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// Lowest TLS version: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Resume TLS sessions with each backend (tickets, or TLS 1.2 session IDs), so
    /// most connections skip the full handshake. Default true.
    #[serde(default = "yes")]
    pub resumption: bool,
    /// Accept any certificate from the backends (no verification: anyone on the path
    /// can read and change the traffic). Only for tests; warned about at every load.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Where the backends' certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAnchors {
    /// The host's trust store.
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

impl Serialize for TrustAnchors {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TrustAnchors::System => s.serialize_str("system"),
            TrustAnchors::File(path) => path.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TrustAnchors {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "system" => TrustAnchors::System,
            _ => TrustAnchors::File(PathBuf::from(text)),
        })
    }
}

impl BackendTls {
    /// Verified against the CA file `ca`, everything else at its default.
    pub fn new(ca: impl Into<PathBuf>) -> BackendTls {
        BackendTls {
            ca: Some(TrustAnchors::File(ca.into())),
            server_name: None,
            cert: None,
            key: None,
            alpn: Vec::new(),
            min_version: TlsVersion::default(),
            resumption: true,
            insecure_skip_verify: false,
        }
    }

    /// Checks what serde cannot; `at` is the section's key (`pool[i].tls`).
    pub fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        match (&self.ca, self.insecure_skip_verify) {
            (None, false) => {
                return Err(ConfigIssue::new(
                    at.key("ca"),
                    "say what the backends' certificates chain to: ca = \"/path/ca.pem\", or \
                     ca = \"system\" for the host's trust store (insecure_skip_verify = true \
                     turns verification off, for tests only)",
                ));
            }
            (Some(_), true) => {
                return Err(ConfigIssue::new(
                    at.key("insecure_skip_verify"),
                    "ca and insecure_skip_verify = true contradict each other: remove one",
                ));
            }
            _ => {}
        }
        if self.cert.is_some() != self.key.is_some() {
            let missing = if self.cert.is_some() { "key" } else { "cert" };
            return Err(ConfigIssue::new(
                at.key(missing),
                "a client certificate needs both cert and key",
            ));
        }
        if let Some(name) = &self.server_name
            && rustls_pki_name(name).is_err()
        {
            return Err(ConfigIssue::new(
                at.key("server_name"),
                format!("{name:?} is not a DNS name or an IP address"),
            ));
        }
        for (i, p) in self.alpn.iter().enumerate() {
            if p.is_empty() || p.len() > 255 {
                return Err(ConfigIssue::new(
                    at.key("alpn").index(i),
                    "an ALPN protocol name has 1 to 255 bytes",
                ));
            }
        }
        Ok(())
    }
}

/// A DNS name (letters, digits, `-`, `.`; no wildcard) or an IP address.
fn rustls_pki_name(name: &str) -> Result<(), ()> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let host = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    match !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
        true => Ok(()),
        false => Err(()),
    }
}

fn yes() -> bool {
    true
}
