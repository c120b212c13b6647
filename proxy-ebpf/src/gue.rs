//! GUE between fleet members (`proxy_common::steering::gue`): reading a member's GUE
//! header, encapsulating a packet for another member (XDP_TX, or XDP_REDIRECT when
//! the member is reached through another interface), decapsulating one for the local
//! stack, and learning how to reach a member from its probes.
//!
//! What a steered frame looks like (IPv4 outer; IPv6 has a 40-byte header and a
//! 16-byte next hop):
//!
//! ```text
//! Ethernet (to the member, or the router towards it) | IPv4 us → member, DF, TTL 64
//! | UDP flow-hash port → member's port, checksum 0 | GUE v0, C=0, Hlen 2, proto 4/41
//! | 0x5053, hops, next-hop family (0/4/6), next hop | the client's IP packet
//! ```
//!
//! The next hop is the second chance the receiver sends the packet on to when it has
//! no socket for it; `hops` counts the encapsulations so far (at most
//! `STEER_MAX_HOPS`), so no packet loops or travels further.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_coarse_ns, generated},
    programs::XdpContext,
};
use proxy_common::{
    AddrKey, FAMILY_V4, FAMILY_V6,
    steering::{STEER_HEADER_ROOM, SteerEncap, SteerHeaders, gue, outer_source_port},
};

use crate::flow::{self, Buf};
use crate::frame::{checksum, csum, store};
use crate::maps::STEER_PEERS;
use crate::parse::{ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_UDP};
use crate::verifier;

const TTL: u8 = 64;

/// A member's GUE message, as read from the frame.
pub struct Message {
    /// A control message (a probe): nothing inside to deliver.
    pub control: bool,
    /// Where the inner IP packet starts in the frame.
    pub inner_l3: usize,
    pub inner_v6: bool,
    /// Encapsulations so far (1 from the entry node, 2 after a second chance).
    pub hops: u32,
}

/// Reads the GUE header (and our private data) of a UDP datagram from a member whose
/// outer headers are `outer`; the next hop it names goes into `next` (family 0:
/// none, the last hop). Anything but our own format is an error: the caller drops it.
#[inline(always)]
pub fn read(
    ctx: &XdpContext,
    outer: &SteerHeaders,
    buf: &mut Buf,
    next: &mut AddrKey,
) -> Result<Message, ()> {
    let outer_v6 = outer.v6 != 0;
    // Our outer headers carry no IPv4 options.
    let ip_len = if outer_v6 { 40 } else { 20 };
    if outer.l4 != outer.l3 + ip_len || outer.proto != IPPROTO_UDP as u32 {
        return Err(());
    }
    // Read back from the scratch map: bounded again where the verifier sees it.
    let at = verifier::bounded_index(outer.l4 as usize, 0x1ff) + gue::UDP_LEN;
    let mut message = Message {
        control: false,
        inner_l3: 0,
        inner_v6: false,
        hops: 0,
    };
    *next = AddrKey::default();
    flow::read(ctx, buf, at, 4)?;
    if buf[0] >> 6 != 0 {
        return Err(());
    }
    if buf[0] & gue::CONTROL != 0 {
        message.control = true;
        return Ok(message);
    }
    let private_len = if outer_v6 {
        gue::PRIVATE_LEN_V6
    } else {
        gue::PRIVATE_LEN_V4
    };
    if (buf[0] & 0x1f) as usize * 4 != private_len {
        return Err(());
    }
    message.inner_v6 = match buf[1] {
        gue::PROTO_IPV4 => false,
        gue::PROTO_IPV6 => true,
        _ => return Err(()),
    };
    flow::read(ctx, buf, at + gue::HEADER_LEN, private_len as u32)?;
    if u16::from_be_bytes([buf[0], buf[1]]) != gue::PRIVATE_TYPE {
        return Err(());
    }
    message.hops = buf[2] as u32;
    match (buf[3] as u32, outer_v6) {
        (0, _) => {}
        (FAMILY_V4, false) => {
            next.family = FAMILY_V4;
            next.addr[..4].copy_from_slice(&buf[4..8]);
        }
        (FAMILY_V6, true) => {
            next.family = FAMILY_V6;
            next.addr.copy_from_slice(&buf[4..20]);
        }
        _ => return Err(()),
    }
    message.inner_l3 = at + gue::HEADER_LEN + private_len;
    Ok(message)
}

/// Makes the frame `Ethernet | outer IP | UDP | GUE | private data | the IP packet at
/// inner_l3...` for the member at `e.to` (what was between the Ethernet header and
/// `inner_l3`, VLAN tags or a previous encapsulation, goes), and returns the action
/// that sends it; the headers are built in `header` first. `Err` when the member
/// cannot be reached yet or the frame would be too big for the interface; the frame
/// may then have been changed (drop it).
/// Out of line: see "Out of line" in `verifier.rs`.
#[inline(never)]
pub fn encapsulate(
    ctx: &XdpContext,
    e: &SteerEncap,
    header: &mut [u8; STEER_HEADER_ROOM],
) -> Result<u32, ()> {
    let peer = &e.peer;
    if peer.ifindex == 0 || e.to.family != e.from.family || e.next.family & !e.from.family != 0 {
        return Err(());
    }
    let outer_v6 = e.from.family == FAMILY_V6;
    let (ip_len, private_len) = if outer_v6 {
        (40, gue::PRIVATE_LEN_V6)
    } else {
        (20, gue::PRIVATE_LEN_V4)
    };
    let inner_l3 = e.inner_l3 as usize;
    let frame_len = ctx.data_end() - ctx.data();
    if inner_l3 < ETH_HLEN || inner_l3 > frame_len || inner_l3 > 0xff {
        return Err(());
    }
    let inner_len = frame_len - inner_l3;
    let header_len = ETH_HLEN + ip_len + gue::UDP_LEN + gue::HEADER_LEN + private_len;
    // Bytes the frame grows by at the front (negative: it shrinks).
    let grow = header_len as i32 - inner_l3 as i32;
    let mut mtu: u32 = 0;
    // SAFETY: the helper reads the program's context and writes `mtu`.
    let fits =
        unsafe { generated::bpf_check_mtu(ctx.ctx as *mut _, peer.ifindex, &mut mtu, grow, 0) };
    if fits != 0 {
        return Err(());
    }
    adjust_head(ctx, -grow)?;

    let h = header;
    *h = [0u8; STEER_HEADER_ROOM];
    h[0..6].copy_from_slice(&peer.dmac);
    h[6..12].copy_from_slice(&peer.smac);
    let udp_len = (gue::UDP_LEN + gue::HEADER_LEN + private_len + inner_len) as u16;
    if outer_v6 {
        h[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        h[14] = 0x60;
        h[18..20].copy_from_slice(&udp_len.to_be_bytes());
        h[20] = IPPROTO_UDP;
        h[21] = TTL;
        h[22..38].copy_from_slice(&e.from.addr);
        h[38..54].copy_from_slice(&e.to.addr);
    } else {
        h[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        h[14] = 0x45;
        h[16..18].copy_from_slice(&(udp_len + 20).to_be_bytes());
        h[20] = 0x40; // don't fragment
        h[22] = TTL;
        h[23] = IPPROTO_UDP;
        h[26..30].copy_from_slice(&e.from.addr[..4]);
        h[30..34].copy_from_slice(&e.to.addr[..4]);
        let ip: &mut [u8; 20] = (&mut h[14..34]).try_into().map_err(|_| ())?;
        let sum = checksum(csum(ip, 0)?);
        h[24..26].copy_from_slice(&sum);
    }
    let udp = ETH_HLEN + ip_len;
    h[udp..udp + 2].copy_from_slice(&outer_source_port(e.hash).to_be_bytes());
    h[udp + 2..udp + 4].copy_from_slice(&(peer.port as u16).to_be_bytes());
    h[udp + 4..udp + 6].copy_from_slice(&udp_len.to_be_bytes());
    // UDP checksum 0: allowed for IPv4, and for IPv6 tunnels (RFC 6935/6936); only
    // our XDP program ever reads these datagrams.
    let g = udp + gue::UDP_LEN;
    h[g] = (private_len / 4) as u8;
    h[g + 1] = if e.inner_v6 != 0 {
        gue::PROTO_IPV6
    } else {
        gue::PROTO_IPV4
    };
    h[g + 4..g + 6].copy_from_slice(&gue::PRIVATE_TYPE.to_be_bytes());
    h[g + 6] = e.hops as u8;
    h[g + 7] = e.next.family as u8;
    if outer_v6 {
        h[70..86].copy_from_slice(&e.next.addr);
        let all: &mut [u8; ETH_HLEN + gue::OVERHEAD_V6] = (&mut h[..ETH_HLEN + gue::OVERHEAD_V6])
            .try_into()
            .map_err(|_| ())?;
        store(ctx, 0, all)?;
    } else {
        h[50..54].copy_from_slice(&e.next.addr[..4]);
        let all: &mut [u8; ETH_HLEN + gue::OVERHEAD_V4] = (&mut h[..ETH_HLEN + gue::OVERHEAD_V4])
            .try_into()
            .map_err(|_| ())?;
        store(ctx, 0, all)?;
    }
    if peer.ifindex == ctx.ingress_ifindex() as u32 {
        Ok(xdp_action::XDP_TX)
    } else {
        // SAFETY: a BPF helper taking plain values; it returns the XDP action.
        Ok(unsafe { generated::bpf_redirect(peer.ifindex, 0) } as u32)
    }
}

/// Makes the frame `Ethernet | the IP packet at inner_l3...` (the MACs kept: the
/// destination is this node, so the stack takes it).
#[inline(always)]
pub fn decapsulate(
    ctx: &XdpContext,
    inner_l3: usize,
    inner_v6: bool,
    buf: &mut Buf,
) -> Result<(), ()> {
    if !(ETH_HLEN..=0xff).contains(&inner_l3) {
        return Err(());
    }
    flow::read(ctx, buf, 0, 12)?;
    let mut macs = [0u8; 12];
    macs.copy_from_slice(&buf[..12]);
    adjust_head(ctx, (inner_l3 - ETH_HLEN) as i32)?;
    let mut eth = [0u8; 14];
    eth[..12].copy_from_slice(&macs);
    let ether_type = if inner_v6 { ETH_P_IPV6 } else { ETH_P_IPV4 };
    eth[12..14].copy_from_slice(&ether_type.to_be_bytes());
    store(ctx, 0, &mut eth)
}

/// A member's probe arrived: it is reached by answering its frame (its source MAC,
/// our MAC, this interface). Only members userspace listed are learned.
#[inline(always)]
pub fn learn(ctx: &XdpContext, member: &AddrKey, buf: &mut Buf) {
    if flow::read(ctx, buf, 0, 12).is_err() {
        return;
    }
    let macs = &buf[..12];
    let Some(peer) = STEER_PEERS.get_ptr_mut(member) else {
        return;
    };
    let mut dmac = [0u8; 6];
    dmac.copy_from_slice(&macs[6..]);
    let mut smac = [0u8; 6];
    smac.copy_from_slice(&macs[..6]);
    // SAFETY: a map value, valid for the program's run; userspace never writes a
    // member's entry after inserting it (a concurrent probe on another CPU writes the
    // same values).
    unsafe {
        (*peer).ifindex = ctx.ingress_ifindex() as u32;
        (*peer).dmac = dmac;
        (*peer).smac = smac;
        (*peer).learned_ns = bpf_ktime_get_coarse_ns();
    }
}

/// Moves the frame's start by `delta` bytes (negative: room in front).
#[inline(always)]
fn adjust_head(ctx: &XdpContext, delta: i32) -> Result<(), ()> {
    if delta == 0 {
        return Ok(());
    }
    // SAFETY: the helper checks the new start against the frame's headroom and end.
    let r = unsafe { generated::bpf_xdp_adjust_head(ctx.ctx, delta) };
    if r == 0 { Ok(()) } else { Err(()) }
}
