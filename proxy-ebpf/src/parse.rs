//! Bounds-checked header parsing: Ethernet, up to two VLAN tags, IPv4 (any IHL),
//! IPv6 (with extension headers), TCP and UDP ports.

use aya_ebpf::programs::XdpContext;

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Extension headers followed before giving up on finding the transport header.
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Headers are truncated or invalid.
pub struct Malformed;

pub enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

pub enum Parsed {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp,
    Ip(IpPacket),
}

pub struct IpPacket {
    pub src: Source,
    /// Destination port for TCP/UDP; `None` for other protocols and non-first fragments.
    pub dst_port: Option<u16>,
    /// A TCP segment with SYN set and ACK clear (a connection attempt).
    pub tcp_syn: bool,
    /// A non-first fragment: carries no transport header.
    pub later_fragment: bool,
}

/// Copies the `T` at `offset` out of the packet, if the packet is long enough.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Result<T, Malformed> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Malformed);
    }
    // SAFETY: the bytes [start + offset, start + offset + size_of::<T>()) lie inside
    // the packet (checked just above, which is also what the verifier checks), and
    // `T` is plain bytes (only byte arrays are read here), so any value is valid and
    // an unaligned read is fine.
    Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, offset: usize) -> Result<u16, Malformed> {
    Ok(u16::from_be_bytes(read::<[u8; 2]>(ctx, offset)?))
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

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<IpPacket, Malformed> {
    let h = read::<[u8; 20]>(ctx, off)?;
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
    let src = Source::V4([h[12], h[13], h[14], h[15]]);
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    if fragment_offset != 0 {
        return Ok(IpPacket {
            src,
            dst_port: None,
            tcp_syn: false,
            later_fragment: true,
        });
    }
    let (dst_port, tcp_syn) = parse_l4(ctx, h[9], l4)?;
    Ok(IpPacket {
        src,
        dst_port,
        tcp_syn,
        later_fragment: false,
    })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<IpPacket, Malformed> {
    let h = read::<[u8; 40]>(ctx, off)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let src = Source::V6(src);
    let mut next = h[6];
    let mut l4 = off + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let ext = read::<[u8; 2]>(ctx, l4)?;
                next = ext[0];
                l4 += (ext[1] as usize + 1) * 8;
            }
            IPPROTO_AH => {
                let ext = read::<[u8; 2]>(ctx, l4)?;
                next = ext[0];
                l4 += (ext[1] as usize + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let frag = read::<[u8; 8]>(ctx, l4)?;
                next = frag[0];
                l4 += 8;
                let fragment_offset = u16::from_be_bytes([frag[2], frag[3]]) >> 3;
                if fragment_offset != 0 {
                    return Ok(IpPacket {
                        src,
                        dst_port: None,
                        tcp_syn: false,
                        later_fragment: true,
                    });
                }
            }
            _ => break,
        }
    }
    let (dst_port, tcp_syn) = parse_l4(ctx, next, l4)?;
    Ok(IpPacket {
        src,
        dst_port,
        tcp_syn,
        later_fragment: false,
    })
}

/// Destination port and SYN flag; the transport header must be complete.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, proto: u8, off: usize) -> Result<(Option<u16>, bool), Malformed> {
    match proto {
        IPPROTO_TCP => {
            let tcp = read::<[u8; 20]>(ctx, off)?;
            if tcp[12] >> 4 < 5 {
                return Err(Malformed);
            }
            let flags = tcp[13];
            let syn = flags & 0x02 != 0 && flags & 0x10 == 0;
            Ok((Some(u16::from_be_bytes([tcp[2], tcp[3]])), syn))
        }
        IPPROTO_UDP => {
            let udp = read::<[u8; 8]>(ctx, off)?;
            Ok((Some(u16::from_be_bytes([udp[2], udp[3]])), false))
        }
        _ => Ok((None, false)),
    }
}
