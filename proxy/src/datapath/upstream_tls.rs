//! TLS from the proxy to a pool's backends (`[pool.tls]`): the rustls client
//! configuration (trust anchors, client certificate, ALPN, versions), one session
//! cache per backend (so a ticket is only ever offered to the backend that issued
//! it), the handshake, and why one failed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::tls::{self, provider};
use crate::config::backend_tls::{BackendTls, TrustAnchors};
use crate::config::{ConfigIssue, KeyPath, TlsVersion};

/// Sessions kept per backend: enough for the connections that start at once.
const SESSIONS_PER_BACKEND: usize = 64;

/// A pool's TLS to its backends.
pub struct UpstreamTls {
    /// The pool's settings; each backend's connector adds its own session cache.
    base: Arc<ClientConfig>,
    resumption: bool,
    server_name: Option<ServerName<'static>>,
    /// Per backend address, made on first use and kept across reloads.
    connectors: Mutex<HashMap<SocketAddr, TlsConnector>>,
    stores: Arc<Mutex<HashMap<SocketAddr, Arc<dyn ClientSessionStore>>>>,
}

impl UpstreamTls {
    /// Reads `[pool.tls]`'s files (errors point at their keys) and builds the client
    /// configuration. `previous`: the same pool's before a reload, whose session
    /// caches carry over.
    pub fn build(
        settings: &BackendTls,
        at: &KeyPath,
        previous: Option<&UpstreamTls>,
    ) -> Result<UpstreamTls, ConfigIssue> {
        let provider = provider();
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| ConfigIssue::new(at.key("min_version"), e.to_string()))?;
        let builder = match &settings.ca {
            Some(TrustAnchors::File(path)) => {
                builder.with_root_certificates(tls::load_roots(path, &at.key("ca"))?)
            }
            Some(TrustAnchors::System) => builder.with_root_certificates(system_roots(at)?),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider.clone()))),
        };
        let mut config = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let key = tls::load_certified_key(cert, key, &provider)
                    .map_err(|e| ConfigIssue::new(at.key("cert"), e.to_string()))?;
                builder.with_client_cert_resolver(Arc::new(OneClientCert(Arc::new(key))))
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = settings
            .alpn
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        if !settings.resumption {
            config.resumption = Resumption::disabled();
        }
        let server_name = match &settings.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| ConfigIssue::new(at.key("server_name"), e.to_string()))?,
            ),
            None => None,
        };
        let stores = previous.map_or_else(Default::default, |p| p.stores.clone());
        Ok(UpstreamTls {
            base: Arc::new(config),
            resumption: settings.resumption,
            server_name,
            connectors: Mutex::new(HashMap::new()),
            stores,
        })
    }

    /// The handshake with the backend at `addr` over `stream` (whose PROXY header,
    /// if any, is sent already). The name sent and verified: `server_name` if set,
    /// else the DNS name the backend was found under (`host`), else its address.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        host: Option<&str>,
        stream: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => host
                .and_then(|h| ServerName::try_from(h.to_owned()).ok())
                .unwrap_or(ServerName::IpAddress(addr.ip().into())),
        };
        self.connector(addr).connect(name, stream).await
    }

    /// The name sent and verified, as configured (`None`: each backend's address).
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    fn connector(&self, addr: SocketAddr) -> TlsConnector {
        let mut connectors = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = connectors.get(&addr) {
            return c.clone();
        }
        let mut config = (*self.base).clone();
        if self.resumption {
            let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
            let store = stores
                .entry(addr)
                .or_insert_with(|| Arc::new(ClientSessionMemoryCache::new(SESSIONS_PER_BACKEND)));
            config.resumption = Resumption::store(store.clone());
        }
        let connector = TlsConnector::from(Arc::new(config));
        connectors.insert(addr, connector.clone());
        connector
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("resumption", &self.resumption)
            .finish_non_exhaustive()
    }
}

/// The pool's one client certificate, whatever the backend asks for.
#[derive(Debug)]
struct OneClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The host's trust store (`ca = "system"`).
fn system_roots(at: &KeyPath) -> Result<rustls::RootCertStore, ConfigIssue> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no certificates found".into());
        return Err(ConfigIssue::new(
            at.key("ca"),
            format!(
                "the system trust store is empty or unreadable ({why}): install ca-certificates, \
                 or name a CA file"
            ),
        ));
    }
    Ok(roots)
}

/// Why a handshake with a backend failed: one of [`BACKEND_TLS_FAILURES`] (the
/// `reason` label of `proxy_backend_tls_failures_total`).
///
/// [`BACKEND_TLS_FAILURES`]: crate::api::BACKEND_TLS_FAILURES
pub fn failure_reason(error: &std::io::Error) -> &'static str {
    use rustls::AlertDescription as A;
    use rustls::CertificateError as CE;
    use rustls::Error as E;
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "closed",
            _ => "io",
        };
    };
    match tls {
        E::InvalidCertificate(CE::Expired | CE::ExpiredContext { .. })
        | E::InvalidCertificate(CE::NotValidYet | CE::NotValidYetContext { .. }) => "expired",
        E::InvalidCertificate(CE::UnknownIssuer) => "unknown_ca",
        E::InvalidCertificate(CE::NotValidForName | CE::NotValidForNameContext { .. }) => {
            "name_mismatch"
        }
        E::InvalidCertificate(CE::Revoked) => "revoked",
        E::InvalidCertificate(_) => "bad_certificate",
        E::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::AccessDenied
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked,
        ) => "client_cert_refused",
        E::AlertReceived(_) => "alert",
        E::PeerIncompatible(_) | E::NoApplicationProtocol => "incompatible",
        _ => "protocol",
    }
}

/// `insecure_skip_verify = true`: any certificate is accepted, but the handshake
/// signatures are still checked (the peer holds the key of what it sent).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_a_known_label() {
        use rustls::CertificateError as CE;
        use std::io::{Error, ErrorKind};
        let tls = |e: rustls::Error| Error::new(ErrorKind::InvalidData, e);
        let cases = [
            (
                tls(rustls::Error::InvalidCertificate(CE::Expired)),
                "expired",
            ),
            (
                tls(rustls::Error::InvalidCertificate(CE::UnknownIssuer)),
                "unknown_ca",
            ),
            (
                tls(rustls::Error::InvalidCertificate(CE::NotValidForName)),
                "name_mismatch",
            ),
            (
                tls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::CertificateRequired,
                )),
                "client_cert_refused",
            ),
            (Error::from(ErrorKind::TimedOut), "timeout"),
            (Error::from(ErrorKind::UnexpectedEof), "closed"),
        ];
        for (error, want) in cases {
            let got = failure_reason(&error);
            assert_eq!(got, want, "{error}");
            assert!(crate::api::BACKEND_TLS_FAILURES.contains(&got));
        }
    }
}
