//! Our PROXY v1/v2 encoder against an independent decoder (the `ppp` crate): every
//! header we write parses, with the addresses, ports, SNI, ALPN and SSL TLV we put in.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ppp::{v1, v2};
use proxy::datapath::proxy_protocol::{ClientCert, Header, Ssl, v1 as encode_v1, v2 as encode_v2};

#[derive(Arbitrary, Debug)]
struct Input {
    client: SocketAddr,
    local: SocketAddr,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    /// (version, cipher, client certificate common name)
    ssl: Option<(String, String, Option<String>)>,
}

fuzz_target!(|input: Input| {
    let ssl = input.ssl.map(|(version, cipher, cn)| Ssl {
        version,
        cipher,
        client_cert: cn.map(|cn| ClientCert {
            common_name: Some(cn),
            ..ClientCert::default()
        }),
        cert_in_connection: true,
    });
    let h = Header {
        client: input.client,
        local: input.local,
        sni: input.sni.as_deref(),
        alpn: input.alpn.as_deref(),
        ssl: ssl.as_ref(),
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
    let mut ssl_tlv = None;
    for tlv in parsed.tlvs() {
        let tlv = tlv.expect("our TLVs parse");
        match tlv.kind {
            0x01 => alpn = Some(tlv.value.to_vec()),
            0x02 => authority = Some(tlv.value.to_vec()),
            0x20 => ssl_tlv = Some(tlv.value.to_vec()),
            other => panic!("unexpected TLV type {other:#x}"),
        }
    }
    // PP2_TYPE_SSL: client bits and verify, then sub-TLVs that must tile the rest.
    if let (Some(value), Some(ssl)) = (&ssl_tlv, &ssl) {
        assert!(value.len() >= 5);
        assert_eq!(value[0] & 0x01, 0x01, "PP2_CLIENT_SSL");
        let verified = u32::from_be_bytes([value[1], value[2], value[3], value[4]]) == 0;
        assert_eq!(verified, ssl.client_cert.is_some());
        let mut rest = &value[5..];
        while !rest.is_empty() {
            assert!(rest.len() >= 3, "a truncated sub-TLV");
            let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            assert!(rest.len() >= 3 + len, "a sub-TLV longer than the TLV");
            rest = &rest[3 + len..];
        }
    }
    assert_eq!(ssl_tlv.is_some(), same_family && ssl.is_some());
    // Receivers ignore the payload of an AF_UNSPEC header, so it carries no TLVs.
    let (want_alpn, want_sni) = match same_family {
        true => (h.alpn, h.sni.map(str::as_bytes)),
        false => (None, None),
    };
    assert_eq!(alpn.as_deref(), want_alpn);
    assert_eq!(authority.as_deref(), want_sni);
});
