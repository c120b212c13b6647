//! GUE frames as the fleet's nodes send each other (see `proxy_common::steering::gue`,
//! written out again here byte by byte so the fixtures check the program against an
//! independent description): built for the steering fixtures and benchmarks, and
//! parsed back from what the program sends. Also ICMP errors quoting a flow.

use std::net::IpAddr;

use crate::packets::{ICMP, ICMPV6, checksum};

/// The fixed GUE header (version 0) of a data message: Hlen words of private data.
const PRIVATE_TYPE: [u8; 2] = [0x50, 0x53];

/// A steered frame's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GueFrame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    pub ttl: u8,
    /// IPv4: the don't-fragment bit.
    pub dont_fragment: bool,
    pub ip_checksum_ok: bool,
    pub src_port: u16,
    pub dst_port: u16,
    /// The UDP length field agrees with the frame.
    pub udp_length_ok: bool,
    pub udp_checksum: u16,
    /// GUE: C bit, Hlen (words), proto, flags.
    pub control: bool,
    pub hlen: u8,
    pub proto: u8,
    pub flags: u16,
    /// Private data: type, hops, next hop.
    pub private_type: [u8; 2],
    pub hops: u8,
    pub next: Option<IpAddr>,
    /// The carried IP packet.
    pub inner: Vec<u8>,
}

/// A data message from `from` to `to` (port `port`) carrying the IP packet of
/// `inner_frame` (an Ethernet frame; its header is left out), `hops` so far and a
/// next hop; MACs `dst`, `src`.
pub fn data(
    macs: ([u8; 6], [u8; 6]),
    from: IpAddr,
    to: IpAddr,
    port: u16,
    hops: u8,
    next: Option<IpAddr>,
    inner_frame: &[u8],
) -> Vec<u8> {
    let inner = &inner_frame[14..];
    let proto = if inner[0] >> 4 == 6 { 41 } else { 4 };
    let mut gue = vec![if from.is_ipv4() { 2 } else { 5 }, proto, 0, 0];
    gue.extend_from_slice(&PRIVATE_TYPE);
    gue.push(hops);
    let (family, next_bytes) = match next {
        None => (0, vec![0; if from.is_ipv4() { 4 } else { 16 }]),
        Some(IpAddr::V4(a)) => (4, a.octets().to_vec()),
        Some(IpAddr::V6(a)) => (6, a.octets().to_vec()),
    };
    gue.push(family);
    gue.extend_from_slice(&next_bytes);
    gue.extend_from_slice(inner);
    udp(macs, from, to, 0xc123, port, &gue)
}

/// A control message (a probe) from `from` to `to`.
pub fn probe(macs: ([u8; 6], [u8; 6]), from: IpAddr, to: IpAddr, port: u16) -> Vec<u8> {
    let mut gue = vec![0x20, 0, 0, 0];
    gue.extend_from_slice(b"proxy steering probe from fixture");
    udp(macs, from, to, 0xc124, port, &gue)
}

/// An Ethernet + IP + UDP frame with `payload` (IPv4 with DF and a checksum; UDP
/// checksum 0).
pub fn udp(
    macs: ([u8; 6], [u8; 6]),
    from: IpAddr,
    to: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = src_port.to_be_bytes().to_vec();
    l4.extend_from_slice(&dst_port.to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    ip_frame(macs, from, to, 17, &l4)
}

/// An ICMP "fragmentation needed" (IPv4, MTU 1400) or ICMPv6 "packet too big" from
/// `router` to `to`, quoting the IP packet of `quoted_frame` (a packet `to` sent).
pub fn too_big(
    macs: ([u8; 6], [u8; 6]),
    router: IpAddr,
    to: IpAddr,
    quoted_frame: &[u8],
) -> Vec<u8> {
    let quoted = &quoted_frame[14..];
    let mut icmp = if router.is_ipv4() {
        vec![3, 4, 0, 0, 0, 0, 0x05, 0x78]
    } else {
        vec![2, 0, 0, 0, 0, 0, 0x05, 0x78]
    };
    // RFC 792 quotes the IP header and 8 bytes; RFC 4443 as much as fits.
    let keep = if router.is_ipv4() {
        usize::from(quoted[0] & 0xf) * 4 + 8
    } else {
        quoted.len().min(1232)
    };
    icmp.extend_from_slice(&quoted[..keep.min(quoted.len())]);
    let sum = checksum(&icmp);
    if router.is_ipv4() {
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    // (The ICMPv6 checksum covers a pseudo-header; the program does not read it.)
    let proto = if router.is_ipv4() { ICMP } else { ICMPV6 };
    ip_frame(macs, router, to, proto, &icmp)
}

fn ip_frame(
    (dst_mac, src_mac): ([u8; 6], [u8; 6]),
    from: IpAddr,
    to: IpAddr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            let sum = checksum(&f[14..34]);
            f[24..26].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(l4);
    f
}

impl GueFrame {
    /// Parses an untagged Ethernet + IP (no options) + UDP + GUE frame.
    pub fn parse(frame: &[u8]) -> Result<GueFrame, String> {
        let short = || format!("frame of {} bytes is truncated", frame.len());
        let get = |at: usize, len: usize| frame.get(at..at + len).ok_or_else(short);
        let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let (outer_src, outer_dst, ttl, df, ip_ok, udp_at, proto, ip_end) = match be16(get(12, 2)?)
        {
            0x0800 => {
                let h = get(14, 20)?;
                (
                    IpAddr::from(<[u8; 4]>::try_from(&h[12..16]).unwrap()),
                    IpAddr::from(<[u8; 4]>::try_from(&h[16..20]).unwrap()),
                    h[8],
                    h[6] & 0x40 != 0,
                    checksum(h) == 0 && h[0] == 0x45,
                    34,
                    h[9],
                    14 + usize::from(be16(&h[2..4])),
                )
            }
            0x86dd => {
                let h = get(14, 40)?;
                (
                    IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).unwrap()),
                    IpAddr::from(<[u8; 16]>::try_from(&h[24..40]).unwrap()),
                    h[7],
                    false,
                    true,
                    54,
                    h[6],
                    54 + usize::from(be16(&h[4..6])),
                )
            }
            other => return Err(format!("ether type {other:#06x} is not IP")),
        };
        if proto != 17 {
            return Err(format!("protocol {proto} is not UDP"));
        }
        let u = get(udp_at, 8)?;
        let g = get(udp_at + 8, 4)?;
        let hlen = g[0] & 0x1f;
        let private = get(udp_at + 12, usize::from(hlen) * 4)?;
        let next = match (private.get(3), private.get(4..)) {
            (Some(4), Some(a)) if a.len() >= 4 => {
                Some(IpAddr::from(<[u8; 4]>::try_from(&a[..4]).unwrap()))
            }
            (Some(6), Some(a)) if a.len() >= 16 => {
                Some(IpAddr::from(<[u8; 16]>::try_from(&a[..16]).unwrap()))
            }
            _ => None,
        };
        let inner_at = udp_at + 12 + usize::from(hlen) * 4;
        Ok(GueFrame {
            dst_mac: frame[0..6].try_into().unwrap(),
            src_mac: frame[6..12].try_into().unwrap(),
            outer_src,
            outer_dst,
            ttl,
            dont_fragment: df,
            ip_checksum_ok: ip_ok,
            src_port: be16(&u[0..2]),
            dst_port: be16(&u[2..4]),
            udp_length_ok: usize::from(be16(&u[4..6])) == ip_end - udp_at,
            udp_checksum: be16(&u[6..8]),
            control: g[0] & 0x20 != 0,
            hlen,
            proto: g[1],
            flags: be16(&g[2..4]),
            private_type: [
                private.first().copied().unwrap_or(0),
                private.get(1).copied().unwrap_or(0),
            ],
            hops: private.get(2).copied().unwrap_or(0),
            next,
            inner: frame.get(inner_at..ip_end).ok_or_else(short)?.to_vec(),
        })
    }
}
