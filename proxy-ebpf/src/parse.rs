//! Bounds-checked header parsing: Ethernet, up to two VLAN tags, IPv4 (any IHL),
//! IPv6 (with extension headers), TCP and UDP ports and TCP flags. Offsets are kept so
//! the SYN cookie code can copy the headers it hands to the kernel's helpers.

use aya_ebpf::programs::XdpContext;
use proxy_common::{AddrKey, COOKIE_L3_MAX, COOKIE_L4_MAX, FAMILY_V4, FAMILY_V6};

use crate::verifier;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Extension headers followed before giving up on finding the transport header.
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Headers are truncated or invalid.
pub struct Malformed;

/// An IP address as read from a header.
pub enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    /// The address as a map key / event field: family plus 16 bytes, all initialised.
    #[inline(always)]
    pub fn key(&self) -> AddrKey {
        let mut key = AddrKey::default();
        match self {
            Addr::V4(a) => {
                key.addr[..4].copy_from_slice(a);
                key.family = FAMILY_V4;
            }
            Addr::V6(a) => {
                key.addr = *a;
                key.family = FAMILY_V6;
            }
        }
        key
    }
}

pub enum Parsed {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp,
    Ip(IpPacket),
}

pub struct IpPacket {
    pub src: Addr,
    pub dst: Addr,
    /// Transport protocol (IPPROTO_*), after IPv6 extension headers.
    pub proto: u8,
    /// Destination port for TCP/UDP (see `dst_port()`); 0 otherwise.
    port: u16,
    /// TCP or UDP with its header present (not a later fragment).
    has_ports: bool,
    /// Addr port for TCP/UDP (0 otherwise).
    pub src_port: u16,
    /// A TCP segment with SYN set and ACK clear (a connection attempt).
    pub tcp_syn: bool,
    /// TCP flags byte (SYN 0x02, RST 0x04, ACK 0x10, ...); 0 otherwise.
    pub tcp_flags: u8,
    /// A non-first fragment: carries no transport header.
    pub later_fragment: bool,
    /// Offsets of the IP and transport headers from the start of the frame.
    pub l3: usize,
    pub l4: usize,
}

pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The transport fields `parse_l4` extracts.
struct L4 {
    dst_port: Option<u16>,
    src_port: u16,
    flags: u8,
}

/// Copies the `N` bytes at `offset` out of the packet, if the packet is long enough.
#[inline(always)]
pub fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<[u8; N], Malformed> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + N > end {
        return Err(Malformed);
    }
    // SAFETY: the bytes [start + offset, start + offset + N) lie inside the packet
    // (checked just above, which is also what the verifier checks); any bytes are a
    // valid `[u8; N]`, and an unaligned read is fine.
    Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, offset: usize) -> Result<u16, Malformed> {
    Ok(u16::from_be_bytes(read::<2>(ctx, offset)?))
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Malformed> {
    let mut ether_type = be16_at(ctx, 12)?;
    let mut off = ETH_HLEN;
    // Up to two tags (802.1ad outer, 802.1Q inner); a third tag is not parsed: malformed.
    for _ in 0..2 {
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            ether_type = be16_at(ctx, off + 2)?;
            off += 4;
        }
    }
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, off).map(Parsed::Ip),
        ETH_P_IPV6 => parse_ipv6(ctx, off).map(Parsed::Ip),
        ETH_P_8021Q | ETH_P_8021AD => Err(Malformed),
        _ => Ok(Parsed::NonIp),
    }
}

/// The IPv4 packet at `off` (an encapsulated one, or after the Ethernet header).
#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<IpPacket, Malformed> {
    let h = read::<20>(ctx, off)?;
    if h[0] >> 4 != 4 {
        return Err(Malformed);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Malformed);
    }
    let total_len = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total_len < ihl {
        return Err(Malformed);
    }
    // The whole header, options included, must be present.
    let l4 = off + ihl;
    if ctx.data() + l4 > ctx.data_end() {
        return Err(Malformed);
    }
    let src = Addr::V4([h[12], h[13], h[14], h[15]]);
    let dst = Addr::V4([h[16], h[17], h[18], h[19]]);
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    if fragment_offset != 0 {
        return Ok(IpPacket::later_fragment(src, dst, h[9], off, l4));
    }
    let transport = parse_l4(ctx, h[9], l4)?;
    Ok(IpPacket::new(src, dst, h[9], transport, off, l4))
}

/// The IPv6 packet at `off`.
#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<IpPacket, Malformed> {
    let h = read::<40>(ctx, off)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let src = Addr::V6(src);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&h[24..40]);
    let dst = Addr::V6(dst);
    let mut next = h[6];
    let mut l4 = off + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let ext = read::<2>(ctx, l4)?;
                next = ext[0];
                l4 += (ext[1] as usize + 1) * 8;
            }
            IPPROTO_AH => {
                let ext = read::<2>(ctx, l4)?;
                next = ext[0];
                l4 += (ext[1] as usize + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let frag = read::<8>(ctx, l4)?;
                next = frag[0];
                l4 += 8;
                let fragment_offset = u16::from_be_bytes([frag[2], frag[3]]) >> 3;
                if fragment_offset != 0 {
                    return Ok(IpPacket::later_fragment(src, dst, next, off, l4));
                }
            }
            _ => break,
        }
    }
    let transport = parse_l4(ctx, next, l4)?;
    Ok(IpPacket::new(src, dst, next, transport, off, l4))
}

impl IpPacket {
    /// Destination port for TCP/UDP; `None` for other protocols and non-first fragments.
    /// (Two plain fields, not an `Option`: see "Plain fields" in `verifier.rs`.)
    #[inline(always)]
    pub fn dst_port(&self) -> Option<u16> {
        if self.has_ports {
            Some(self.port)
        } else {
            None
        }
    }

    /// The header offsets made opaque to the verifier (bounded, but no longer one
    /// exact value per parse path): see `verifier::opaque_offset`. Hand the packet to
    /// the SYN cookie stage before (`handoff::save`): an offset past its mask is
    /// wrong after this.
    #[inline(always)]
    pub fn offsets_opaque(&mut self) {
        self.l3 = verifier::opaque_offset(self.l3, COOKIE_L3_MAX as usize);
        self.l4 = verifier::opaque_offset(self.l4, COOKIE_L4_MAX as usize);
    }

    #[inline(always)]
    fn new(src: Addr, dst: Addr, proto: u8, t: L4, l3: usize, l4: usize) -> IpPacket {
        IpPacket {
            src,
            dst,
            proto,
            port: t.dst_port.unwrap_or(0),
            has_ports: t.dst_port.is_some(),
            src_port: t.src_port,
            tcp_syn: t.flags & TCP_SYN != 0 && t.flags & TCP_ACK == 0,
            tcp_flags: t.flags,
            later_fragment: false,
            l3,
            l4,
        }
    }

    #[inline(always)]
    fn later_fragment(src: Addr, dst: Addr, proto: u8, l3: usize, l4: usize) -> IpPacket {
        let none = L4 {
            dst_port: None,
            src_port: 0,
            flags: 0,
        };
        IpPacket {
            later_fragment: true,
            ..IpPacket::new(src, dst, proto, none, l3, l4)
        }
    }
}

/// Ports and TCP flags; the transport header must be complete.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, proto: u8, off: usize) -> Result<L4, Malformed> {
    match proto {
        IPPROTO_TCP => {
            let tcp = read::<20>(ctx, off)?;
            if tcp[12] >> 4 < 5 {
                return Err(Malformed);
            }
            Ok(L4 {
                dst_port: Some(u16::from_be_bytes([tcp[2], tcp[3]])),
                src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                flags: tcp[13],
            })
        }
        IPPROTO_UDP => {
            let udp = read::<8>(ctx, off)?;
            Ok(L4 {
                dst_port: Some(u16::from_be_bytes([udp[2], udp[3]])),
                src_port: u16::from_be_bytes([udp[0], udp[1]]),
                flags: 0,
            })
        }
        _ => Ok(L4 {
            dst_port: None,
            src_port: 0,
            flags: 0,
        }),
    }
}
