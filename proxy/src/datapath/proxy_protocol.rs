//! PROXY protocol headers (v1 text, v2 binary) sent to backends ahead of the client's
//! bytes, so they see the real client address. Spec:
//! <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>

use std::net::{IpAddr, SocketAddr};

use crate::config::ProxyProtocol;

/// v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// PP2_TYPE_ALPN and PP2_TYPE_AUTHORITY (the SNI name).
const PP2_TYPE_ALPN: u8 = 0x01;
const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// PP2_TYPE_SSL and its sub-types (spec section 2.2.5).
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
/// `client` bits of PP2_TYPE_SSL.
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// The TLS facts of a terminated connection, for PP2_TYPE_SSL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ssl {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The cipher suite's IANA name.
    pub cipher: String,
    /// The client's verified certificate, if it presented one.
    pub client_cert: Option<ClientCert>,
    /// The certificate was presented in this connection's handshake (not only in the
    /// session it resumed).
    pub cert_in_connection: bool,
}

/// What the backend learns about a verified client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// Subject common name.
    pub common_name: Option<String>,
    /// The certificate's signature algorithm (`ecdsa-with-SHA256`, `sha256WithRSAEncryption`).
    pub sig_alg: Option<String>,
    /// Its public key algorithm (`id-ecPublicKey`, `rsaEncryption`, `ED25519`).
    pub key_alg: Option<String>,
}

impl Ssl {
    /// The PP2_TYPE_SSL value: client bits, verify (0: a certificate was presented
    /// and verified), then the sub-TLVs.
    fn encode(&self) -> Vec<u8> {
        let mut client = PP2_CLIENT_SSL;
        if self.client_cert.is_some() {
            client |= PP2_CLIENT_CERT_SESS;
            if self.cert_in_connection {
                client |= PP2_CLIENT_CERT_CONN;
            }
        }
        let verify: u32 = if self.client_cert.is_some() { 0 } else { 1 };
        let mut out = vec![client];
        out.extend_from_slice(&verify.to_be_bytes());
        let cert = self.client_cert.as_ref();
        let subs = [
            (PP2_SUBTYPE_SSL_VERSION, Some(self.version.as_str())),
            (
                PP2_SUBTYPE_SSL_CN,
                cert.and_then(|c| c.common_name.as_deref()),
            ),
            (PP2_SUBTYPE_SSL_CIPHER, Some(self.cipher.as_str())),
            (
                PP2_SUBTYPE_SSL_SIG_ALG,
                cert.and_then(|c| c.sig_alg.as_deref()),
            ),
            (
                PP2_SUBTYPE_SSL_KEY_ALG,
                cert.and_then(|c| c.key_alg.as_deref()),
            ),
        ];
        for (kind, value) in subs {
            if let Some(v) = value.filter(|v| !v.is_empty() && v.len() <= 1024) {
                out.push(kind);
                out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
        }
        out
    }
}

/// What the header describes: the client's address and the address it connected to.
pub struct Header<'a> {
    pub client: SocketAddr,
    pub local: SocketAddr,
    /// TLS listeners: the SNI name (v2 only, as PP2_TYPE_AUTHORITY).
    pub sni: Option<&'a str>,
    /// TLS listeners: the negotiated ALPN protocol (v2 only).
    pub alpn: Option<&'a [u8]>,
    /// TLS listeners: version, cipher and the client certificate (v2 only, PP2_TYPE_SSL).
    pub ssl: Option<&'a Ssl>,
}

/// Both addresses in one family: IPv4-mapped IPv6 addresses become IPv4.
fn same_family(a: SocketAddr, b: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canon(a), canon(b));
    (a.is_ipv4() == b.is_ipv4()).then_some((a, b))
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`
pub fn v1(h: &Header<'_>) -> Vec<u8> {
    match same_family(h.client, h.local) {
        Some((c, l)) => {
            let family = if c.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                c.ip(),
                l.ip(),
                c.port(),
                l.port()
            )
            .into_bytes()
        }
        None => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// The binary v2 header: command PROXY, TCP over IPv4/IPv6, optional TLVs.
pub fn v2(h: &Header<'_>) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    let family = match same_family(h.client, h.local) {
        Some((c, l)) => {
            match (c.ip(), l.ip()) {
                (IpAddr::V4(ci), IpAddr::V4(li)) => {
                    body.extend_from_slice(&ci.octets());
                    body.extend_from_slice(&li.octets());
                }
                (IpAddr::V6(ci), IpAddr::V6(li)) => {
                    body.extend_from_slice(&ci.octets());
                    body.extend_from_slice(&li.octets());
                }
                _ => unreachable!("same_family checked the families"),
            }
            body.extend_from_slice(&c.port().to_be_bytes());
            body.extend_from_slice(&l.port().to_be_bytes());
            if c.is_ipv4() { 0x11 } else { 0x21 }
        }
        None => 0x00, // AF_UNSPEC: the receiver ignores the addresses.
    };
    // With AF_UNSPEC receivers ignore the whole payload, TLVs included: send none.
    let ssl = h.ssl.map(Ssl::encode);
    let tlvs = if family == 0x00 {
        [
            (PP2_TYPE_ALPN, None),
            (PP2_TYPE_AUTHORITY, None),
            (PP2_TYPE_SSL, None),
        ]
    } else {
        [
            (PP2_TYPE_ALPN, h.alpn),
            (PP2_TYPE_AUTHORITY, h.sni.map(str::as_bytes)),
            (PP2_TYPE_SSL, ssl.as_deref()),
        ]
    };
    for (kind, value) in tlvs {
        // The whole body's length is a u16: a TLV that would overflow it is left out
        // (SNI and ALPN are at most 255 bytes on the wire; this guards the encoder).
        let fits = |v: &&[u8]| body.len() + 3 + v.len() <= usize::from(u16::MAX);
        if let Some(v) = value.filter(fits) {
            body.push(kind);
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
        }
    }
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The header a health check sends before closing, so a backend that requires the
/// PROXY protocol sees a well-formed connection (as HAProxy's checks do): v1
/// `PROXY UNKNOWN`, v2 command LOCAL. `None` when the pool sends no header.
pub fn health_check(version: ProxyProtocol) -> Option<Vec<u8>> {
    match version {
        ProxyProtocol::None => None,
        ProxyProtocol::V1 => Some(b"PROXY UNKNOWN\r\n".to_vec()),
        ProxyProtocol::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]); // v2 LOCAL, AF_UNSPEC, no body
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_headers() {
        assert_eq!(health_check(ProxyProtocol::None), None);
        assert_eq!(
            health_check(ProxyProtocol::V1).unwrap(),
            b"PROXY UNKNOWN\r\n"
        );
        let v2 = health_check(ProxyProtocol::V2).unwrap();
        assert_eq!(&v2[..12], &V2_SIGNATURE);
        assert_eq!(&v2[12..], &[0x20, 0x00, 0x00, 0x00]);
    }

    fn header(client: &str, local: &str) -> Header<'static> {
        Header {
            client: client.parse().unwrap(),
            local: local.parse().unwrap(),
            sni: None,
            alpn: None,
            ssl: None,
        }
    }

    #[test]
    fn v1_ipv4_and_ipv6() {
        assert_eq!(
            v1(&header("192.0.2.1:56324", "198.51.100.1:443")),
            b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
        );
        assert_eq!(
            v1(&header("[2001:db8::1]:1000", "[2001:db8::2]:443")),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 443\r\n"
        );
        assert_eq!(
            v1(&header("[::ffff:192.0.2.1]:5", "192.0.2.2:443")),
            b"PROXY TCP4 192.0.2.1 192.0.2.2 5 443\r\n"
        );
        assert_eq!(
            v1(&header("192.0.2.1:5", "[2001:db8::2]:443")),
            b"PROXY UNKNOWN\r\n"
        );
    }

    #[test]
    fn v2_ipv4_exact_bytes() {
        let got = v2(&header("192.0.2.1:56324", "198.51.100.1:443"));
        let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        want.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 1]);
        want.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]);
        assert_eq!(got, want);
    }

    #[test]
    fn v2_ipv6_with_tlvs() {
        let mut h = header("[2001:db8::1]:1000", "[2001:db8::2]:443");
        h.sni = Some("example.com");
        h.alpn = Some(b"h2");
        let got = v2(&h);
        assert_eq!(got[13], 0x21);
        let len = u16::from_be_bytes([got[14], got[15]]) as usize;
        assert_eq!(got.len(), 16 + len);
        assert_eq!(len, 36 + 3 + 2 + 3 + 11);
        assert_eq!(&got[16 + 36..16 + 36 + 5], &[0x01, 0x00, 0x02, b'h', b'2']);
        assert_eq!(&got[16 + 41..16 + 44], &[0x02, 0x00, 0x0b]);
        assert_eq!(&got[16 + 44..], b"example.com");
    }

    #[test]
    fn v2_ssl_tlv_with_a_verified_client_certificate() {
        let ssl = Ssl {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
            client_cert: Some(ClientCert {
                common_name: Some("alice".into()),
                sig_alg: Some("ecdsa-with-SHA256".into()),
                key_alg: Some("id-ecPublicKey".into()),
            }),
            cert_in_connection: true,
        };
        let mut h = header("192.0.2.1:5", "198.51.100.1:443");
        h.ssl = Some(&ssl);
        let got = v2(&h);
        let tlv = &got[16 + 12..];
        assert_eq!(tlv[0], PP2_TYPE_SSL);
        let len = u16::from_be_bytes([tlv[1], tlv[2]]) as usize;
        assert_eq!(tlv.len(), 3 + len);
        // client: SSL | CERT_CONN | CERT_SESS; verify 0.
        assert_eq!(&tlv[3..8], &[0x07, 0, 0, 0, 0]);
        assert_eq!(&tlv[8..11], &[PP2_SUBTYPE_SSL_VERSION, 0, 7]);
        assert_eq!(&tlv[11..18], b"TLSv1.3");
        assert_eq!(&tlv[18..21], &[PP2_SUBTYPE_SSL_CN, 0, 5]);
        assert_eq!(&tlv[21..26], b"alice");
        // Without a certificate: only SSL, verify non-zero, no CN.
        let anonymous = Ssl {
            client_cert: None,
            ..ssl.clone()
        };
        let encoded = anonymous.encode();
        assert_eq!(&encoded[..5], &[0x01, 0, 0, 0, 1]);
        assert!(!encoded.windows(5).any(|w| w == b"alice"));
    }
}
