//! What a backend learns about a TLS connection (PROXY v2 PP2_TYPE_SSL): version,
//! cipher and the verified client certificate's subject CN and algorithms, read with
//! x509-parser.

use rustls::server::ServerConnection;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::proxy_protocol::{ClientCert, Ssl};

/// The TLS facts of a finished handshake.
pub fn ssl_info(conn: &ServerConnection) -> Ssl {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1))
        .unwrap_or_default();
    let client_cert = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(describe);
    Ssl {
        version: version.to_string(),
        cipher,
        client_cert,
        cert_in_connection: conn.handshake_kind() == Some(rustls::HandshakeKind::Full),
    }
}

/// Subject CN and algorithm names of a (verified) certificate.
pub fn describe(der: &CertificateDer<'_>) -> ClientCert {
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return ClientCert::default();
    };
    let registry = x509_parser::objects::oid_registry();
    let name = |oid| {
        x509_parser::objects::oid2sn(oid, registry)
            .map(str::to_string)
            .unwrap_or_else(|_| oid.to_id_string())
    };
    ClientCert {
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        sig_alg: Some(name(&cert.signature_algorithm.algorithm)),
        key_alg: Some(name(&cert.public_key().algorithm.algorithm)),
    }
}
