//! Reading a client's TLS ClientHello without terminating TLS, for SNI routes: the
//! bytes are kept to be replayed to a passthrough backend (or to the local TLS
//! stack). At most [`MAX_HELLO_BYTES`], across any number of TLS records and TCP
//! segments. The parsing is rustls' own (`server::Acceptor`), the same code that
//! reads the ClientHello of terminated connections; this module only frames, bounds
//! and keeps the bytes.

use rustls::server::Acceptor;
use tokio::io::AsyncReadExt;

use crate::api::HandshakeFailure;

/// The most bytes read before a ClientHello must be complete (as HAProxy's
/// `tune.bufsize`, NGINX's `ssl_preread` buffer): a real ClientHello, post-quantum
/// key shares included, is below 2 KiB.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// The TLS record type of handshake messages: every ClientHello starts with it.
const HANDSHAKE_RECORD: u8 = 0x16;

/// What routing needs from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// The SNI host name, lower case, if the client sent one.
    pub server_name: Option<String>,
    /// The ALPN protocols the client offers, in its order.
    pub alpn: Vec<Vec<u8>>,
}

/// Why no ClientHello could be read; each maps to a handshake failure reason.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("not TLS (first byte {0:#04x}, a TLS handshake record starts with 0x16)")]
    NotTls(u8),
    #[error("malformed ClientHello: {0}")]
    Malformed(rustls::Error),
    #[error("no complete ClientHello in the first {MAX_HELLO_BYTES} bytes")]
    TooLarge,
    #[error("the client closed the connection before its ClientHello was complete")]
    Closed,
    #[error("reading the ClientHello: {0}")]
    Io(#[from] std::io::Error),
}

impl HelloError {
    pub fn reason(&self) -> HandshakeFailure {
        match self {
            HelloError::NotTls(_) => HandshakeFailure::NotTls,
            HelloError::Malformed(_) => HandshakeFailure::NotTls,
            HelloError::TooLarge => HandshakeFailure::TooLarge,
            HelloError::Closed => HandshakeFailure::ClientClosed,
            HelloError::Io(_) => HandshakeFailure::IoError,
        }
    }
}

/// Accumulates a client's first bytes until they hold a whole ClientHello.
pub struct HelloReader {
    acceptor: Acceptor,
    bytes: Vec<u8>,
}

impl Default for HelloReader {
    fn default() -> Self {
        HelloReader {
            acceptor: Acceptor::default(),
            bytes: Vec::with_capacity(2048),
        }
    }
}

impl HelloReader {
    /// Adds bytes read from the client: `Some` once the ClientHello is complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Hello>, HelloError> {
        if let Some(&first) = self.bytes.first().or(data.first())
            && first != HANDSHAKE_RECORD
        {
            return Err(HelloError::NotTls(first));
        }
        if self.bytes.len() + data.len() > MAX_HELLO_BYTES {
            return Err(HelloError::TooLarge);
        }
        self.bytes.extend_from_slice(data);
        let mut fed = data;
        while !fed.is_empty() {
            self.acceptor.read_tls(&mut fed)?;
            match self.acceptor.accept() {
                Ok(None) => {}
                Ok(Some(accepted)) => {
                    let hello = accepted.client_hello();
                    return Ok(Some(Hello {
                        server_name: hello.server_name().map(str::to_ascii_lowercase),
                        alpn: hello
                            .alpn()
                            .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                            .unwrap_or_default(),
                    }));
                }
                Err((e, _alert)) => return Err(HelloError::Malformed(e)),
            }
        }
        Ok(None)
    }

    /// Every byte read so far, to be replayed.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads from `stream` until it has sent a whole ClientHello: the hello and every
/// byte read (the caller bounds the time).
pub async fn read<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Hello, Vec<u8>), HelloError> {
    let mut reader = HelloReader::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        if let Some(hello) = reader.push(&buf[..n])? {
            return Ok((hello, reader.into_bytes()));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    /// The first flight of a real rustls client for `name` offering `alpn`.
    pub fn client_hello(name: Option<&str>, alpn: &[&str]) -> Vec<u8> {
        let mut config =
            rustls::ClientConfig::builder_with_provider(crate::datapath::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.enable_sni = name.is_some();
        let server = rustls::pki_types::ServerName::try_from(name.unwrap_or("x.invalid"))
            .unwrap()
            .to_owned();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    fn read_all(chunks: &[&[u8]]) -> Result<Option<Hello>, HelloError> {
        let mut r = HelloReader::default();
        for c in chunks {
            if let Some(h) = r.push(c)? {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    #[test]
    fn name_and_alpn_in_one_piece_or_byte_by_byte() {
        let bytes = client_hello(Some("API.Example.com"), &["h2", "http/1.1"]);
        let want = Hello {
            server_name: Some("api.example.com".into()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        assert_eq!(read_all(&[&bytes]).unwrap(), Some(want.clone()));
        let bytes_one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(read_all(&bytes_one_by_one).unwrap(), Some(want));
        // Incomplete: waits for more.
        assert_eq!(read_all(&[&bytes[..bytes.len() - 1]]).unwrap(), None);
    }

    /// The handshake message split over two TLS records (as a client may).
    #[test]
    fn a_hello_over_two_records() {
        let bytes = client_hello(Some("a.test"), &[]);
        let body = &bytes[5..];
        let (first, second) = body.split_at(body.len() / 2);
        let record = |payload: &[u8]| {
            let mut r = vec![0x16, 0x03, 0x01];
            r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            r.extend_from_slice(payload);
            r
        };
        let (a, b) = (record(first), record(second));
        let hello = read_all(&[&a, &b]).unwrap().unwrap();
        assert_eq!(hello.server_name.as_deref(), Some("a.test"));
        assert!(hello.alpn.is_empty());
        let mut reader = HelloReader::default();
        assert!(reader.push(&a).unwrap().is_none());
        assert!(reader.push(&b).unwrap().is_some());
        assert_eq!(
            reader.into_bytes(),
            [a, b].concat(),
            "every byte kept for the replay"
        );
    }

    #[test]
    fn no_sni_not_tls_malformed_and_too_large() {
        let hello = read_all(&[&client_hello(None, &[])]).unwrap().unwrap();
        assert_eq!(hello.server_name, None);
        assert!(matches!(
            read_all(&[b"GET / HTTP/1.1\r\n"]),
            Err(HelloError::NotTls(b'G'))
        ));
        // A handshake record whose message is not a ClientHello.
        let bad = [0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00];
        assert!(matches!(read_all(&[&bad]), Err(HelloError::Malformed(_))));
        // A ClientHello announced at 65,520 bytes, sent in 1,000-byte records: refused
        // once the bound is passed, before it is complete.
        let record = |start: &[u8]| {
            let mut r = vec![0x16, 0x03, 0x01, 0x03, 0xe8];
            r.extend_from_slice(start);
            r.resize(5 + 1000, 0);
            r
        };
        let (first, next) = (record(&[0x01, 0x00, 0xff, 0xf0, 0x03, 0x03]), record(&[]));
        let mut r = HelloReader::default();
        let mut result = r.push(&first);
        for _ in 0..20 {
            if !matches!(result, Ok(None)) {
                break;
            }
            result = r.push(&next);
        }
        assert!(matches!(result, Err(HelloError::TooLarge)), "{result:?}");
    }
}
