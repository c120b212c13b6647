//! Crafted Ethernet frames for the XDP fixtures: IPv4/IPv6, TCP/UDP/ICMP, VLAN tags,
//! IP options, TCP options, fragments, extension headers, truncation. IPv4 header and
//! TCP/UDP checksums are filled in; [`Segment`] parses a TCP frame back (for checking
//! what the program sent).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;
pub const PSH_ACK: u8 = 0x18;
pub const SYN_ACK: u8 = 0x12;

/// A packet under construction; `build()` returns the frame bytes.
#[derive(Clone)]
pub struct Packet {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    dst_port: u16,
    tcp_flags: u8,
    vlans: Vec<u16>,
    ipv4_options: usize,
    /// (fragment offset in 8-byte units, more fragments)
    fragment: Option<(u16, bool)>,
    ipv6_hop_by_hop: bool,
    payload: usize,
    src_port: u16,
    seq: u32,
    ack: u32,
    tcp_options: Vec<u8>,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
}

/// The options of a Linux SYN: MSS 1460, SACK permitted, timestamps (`tsval`, 0),
/// NOP, window scale 7.
pub fn linux_syn_options(tsval: u32) -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&[0, 0, 0, 0, 1, 3, 3, 7]);
    o
}

pub fn v4(src: &str) -> Packet {
    Packet::new(
        src.parse().unwrap(),
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
    )
}

pub fn v6(src: &str) -> Packet {
    Packet::new(
        src.parse().unwrap(),
        IpAddr::V6("fd77::1".parse::<Ipv6Addr>().unwrap()),
    )
}

impl Packet {
    fn new(src: IpAddr, dst: IpAddr) -> Packet {
        Packet {
            src,
            dst,
            proto: TCP,
            dst_port: 443,
            tcp_flags: PSH_ACK,
            vlans: vec![],
            ipv4_options: 0,
            fragment: None,
            ipv6_hop_by_hop: false,
            payload: 32,
            src_port: 40000,
            seq: 1,
            ack: 0,
            tcp_options: Vec::new(),
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
            src_mac: [0x02, 0, 0, 0, 0, 0x02],
        }
    }
    pub fn tcp(mut self, dst_port: u16, flags: u8) -> Self {
        self.proto = TCP;
        self.dst_port = dst_port;
        self.tcp_flags = flags;
        self
    }
    pub fn udp(mut self, dst_port: u16) -> Self {
        self.proto = UDP;
        self.dst_port = dst_port;
        self
    }
    pub fn icmp(mut self) -> Self {
        self.proto = if self.src.is_ipv4() { ICMP } else { ICMPV6 };
        self
    }
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlans.push(id);
        self
    }
    /// Adds `words` 32-bit words of IPv4 options (NOPs + EOL).
    pub fn ipv4_options(mut self, words: usize) -> Self {
        self.ipv4_options = words * 4;
        self
    }
    pub fn fragment(mut self, offset_units: u16, more: bool) -> Self {
        self.fragment = Some((offset_units, more));
        self
    }
    pub fn to(mut self, dst: impl Into<IpAddr>) -> Self {
        self.dst = dst.into();
        self
    }
    pub fn macs(mut self, dst: [u8; 6], src: [u8; 6]) -> Self {
        self.dst_mac = dst;
        self.src_mac = src;
        self
    }
    pub fn src_port(mut self, port: u16) -> Self {
        self.src_port = port;
        self
    }
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }
    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }
    /// TCP options (padded with end-of-options to a multiple of 4 bytes).
    pub fn tcp_options(mut self, options: Vec<u8>) -> Self {
        self.tcp_options = options;
        while !self.tcp_options.len().is_multiple_of(4) {
            self.tcp_options.push(0);
        }
        self
    }
    pub fn payload(mut self, bytes: usize) -> Self {
        self.payload = bytes;
        self
    }
    pub fn hop_by_hop(mut self) -> Self {
        self.ipv6_hop_by_hop = true;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        let later_fragment = matches!(self.fragment, Some((off, _)) if off != 0);
        if !later_fragment {
            match self.proto {
                TCP => {
                    l4.extend_from_slice(&self.src_port.to_be_bytes());
                    l4.extend_from_slice(&self.dst_port.to_be_bytes());
                    l4.extend_from_slice(&self.seq.to_be_bytes());
                    l4.extend_from_slice(&self.ack.to_be_bytes());
                    l4.push((((20 + self.tcp_options.len()) / 4) as u8) << 4); // data offset
                    l4.push(self.tcp_flags);
                    l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
                    l4.extend_from_slice(&self.tcp_options);
                }
                UDP => {
                    l4.extend_from_slice(&self.src_port.to_be_bytes());
                    l4.extend_from_slice(&self.dst_port.to_be_bytes());
                    l4.extend_from_slice(&((8 + self.payload) as u16).to_be_bytes());
                    l4.extend_from_slice(&[0, 0]);
                }
                _ => l4.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]), // echo request
            }
        }
        l4.extend(std::iter::repeat_n(0xab, self.payload));

        // TCP/UDP checksums (pseudo-header included), so a real stack accepts them.
        let at = match self.proto {
            TCP => Some(16),
            UDP => Some(6),
            _ => None,
        };
        if let (Some(at), false) = (at, later_fragment || self.ipv6_hop_by_hop) {
            let sum = checksum(&with_pseudo_header(self.src, self.dst, self.proto, &l4));
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        let mut frame = self.dst_mac.to_vec();
        frame.extend_from_slice(&self.src_mac);
        let ether_type: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86DD };
        for (i, id) in self.vlans.iter().enumerate() {
            let tpid: u16 = if i == 0 && self.vlans.len() == 2 {
                0x88A8
            } else {
                0x8100
            };
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&id.to_be_bytes());
        }
        frame.extend_from_slice(&ether_type.to_be_bytes());

        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ihl = 20 + self.ipv4_options;
                let total = (ihl + l4.len()) as u16;
                frame.push(0x40 | (ihl / 4) as u8);
                frame.push(0);
                frame.extend_from_slice(&total.to_be_bytes());
                frame.extend_from_slice(&[0x12, 0x34]);
                let frag = self
                    .fragment
                    .map_or(0, |(off, more)| off | if more { 0x2000 } else { 0 });
                frame.extend_from_slice(&frag.to_be_bytes());
                frame.extend_from_slice(&[64, self.proto, 0, 0]);
                frame.extend_from_slice(&src.octets());
                frame.extend_from_slice(&dst.octets());
                if self.ipv4_options > 0 {
                    frame.extend(std::iter::repeat_n(1u8, self.ipv4_options - 1)); // NOP
                    frame.push(0); // EOL
                }
                let ip = frame.len() - ihl;
                let sum = checksum(&frame[ip..]);
                frame[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut ext = Vec::new();
                let mut next = self.proto;
                if let Some((off, more)) = self.fragment {
                    ext.extend_from_slice(&[next, 0]);
                    ext.extend_from_slice(&((off << 3) | more as u16).to_be_bytes());
                    ext.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                    next = 44;
                }
                if self.ipv6_hop_by_hop {
                    let mut hbh = vec![next, 0, 1, 4, 0, 0, 0, 0]; // PadN option
                    hbh.extend_from_slice(&ext);
                    ext = hbh;
                    next = 0;
                }
                frame.extend_from_slice(&[0x60, 0, 0, 0]);
                frame.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
                frame.push(next);
                frame.push(64);
                frame.extend_from_slice(&src.octets());
                frame.extend_from_slice(&dst.octets());
                frame.extend_from_slice(&ext);
            }
            _ => unreachable!("mixed families"),
        }
        frame.extend_from_slice(&l4);
        frame
    }
}

/// An ARP request (who-has 10.77.0.1).
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 10, 77, 0, 2]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 77, 0, 1]);
    f
}

/// An LLDP frame (ethertype 0x88cc) with a chassis-id TLV.
pub fn lldp() -> Vec<u8> {
    let mut f = vec![
        0x01, 0x80, 0xc2, 0, 0, 0x0e, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xcc,
    ];
    f.extend_from_slice(&[0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0, 0x02, 0, 0]);
    f
}

/// The TCP/UDP pseudo-header (RFC 793 / RFC 8200) followed by the segment.
fn with_pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(40 + l4.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!("mixed families"),
    }
    pseudo.extend_from_slice(l4);
    pseudo
}

/// A TCP frame parsed back: what the fixtures check in the program's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub mss: Option<u16>,
    pub sack_permitted: bool,
    /// (value, echo reply)
    pub timestamp: Option<(u32, u32)>,
    pub wscale: Option<u8>,
    /// The IPv4 header checksum verifies (always true for IPv6).
    pub ip_checksum_ok: bool,
    /// The TCP checksum verifies over the pseudo-header.
    pub tcp_checksum_ok: bool,
}

impl Segment {
    /// Parses an Ethernet (+ VLAN) + IPv4/IPv6 (no options / extension headers) + TCP frame.
    pub fn parse(frame: &[u8]) -> Result<Segment, String> {
        let short = || format!("frame of {} bytes is truncated", frame.len());
        let be16 = |at: usize| -> Result<u16, String> {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(short)
        };
        let mut off = 12;
        let mut vlans = Vec::new();
        let mut ether_type = be16(off)?;
        while ether_type == 0x8100 || ether_type == 0x88A8 {
            vlans.push(be16(off + 2)?);
            off += 4;
            ether_type = be16(off)?;
        }
        let l3 = off + 2;
        let (src, dst, ttl, l4, ip_checksum_ok, proto) = match ether_type {
            0x0800 => {
                let h = frame.get(l3..l3 + 20).ok_or_else(short)?;
                let ihl = usize::from(h[0] & 0xf) * 4;
                let src = IpAddr::from(<[u8; 4]>::try_from(&h[12..16]).unwrap());
                let dst = IpAddr::from(<[u8; 4]>::try_from(&h[16..20]).unwrap());
                let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
                let ok = checksum(&frame[l3..l3 + ihl]) == 0;
                (src, dst, h[8], (l3 + ihl, l3 + total), ok, h[9])
            }
            0x86DD => {
                let h = frame.get(l3..l3 + 40).ok_or_else(short)?;
                let src = IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).unwrap());
                let dst = IpAddr::from(<[u8; 16]>::try_from(&h[24..40]).unwrap());
                let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
                (src, dst, h[7], (l3 + 40, l3 + 40 + payload), true, h[6])
            }
            other => return Err(format!("ether type {other:#06x} is not IP")),
        };
        if proto != TCP {
            return Err(format!("protocol {proto} is not TCP"));
        }
        let tcp = frame.get(l4.0..l4.1).ok_or_else(short)?;
        let doff = usize::from(tcp[12] >> 4) * 4;
        let tcp_checksum_ok = checksum(&with_pseudo_header(src, dst, TCP, tcp)) == 0;
        let mut seg = Segment {
            dst_mac: frame[0..6].try_into().unwrap(),
            src_mac: frame[6..12].try_into().unwrap(),
            vlans,
            src,
            dst,
            ttl,
            src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            seq: u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
            ack: u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
            flags: tcp[13],
            window: u16::from_be_bytes([tcp[14], tcp[15]]),
            mss: None,
            sack_permitted: false,
            timestamp: None,
            wscale: None,
            ip_checksum_ok,
            tcp_checksum_ok,
        };
        let options = tcp.get(20..doff).ok_or_else(short)?;
        let mut i = 0;
        while i < options.len() {
            match options[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let len = usize::from(*options.get(i + 1).ok_or("truncated option")?);
                    let body = options.get(i + 2..i + len).ok_or("truncated option")?;
                    match kind {
                        2 => seg.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                        3 => seg.wscale = Some(body[0]),
                        4 => seg.sack_permitted = true,
                        8 => {
                            seg.timestamp = Some((
                                u32::from_be_bytes(body[0..4].try_into().unwrap()),
                                u32::from_be_bytes(body[4..8].try_into().unwrap()),
                            ))
                        }
                        _ => {}
                    }
                    i += len.max(2);
                }
            }
        }
        Ok(seg)
    }
}

/// The Internet checksum (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
