//! TLS termination: certificates from PEM, the SNI resolver, the rustls `ServerConfig`,
//! and handshake failure reasons.
//!
//! Crypto provider: aws-lc-rs, chosen explicitly. It builds here (no cmake needed) and
//! signs faster than ring for the handshakes that dominate an edge proxy: its P-256
//! and RSA code is BoringSSL's assembly (rustls' own benchmarks show aws-lc-rs ahead
//! for ECDSA and clearly ahead for RSA-2048 server handshakes).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::api::HandshakeFailure;
use crate::config::{self, ConfigIssue, KeyPath, TlsVersion};

/// The crypto provider every TLS object of the proxy uses: aws-lc-rs with the
/// server's cipher preference AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 (see
/// [`server_config`]: the server's order wins). AES-128-GCM's SHA-256 key schedule
/// and 10-round cipher cost less per handshake and per byte than AES-256-GCM with
/// SHA-384, at a security level no attack comes near.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let suites = [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    // TLS 1.3 suites with the key schedule's HMAC keys prepared once (tls_hkdf).
    provider.cipher_suites = suites.map(super::tls_hkdf::with_prepared_hkdf).to_vec();
    Arc::new(provider)
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path:?}: {source}; fix the path or the file's permissions")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path:?} holds no PEM certificate (expected \"-----BEGIN CERTIFICATE-----\")")]
    NoCertificate { path: PathBuf },
    #[error("{path:?}: invalid PEM: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error(
        "{path:?} holds no private key (expected \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")"
    )]
    NoKey { path: PathBuf },
    #[error("{path:?}: unsupported or invalid private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key {key:?} does not belong to the certificate {cert:?}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{path:?}: the certificate has no DNS names; list them in `names`")]
    NoNames { path: PathBuf },
}

/// Loads a certificate chain and its private key, and checks they belong together.
pub fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let cert_pem = std::fs::read(cert).map_err(|source| CertError::Read {
        path: cert.into(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| CertError::Read {
        path: key.into(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadPem {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: cert.into() });
    }
    let private_key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(CertError::NoKey { path: key.into() });
        }
        Err(e) => {
            return Err(CertError::BadPem {
                path: key.into(),
                reason: e.to_string(),
            });
        }
    };
    CertifiedKey::from_der(chain, private_key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::Mismatch {
            cert: cert.into(),
            key: key.into(),
        },
        other => CertError::BadKey {
            path: key.into(),
            reason: other.to_string(),
        },
    })
}

/// The DNS names (subject alternative names) of a chain's leaf certificate.
pub fn dns_names(key: &CertifiedKey) -> Vec<String> {
    let Some(leaf) = key.cert.first() else {
        return Vec::new();
    };
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(ee) => ee
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Picks a certificate by SNI: exact name, then `*.parent` wildcard, then the defaults
/// (clients without SNI or with an unknown name). Several certificates may share a
/// name (say ECDSA and RSA); the first one the client can use wins: its key signs with
/// a scheme the client offers, and, for a TLS 1.2-only client, a cipher suite the
/// client offers goes with the key's type. The defaults are the certificate marked
/// `default` and every other certificate for exactly the same names, so a client
/// without SNI gets the RSA twin of an ECDSA default when it only speaks RSA.
#[derive(Default)]
pub struct SniResolver {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// Keyed by the parent domain: `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SniResolver {
    pub fn add(&mut self, name: &str, key: Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()).or_default(),
            None => self.exact.entry(name).or_default(),
        }
        .push(key);
    }

    pub fn add_default(&mut self, key: Arc<CertifiedKey>) {
        self.default.push(key);
    }

    /// The candidates for a server name (before the signature scheme check).
    pub fn lookup(&self, server_name: Option<&str>) -> &[Arc<CertifiedKey>] {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(keys) = self.exact.get(&name) {
                return keys;
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(keys) = self.wildcard.get(parent)
            {
                return keys;
            }
        }
        &self.default
    }

    fn pick(
        &self,
        server_name: Option<&str>,
        schemes: &[SignatureScheme],
        suites: &[rustls::CipherSuite],
    ) -> Option<Arc<CertifiedKey>> {
        let keys = self.lookup(server_name);
        keys.iter()
            .find(|k| k.key.choose_scheme(schemes).is_some() && suites_fit(k, suites))
            .or_else(|| keys.first())
            .cloned()
    }
}

/// Can a client offering `suites` use this key? Any TLS 1.3 suite fits every key;
/// TLS 1.2 suites name the key type (ECDHE_ECDSA for ECDSA and Ed25519, ECDHE_RSA).
/// Only the suites of [`provider`] matter: others cannot be negotiated anyway.
fn suites_fit(key: &CertifiedKey, suites: &[rustls::CipherSuite]) -> bool {
    use rustls::CipherSuite as C;
    use rustls::SignatureAlgorithm as A;
    let rsa = match key.key.algorithm() {
        A::RSA => true,
        A::ECDSA | A::ED25519 => false,
        _ => return true,
    };
    suites.iter().any(|s| match s {
        C::TLS13_AES_128_GCM_SHA256
        | C::TLS13_AES_256_GCM_SHA384
        | C::TLS13_CHACHA20_POLY1305_SHA256 => true,
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        | C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => rsa,
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => !rsa,
        _ => false,
    })
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(
            hello.server_name(),
            hello.signature_schemes(),
            hello.cipher_suites(),
        )
    }
}

/// State that outlives one configuration, so reloads keep resumption working.
#[derive(Clone)]
pub struct SessionState {
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    cache: Option<(usize, Arc<ServerSessionMemoryCache>)>,
}

impl SessionState {
    pub fn new() -> SessionState {
        SessionState {
            ticketer: None,
            cache: None,
        }
    }
}

impl Default for SessionState {
    fn default() -> SessionState {
        SessionState::new()
    }
}

/// Builds a listener's `ServerConfig`: loads every certificate (errors point at the
/// config key) and reuses the session ticket key and cache from `sessions`.
///
/// A certificate's OCSP response is stapled if it checks out (see [`super::ocsp`]);
/// otherwise `ocsp_problem` hears about it and the certificate goes without a staple.
pub fn server_config(
    tls: &config::ListenerTls,
    at: &KeyPath,
    sessions: &mut SessionState,
    ocsp_problem: &mut dyn FnMut(&Path, super::ocsp::OcspProblem),
) -> Result<TlsConfigs, ConfigIssue> {
    let provider = provider();
    let mut resolver = SniResolver::default();
    let default_index = tls.certificates.iter().position(|c| c.default).unwrap_or(0);
    let mut loaded = Vec::new();
    // Client-auth policies: 0 is the listener's; each certificate with its own
    // `client_auth` adds one for the names it serves.
    let mut policies = vec![(tls.client_auth.as_ref(), at.key("client_auth"))];
    let mut policy_of_name = NameTable::default();
    let (mut served, mut checked) = (Vec::new(), Vec::new());
    for (i, entry) in tls.certificates.iter().enumerate() {
        let here = at.key("certificates").index(i);
        let mut key = load_certified_key(&entry.cert, &entry.key, &provider)
            .map_err(|e| ConfigIssue::new(here.clone(), e.to_string()))?;
        if let Some(path) = &entry.ocsp {
            let checked = std::fs::read(path)
                .map_err(|_| super::ocsp::OcspProblem::Unreadable)
                .and_then(|r| {
                    super::ocsp::check(&r, &key.cert, std::time::SystemTime::now()).map(|()| r)
                });
            match checked {
                Ok(response) => key.ocsp = Some(response),
                Err(problem) => ocsp_problem(path, problem),
            }
        }
        let key = Arc::new(key);
        let names = match entry.names.is_empty() {
            true => dns_names(&key),
            false => entry.names.clone(),
        };
        if names.is_empty() && i != default_index {
            let e = CertError::NoNames {
                path: entry.cert.clone(),
            };
            return Err(ConfigIssue::new(here.key("cert"), e.to_string()));
        }
        let policy = match &entry.client_auth {
            Some(auth) => {
                policies.push((Some(auth), here.key("client_auth")));
                policies.len() - 1
            }
            None => 0,
        };
        for name in &names {
            resolver.add(name, key.clone());
            policy_of_name.add(name, policy);
        }
        served.extend(names.iter().map(|n| n.to_ascii_lowercase()));
        if entry.client_auth.is_some() {
            checked.extend(names.iter().map(|n| n.to_ascii_lowercase()));
        }
        if i == default_index {
            policy_of_name.default = policy;
        }
        loaded.push((key, name_set(&names)));
    }
    // The default first, then its twins (same names, another key type), in file order.
    let default_names = loaded[default_index].1.clone();
    resolver.add_default(loaded[default_index].0.clone());
    for (i, (key, names)) in loaded.into_iter().enumerate() {
        if i != default_index && !names.is_empty() && names == default_names {
            resolver.add_default(key);
        }
    }
    let resolver = Arc::new(resolver);
    let mut configs = Vec::new();
    for (auth, auth_at) in policies {
        configs.push(build_config(
            tls,
            at,
            sessions,
            &provider,
            resolver.clone(),
            auth,
            &auth_at,
        )?);
    }
    let main = configs[0].clone();
    let by_name = (configs.len() > 1).then(|| ConfigsByName {
        configs,
        names: policy_of_name,
    });
    Ok(TlsConfigs {
        main,
        by_name,
        served,
        checked,
    })
}

/// A listener's TLS configurations: `main`, and, when some certificates have their own
/// `client_auth`, one per policy chosen by server name.
pub struct TlsConfigs {
    pub main: Arc<ServerConfig>,
    pub by_name: Option<ConfigsByName>,
    /// Every name the certificates serve (lower case; `*.` wildcards as written).
    pub served: Vec<String>,
    /// Of those, the names whose certificate has its own `client_auth`.
    pub checked: Vec<String>,
}

/// A certificate name (exact or `*.` wildcard) serves `pattern`: the same pattern,
/// or an exact name one label under the wildcard.
pub fn name_covers(name: &str, pattern: &str) -> bool {
    let (name, pattern) = (name.to_ascii_lowercase(), pattern.to_ascii_lowercase());
    if name == pattern {
        return true;
    }
    match (name.strip_prefix('*'), pattern.starts_with('*')) {
        (Some(suffix), false) => pattern
            .strip_suffix(suffix)
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        _ => false,
    }
}

/// Server configurations by the ClientHello's server name (exact, then wildcard,
/// then the default certificate's).
pub struct ConfigsByName {
    configs: Vec<Arc<ServerConfig>>,
    names: NameTable,
}

impl ConfigsByName {
    pub fn for_name(&self, server_name: Option<&str>) -> Arc<ServerConfig> {
        self.configs[self.names.lookup(server_name)].clone()
    }
}

/// Server name → client-auth policy (same matching as [`SniResolver`]; the first
/// certificate listing a name decides its policy).
#[derive(Default)]
struct NameTable {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    default: usize,
}

impl NameTable {
    fn add(&mut self, name: &str, policy: usize) {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()).or_insert(policy),
            None => self.exact.entry(name).or_insert(policy),
        };
    }

    fn lookup(&self, server_name: Option<&str>) -> usize {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(p) = self.exact.get(&name) {
                return *p;
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(p) = self.wildcard.get(parent)
            {
                return *p;
            }
        }
        self.default
    }
}

/// One `ServerConfig`: the shared certificates, versions, ALPN and session state, and
/// this policy's client verifier.
fn build_config(
    tls: &config::ListenerTls,
    at: &KeyPath,
    sessions: &mut SessionState,
    provider: &Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
    client_auth: Option<&config::ClientAuth>,
    auth_at: &KeyPath,
) -> Result<Arc<ServerConfig>, ConfigIssue> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ConfigIssue::new(at.key("min_version"), e.to_string()))?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let verifier = client_verifier(auth, auth_at, provider.clone())?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.ignore_client_order = true;
    config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    if tls.session_tickets {
        let ticketer = match &sessions.ticketer {
            Some(t) => t.clone(),
            None => rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| ConfigIssue::new(at.key("session_tickets"), e.to_string()))?,
        };
        sessions.ticketer = Some(ticketer.clone());
        config.ticketer = ticketer;
    } else {
        config.send_tls13_tickets = 0;
    }
    config.session_storage = match tls.session_cache {
        0 => Arc::new(NoServerSessionStorage {}),
        size => {
            let cache = match &sessions.cache {
                Some((s, cache)) if *s == size => cache.clone(),
                _ => ServerSessionMemoryCache::new(size),
            };
            sessions.cache = Some((size, cache.clone()));
            cache
        }
    };
    if tls.session_cache == 0 && !tls.session_tickets {
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// The WebPKI client verifier for `[listener.tls.client_auth]`: CA roots, CRLs, mode.
/// The CA certificates of a PEM file (at least one); errors point at `at`.
pub fn load_roots(path: &Path, at: &KeyPath) -> Result<rustls::RootCertStore, ConfigIssue> {
    let pem = std::fs::read(path).map_err(|e| {
        ConfigIssue::new(
            at.clone(),
            format!("cannot read {path:?}: {e}; fix the path or the file's permissions"),
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| ConfigIssue::new(at.clone(), format!("{path:?}: invalid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            ConfigIssue::new(
                at.clone(),
                format!("{path:?}: not a usable CA certificate: {e}"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(ConfigIssue::new(
            at.clone(),
            format!("{path:?} holds no PEM certificate (expected \"-----BEGIN CERTIFICATE-----\")"),
        ));
    }
    Ok(roots)
}

fn client_verifier(
    auth: &config::ClientAuth,
    at: &KeyPath,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigIssue> {
    let read = |path: &Path, key: KeyPath| {
        std::fs::read(path).map_err(|e| {
            ConfigIssue::new(
                key,
                format!("cannot read {path:?}: {e}; fix the path or the file's permissions"),
            )
        })
    };
    let roots = load_roots(&auth.ca, &at.key("ca"))?;
    let mut crls = Vec::new();
    for (i, path) in auth.crl.iter().enumerate() {
        let bytes = read(path, at.key("crl").index(i))?;
        let from_pem: Vec<_> =
            rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .unwrap_or_default();
        if from_pem.is_empty() {
            crls.push(rustls_pki_types::CertificateRevocationListDer::from(bytes));
        } else {
            crls.extend(from_pem);
        }
    }
    let mut builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls(crls);
    if auth.mode == config::ClientAuthMode::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map_err(|e| ConfigIssue::new(at.key("crl"), format!("cannot use the CA or CRLs: {e}")))
}

fn name_set(names: &[String]) -> std::collections::BTreeSet<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

/// Why a handshake failed (other than the timeout).
pub fn failure_reason(error: &io::Error) -> HandshakeFailure {
    use HandshakeFailure as F;
    if error.kind() == io::ErrorKind::UnexpectedEof {
        return F::ClientClosed;
    }
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => F::ClientClosed,
            _ => F::IoError,
        };
    };
    use rustls::CertificateError as CE;
    use rustls::Error as E;
    match tls {
        E::NoCertificatesPresented => F::ClientCertMissing,
        E::InvalidCertificate(CE::Expired | CE::ExpiredContext { .. }) => F::ClientCertExpired,
        E::InvalidCertificate(CE::UnknownIssuer) => F::ClientCertUnknownCa,
        E::InvalidCertificate(CE::Revoked) => F::ClientCertRevoked,
        E::InvalidCertificate(CE::BadSignature) => F::ClientCertBadSignature,
        E::InvalidCertificate(_) => F::ClientCertInvalid,
        E::InvalidMessage(rustls::InvalidMessage::MessageTooLarge)
        | E::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge) => F::TooLarge,
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => F::NotTls,
        E::PeerIncompatible(_) => F::Incompatible,
        E::NoApplicationProtocol => F::NoAlpn,
        E::AlertReceived(_) => F::AlertReceived,
        E::PeerMisbehaved(_) => F::Misbehaved,
        _ => F::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(names: &[&str]) -> Arc<CertifiedKey> {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let der = PrivateKeyDer::try_from(c.signing_key.serialize_der()).unwrap();
        Arc::new(CertifiedKey::from_der(vec![c.cert.der().clone()], der, &provider()).unwrap())
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (exact, wild, default) = (
            key_for(&["a.example.com"]),
            key_for(&["*.example.com"]),
            key_for(&["d"]),
        );
        let mut r = SniResolver::default();
        r.add("a.example.com", exact.clone());
        r.add("*.example.com", wild.clone());
        r.add_default(default.clone());
        let is =
            |name: Option<&str>, want: &Arc<CertifiedKey>| Arc::ptr_eq(&r.lookup(name)[0], want);
        assert!(is(Some("a.example.com"), &exact));
        assert!(is(Some("A.Example.COM."), &exact));
        assert!(is(Some("b.example.com"), &wild));
        // A wildcard covers exactly one label.
        assert!(is(Some("x.b.example.com"), &default));
        assert!(is(Some("example.com"), &default));
        assert!(is(None, &default));
    }

    fn rsa_key_for(names: &[&str]) -> Arc<CertifiedKey> {
        let pair =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&pair).unwrap();
        let der = PrivateKeyDer::try_from(pair.serialize_der()).unwrap();
        Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], der, &provider()).unwrap())
    }

    #[test]
    fn clients_without_sni_get_the_default_or_its_twin_they_can_use() {
        use rustls::CipherSuite as C;
        let (ecdsa, rsa) = (key_for(&["site.test"]), rsa_key_for(&["site.test"]));
        let mut r = SniResolver::default();
        for k in [&ecdsa, &rsa] {
            r.add("site.test", k.clone());
            r.add_default(k.clone());
        }
        let rsa_only = [
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA256,
        ];
        let all = [
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
        ];
        let tls13 = [C::TLS13_AES_128_GCM_SHA256];
        let rsa_suites = [C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
        let got = |name, schemes: &[SignatureScheme], suites: &[C]| {
            r.pick(name, schemes, suites).unwrap()
        };
        for name in [None, Some("unknown.test"), Some("site.test")] {
            assert!(
                Arc::ptr_eq(&got(name, &all, &tls13), &ecdsa),
                "{name:?}: the default first"
            );
            assert!(
                Arc::ptr_eq(&got(name, &rsa_only, &tls13), &rsa),
                "{name:?}: RSA-only schemes"
            );
            assert!(
                Arc::ptr_eq(&got(name, &all, &rsa_suites), &rsa),
                "{name:?}: ECDHE-RSA suites only"
            );
        }
    }

    #[test]
    fn names_come_from_the_certificate() {
        let k = key_for(&["Web.Example.com", "*.api.example.com"]);
        assert_eq!(dns_names(&k), vec!["web.example.com", "*.api.example.com"]);
    }

    #[test]
    fn unreadable_and_mismatched_files_are_named() {
        let dir = std::env::temp_dir().join(format!("proxy-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        std::fs::write(dir.join("a.pem"), a.cert.pem()).unwrap();
        std::fs::write(dir.join("b.key"), b.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("garbage.pem"), "hello").unwrap();
        let p = provider();
        let e = load_certified_key(&dir.join("missing.pem"), &dir.join("b.key"), &p).unwrap_err();
        assert!(
            e.to_string().contains("missing.pem") && e.to_string().contains("fix the path"),
            "{e}"
        );
        let e = load_certified_key(&dir.join("garbage.pem"), &dir.join("b.key"), &p).unwrap_err();
        assert!(matches!(e, CertError::NoCertificate { .. }), "{e}");
        let e = load_certified_key(&dir.join("a.pem"), &dir.join("a.pem"), &p).unwrap_err();
        assert!(matches!(e, CertError::NoKey { .. }), "{e}");
        let e = load_certified_key(&dir.join("a.pem"), &dir.join("b.key"), &p).unwrap_err();
        assert!(matches!(e, CertError::Mismatch { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
