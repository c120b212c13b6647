//! Our PROXY v1/v2 encoder against an independent decoder (the `ppp` crate): every
//! header we write parses, with the addresses, ports, SNI and ALPN we put in.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ppp::{v1, v2};
use proxy::datapath::proxy_protocol::{Header, v1 as encode_v1, v2 as encode_v2};

#[derive(Arbitrary, Debug)]
struct Input {
    client: SocketAddr,
    local: SocketAddr,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let h = Header {
        client: input.client,
        local: input.local,
        sni: input.sni.as_deref(),
        alpn: input.alpn.as_deref(),
    };
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (c, l) = (canon(h.client), canon(h.local));
    let same_family = c.is_ipv4() == l.is_ipv4();

    let text = String::from_utf8(encode_v1(&h)).expect("v1 is ASCII");
    let parsed = v1::Header::try_from(text.as_str()).expect("our v1 header parses");
    match parsed.addresses {
        v1::Addresses::Tcp4(a) => {
            assert!(same_family && c.is_ipv4());
            assert_eq!(IpAddr::V4(a.source_address), c.ip());
            assert_eq!(IpAddr::V4(a.destination_address), l.ip());
            assert_eq!((a.source_port, a.destination_port), (c.port(), l.port()));
        }
        v1::Addresses::Tcp6(a) => {
            assert!(same_family && c.is_ipv6());
            assert_eq!(IpAddr::V6(a.source_address), c.ip());
            assert_eq!(IpAddr::V6(a.destination_address), l.ip());
            assert_eq!((a.source_port, a.destination_port), (c.port(), l.port()));
        }
        v1::Addresses::Unknown => assert!(!same_family),
    }

    let bytes = encode_v2(&h);
    let parsed = v2::Header::try_from(bytes.as_slice()).expect("our v2 header parses");
    assert_eq!(parsed.command, v2::Command::Proxy);
    match parsed.addresses {
        v2::Addresses::IPv4(a) => {
            assert!(same_family && c.is_ipv4());
            assert_eq!(IpAddr::V4(a.source_address), c.ip());
            assert_eq!(IpAddr::V4(a.destination_address), l.ip());
            assert_eq!((a.source_port, a.destination_port), (c.port(), l.port()));
        }
        v2::Addresses::IPv6(a) => {
            assert!(same_family && c.is_ipv6());
            assert_eq!(IpAddr::V6(a.source_address), c.ip());
            assert_eq!(IpAddr::V6(a.destination_address), l.ip());
            assert_eq!((a.source_port, a.destination_port), (c.port(), l.port()));
        }
        v2::Addresses::Unspecified => assert!(!same_family),
        other => panic!("unexpected address family {other:?}"),
    }
    let mut alpn = None;
    let mut authority = None;
    for tlv in parsed.tlvs() {
        let tlv = tlv.expect("our TLVs parse");
        match tlv.kind {
            0x01 => alpn = Some(tlv.value.to_vec()),
            0x02 => authority = Some(tlv.value.to_vec()),
            other => panic!("unexpected TLV type {other:#x}"),
        }
    }
    // Receivers ignore the payload of an AF_UNSPEC header, so it carries no TLVs.
    let (want_alpn, want_sni) = match same_family {
        true => (h.alpn, h.sni.map(str::as_bytes)),
        false => (None, None),
    };
    assert_eq!(alpn.as_deref(), want_alpn);
    assert_eq!(authority.as_deref(), want_sni);
});
