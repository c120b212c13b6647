//! The ClientHello reader of SNI routes (`proxy::datapath::client_hello`) on any
//! bytes, in any pieces, checked against a second parser (rusticata's tls-parser):
//!
//! - it never panics, and never keeps more than its bound;
//! - the result does not depend on how the bytes were cut into reads;
//! - when it finds a ClientHello that tls-parser also parses whole (every extension;
//!   rustls accepts some that tls-parser stops at, such as an empty
//!   max_fragment_length), both find the same server name and the same ALPN list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::datapath::client_hello::{HelloReader, MAX_HELLO_BYTES};
use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_message_handshake, parse_tls_raw_record,
};

fuzz_target!(|input: &[u8]| {
    let Some((&cut, data)) = input.split_first() else {
        return;
    };
    let whole = read(data, data.len().max(1));
    let pieces = read(data, usize::from(cut % 64) + 1);
    assert_eq!(
        whole.as_ref().map(|w| &w.0),
        pieces.as_ref().map(|p| &p.0),
        "the result depends on how the bytes arrive"
    );
    let Some(((name, alpn), used)) = pieces else {
        return;
    };
    assert!(used <= MAX_HELLO_BYTES);
    let Some((other_name, other_alpn)) = second_parser(data) else {
        return;
    };
    // rustls keeps a DNS host name only (an IP literal is not a server name), without
    // the trailing dot of an absolute name.
    let other_name = other_name
        .filter(|n| rustls_pki_types::DnsName::try_from(n.as_str()).is_ok())
        .map(|n| n.strip_suffix('.').unwrap_or(&n).to_ascii_lowercase());
    assert_eq!(name, other_name, "server name");
    assert_eq!(alpn, other_alpn, "ALPN");
});

/// The name and ALPN protocols of a ClientHello.
type Hello = (Option<String>, Vec<Vec<u8>>);

/// Feeds `data` in pieces of `step` bytes: the hello, and the bytes kept.
fn read(data: &[u8], step: usize) -> Option<(Hello, usize)> {
    let mut reader = HelloReader::default();
    for chunk in data.chunks(step) {
        match reader.push(chunk) {
            Ok(None) => continue,
            Ok(Some(hello)) => {
                let used = reader.into_bytes().len();
                return Some(((hello.server_name, hello.alpn), used));
            }
            Err(_) => return None,
        }
    }
    None
}

/// tls-parser: handshake bytes record by record, until they hold a ClientHello.
fn second_parser(mut data: &[u8]) -> Option<Hello> {
    let mut handshake = Vec::new();
    let hello = loop {
        let (rest, record) = parse_tls_raw_record(data).ok()?;
        handshake.extend_from_slice(record.data);
        data = rest;
        if let Ok((_, message)) = parse_tls_message_handshake(&handshake) {
            break message;
        }
    };
    let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = hello else {
        return None;
    };
    let (rest, extensions) = parse_tls_extensions(hello.ext.unwrap_or_default()).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let mut name = None;
    let mut alpn = Vec::new();
    for e in extensions {
        match e {
            TlsExtension::SNI(names) => {
                name = names
                    .iter()
                    .find(|(kind, _)| *kind == SNIType::HostName)
                    .and_then(|(_, n)| std::str::from_utf8(n).ok())
                    .map(str::to_owned);
            }
            TlsExtension::ALPN(protocols) => {
                alpn = protocols.iter().map(|p| p.to_vec()).collect();
            }
            _ => {}
        }
    }
    Some((name, alpn))
}
