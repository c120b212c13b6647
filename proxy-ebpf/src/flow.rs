//! The headers the steering program reads, written straight into its per-CPU scratch
//! (the 512-byte stack has no room for `parse.rs`'s copies next to the rest of the
//! steering code): Ethernet with up to two VLAN tags, IPv4 with options, IPv6 without
//! extension headers (such a packet is not steered: it is handled where it arrives);
//! and the TCP flow a packet, or an ICMP error about it, names.

use aya_ebpf::programs::XdpContext;
use proxy_common::{
    AddrKey, FAMILY_V4, FAMILY_V6,
    steering::{STEER_READ_ROOM, SteerFlow, SteerHeaders},
};

use crate::frame;
use crate::parse::{
    ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    TCP_ACK, TCP_RST, TCP_SYN,
};
use crate::verifier;

const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

/// Header bytes read from the frame: the per-CPU scratch's buffer, not the stack.
pub type Buf = [u8; STEER_READ_ROOM];

/// Reads `len` bytes (at most [`STEER_READ_ROOM`]) at `offset` into `buf`.
#[inline(always)]
pub fn read(ctx: &XdpContext, buf: &mut Buf, offset: usize, len: u32) -> Result<(), ()> {
    frame::load(ctx, offset, buf, len)
}

#[inline(always)]
fn be16(buf: &Buf, at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline(always)]
fn set_v4(key: &mut AddrKey, buf: &Buf, at: usize) {
    key.family = FAMILY_V4;
    key.addr = [0; 16];
    key.addr[..4].copy_from_slice(&buf[at..at + 4]);
}

#[inline(always)]
fn set_v6(key: &mut AddrKey, buf: &Buf, at: usize) {
    key.family = FAMILY_V6;
    key.addr.copy_from_slice(&buf[at..at + 16]);
}

/// Reads the frame's headers (from the Ethernet header on) into `h`.
#[inline(always)]
pub fn frame(ctx: &XdpContext, h: &mut SteerHeaders, buf: &mut Buf) -> Result<(), ()> {
    read(ctx, buf, 12, 2)?;
    let mut ether_type = be16(buf, 0);
    let mut off = ETH_HLEN;
    for _ in 0..2 {
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            read(ctx, buf, off + 2, 2)?;
            ether_type = be16(buf, 0);
            off += 4;
        }
    }
    match ether_type {
        ETH_P_IPV4 => ip(ctx, off, false, h, buf),
        ETH_P_IPV6 => ip(ctx, off, true, h, buf),
        _ => Err(()),
    }
}

/// Reads the IP packet at `l3` into `h`.
#[inline(always)]
pub fn ip(
    ctx: &XdpContext,
    l3: usize,
    v6: bool,
    h: &mut SteerHeaders,
    buf: &mut Buf,
) -> Result<(), ()> {
    h.l3 = l3 as u32;
    h.v6 = v6 as u32;
    h.later_fragment = 0;
    h.src_port = 0;
    h.dst_port = 0;
    h.tcp_flags = 0;
    let l4 = if v6 {
        read(ctx, buf, l3, 40)?;
        if buf[0] >> 4 != 6 {
            return Err(());
        }
        h.proto = buf[6] as u32;
        set_v6(&mut h.src, buf, 8);
        set_v6(&mut h.dst, buf, 24);
        l3 + 40
    } else {
        read(ctx, buf, l3, 20)?;
        let ihl = (buf[0] & 0x0f) as usize * 4;
        if buf[0] >> 4 != 4 || ihl < 20 {
            return Err(());
        }
        h.proto = buf[9] as u32;
        set_v4(&mut h.src, buf, 12);
        set_v4(&mut h.dst, buf, 16);
        if be16(buf, 6) & 0x1fff != 0 {
            h.later_fragment = 1;
        }
        l3 + ihl
    };
    // The steering code bounds these offsets with masks (see `verifier::bounded_index`).
    if l3 > 0xff || l4 > 0x1ff {
        return Err(());
    }
    h.l4 = l4 as u32;
    if h.later_fragment != 0 {
        return Ok(());
    }
    match h.proto as u8 {
        IPPROTO_TCP => {
            read(ctx, buf, l4, 14)?;
            h.src_port = be16(buf, 0) as u32;
            h.dst_port = be16(buf, 2) as u32;
            h.tcp_flags = buf[13] as u32;
        }
        IPPROTO_UDP => {
            read(ctx, buf, l4, 4)?;
            h.src_port = be16(buf, 0) as u32;
            h.dst_port = be16(buf, 2) as u32;
        }
        _ => {}
    }
    Ok(())
}

/// Fills `f` with the TCP flow `h` belongs to: the packet's own (TCP), or the one an
/// ICMP "fragmentation needed" (IPv4 type 3 code 4) or ICMPv6 "packet too big" (type
/// 2) quotes (a packet we sent, VIP → client). `false` for anything else.
#[inline(always)]
pub fn of(ctx: &XdpContext, h: &SteerHeaders, f: &mut SteerFlow, buf: &mut Buf) -> bool {
    if h.later_fragment != 0 {
        return false;
    }
    match h.proto as u8 {
        IPPROTO_TCP => {
            let flags = h.tcp_flags as u8 & (TCP_SYN | TCP_ACK | TCP_RST);
            f.client = h.src;
            f.vip = h.dst;
            f.client_port = h.src_port;
            f.vip_port = h.dst_port;
            f.syn = (flags == TCP_SYN) as u32;
            f.pure_ack = (flags == TCP_ACK) as u32;
            true
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => quoted(ctx, h, f, buf).is_ok(),
        _ => false,
    }
}

#[inline(always)]
fn quoted(ctx: &XdpContext, h: &SteerHeaders, f: &mut SteerFlow, buf: &mut Buf) -> Result<(), ()> {
    // Read back from the scratch map: bounded again where the verifier sees it.
    let l4 = verifier::bounded_index(h.l4 as usize, 0x1ff);
    read(ctx, buf, l4, 2)?;
    let (icmp_type, icmp_code) = (buf[0], buf[1]);
    let quoted = l4 + 8;
    let ports_at = if h.v6 != 0 {
        read(ctx, buf, quoted, 40)?;
        if icmp_type != 2 || buf[0] >> 4 != 6 || buf[6] != IPPROTO_TCP {
            return Err(());
        }
        set_v6(&mut f.vip, buf, 8);
        set_v6(&mut f.client, buf, 24);
        quoted + 40
    } else {
        read(ctx, buf, quoted, 20)?;
        if icmp_type != 3 || icmp_code != 4 || buf[0] >> 4 != 4 || buf[9] != IPPROTO_TCP {
            return Err(());
        }
        set_v4(&mut f.vip, buf, 12);
        set_v4(&mut f.client, buf, 16);
        quoted + (buf[0] & 0x0f) as usize * 4
    };
    read(ctx, buf, ports_at, 4)?;
    f.vip_port = be16(buf, 0) as u32;
    f.client_port = be16(buf, 2) as u32;
    f.syn = 0;
    f.pure_ack = 0;
    Ok(())
}
