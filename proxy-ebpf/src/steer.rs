//! Connection steering: every node of a fleet sends each packet for a steered VIP to
//! the node that owns its connection, whichever node the router handed it to.
//!
//! At the node the router chose (the entry): a packet whose flow has a socket here
//! (a connection, a request or a time-wait socket) is handled here. Otherwise the
//! flow's row of the fleet's table decides: a SYN goes to the row's primary (handled
//! here when that is this node); any other packet goes to the primary with the
//! secondary as its second chance, or, when this node is the primary, straight to
//! the secondary (unless it is an ACK carrying this node's SYN cookie). An ICMP
//! "fragmentation needed" / "packet too big" about a flow goes the same way, by the
//! flow it quotes.
//!
//! At a node that receives a member's GUE packet: it is decapsulated and handed to
//! the stack when this node has a socket for it, when it is a SYN (this node is the
//! primary), when it is an ACK carrying a SYN cookie of this node, and when it
//! reached its last hop (counted `unowned`: the stack answers it as without
//! steering); otherwise it goes on to its second chance.
//!
//! The headers, the flow and the encapsulation's parameters live in the per-CPU
//! STEER_SCRATCH, not on the stack (see "STEER_SCRATCH" in `verifier.rs`).

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use proxy_common::{
    AddrKey, ListenerKey, Reason, XdpConfig,
    steering::{
        STEER_MAX_HOPS, STEER_NO_MEMBER, STEER_ROWS, SteerFlow, SteerScratch, SteerSlot,
        SteerState, flow_hash, row_of,
    },
};

use crate::cookies;
use crate::flow;
use crate::gue;
use crate::maps::{STEER_PEERS, STEER_SCRATCH, STEER_SLOTS, STEER_STATE, STEER_VIPS};
use crate::parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IpPacket};
use crate::services;
use crate::socket;
use crate::verifier;

/// What became of a packet.
pub enum Outcome {
    /// Handled here as without steering; `true`: the service filter or the SYN
    /// cookie stage concerns it.
    Local(bool),
    /// Counted under this reason, with this XDP action.
    Done(Reason, u32),
}

fn failed() -> Outcome {
    Outcome::Done(Reason::SteerFailed, xdp_action::XDP_DROP)
}

/// Steering on, and this node's identity; `None` while it is off.
#[inline(always)]
pub fn state() -> Option<&'static SteerState> {
    STEER_STATE.get(0).filter(|s| s.enabled != 0)
}

/// Should `proxy_xdp` pass this packet, before the lists and limits, to the steering
/// program? A UDP datagram from a member to this node's GUE port: the entry node
/// applied the lists and limits to its client already, and a member's traffic must
/// not run into per-source rate limits.
#[inline(always)]
pub fn from_member(packet: &IpPacket) -> bool {
    let Some(state) = state() else {
        return false;
    };
    packet.proto == IPPROTO_UDP
        && packet.dst_port() == Some(state.port as u16)
        && packet.dst.key() == state.addr
        // SAFETY: only tested for presence.
        && unsafe { STEER_PEERS.get(packet.src.key()) }.is_some()
}

/// Should `proxy_xdp` pass this packet (past the lists and limits) to the steering
/// program? TCP to a steered VIP and port, or ICMP to a steered VIP.
#[inline(always)]
pub fn concerns(packet: &IpPacket) -> bool {
    if packet.later_fragment || state().is_none() {
        return false;
    }
    let port = match packet.proto {
        IPPROTO_TCP => match packet.dst_port() {
            Some(port) => port,
            None => return false,
        },
        IPPROTO_ICMP | IPPROTO_ICMPV6 => 0,
        _ => return false,
    };
    steered_vip(&packet.dst.key(), port as u32)
}

#[inline(always)]
fn steered_vip(vip: &AddrKey, port: u32) -> bool {
    let key = ListenerKey { addr: *vip, port };
    // SAFETY: only tested for presence.
    unsafe { STEER_VIPS.get(key) }.is_some()
}

/// The per-CPU working memory.
#[inline(always)]
pub fn scratch() -> Option<&'static mut SteerScratch> {
    let ptr = STEER_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a per-CPU map slot: valid for the program's run and only this CPU
    // touches it (the program runs to completion without preemption).
    Some(unsafe { &mut *ptr })
}

/// The steering program's decision for the packet `proxy_xdp` passed on; the
/// headers it read stay in `s.packet`.
#[inline(always)]
pub fn decide(ctx: &XdpContext, config: &XdpConfig, s: &mut SteerScratch) -> Outcome {
    let Some(state) = state() else {
        return Outcome::Local(false);
    };
    if flow::frame(ctx, &mut s.packet, &mut s.read).is_err() {
        return Outcome::Local(false);
    }
    let h = &s.packet;
    let member = h.proto == IPPROTO_UDP as u32
        && h.dst_port == state.port
        && h.dst == state.addr
        // SAFETY: only tested for presence.
        && unsafe { STEER_PEERS.get(h.src) }.is_some();
    if member {
        return received(ctx, s, state);
    }
    match at_entry(ctx, s, state, config) {
        Outcome::Local(_) if s.packet.proto == IPPROTO_TCP as u32 => Outcome::Local(
            services::concerns_tcp(s.packet.dst_port as u16, s.packet.tcp_flags as u8, config),
        ),
        outcome => outcome,
    }
}

/// The steered flow of the packet in `s.packet`, into `s.flow`.
#[inline(always)]
fn steered_flow(ctx: &XdpContext, s: &mut SteerScratch) -> bool {
    flow::of(ctx, &s.packet, &mut s.flow, &mut s.read) && steered_vip(&s.flow.vip, s.flow.vip_port)
}

#[inline(always)]
fn hash(f: &SteerFlow) -> u32 {
    flow_hash(
        &f.client.addr,
        f.client_port as u16,
        &f.vip.addr,
        f.vip_port as u16,
    )
}

/// What this node's stack has for a flow.
#[derive(PartialEq, Eq)]
enum Here {
    /// A connection, request or time-wait socket: the flow is this node's.
    Owned,
    /// No such socket, but the packet is an ACK answering a SYN cookie of this node
    /// (the kernel here makes the connection from it).
    CookieAck,
    Nothing,
}

/// Looks the flow in `s` up in this node's stack (the socket reference is released
/// here); checks a SYN cookie only with `check_cookie` (it costs a hash).
/// Out of line: see "Out of line" in `verifier.rs`.
#[inline(never)]
fn here(ctx: &XdpContext, s: &SteerScratch, check_cookie: bool) -> Here {
    let f = &s.flow;
    let found = socket::lookup_tcp_flow(
        ctx,
        &f.client,
        f.client_port as u16,
        &f.vip,
        f.vip_port as u16,
    );
    let Some(sk) = found else {
        return Here::Nothing;
    };
    if !sk.is_listener() {
        return Here::Owned;
    }
    let h = &s.packet;
    // Bounded where the verifier sees it (`flow::ip` keeps them within the masks).
    let l3 = verifier::bounded_index(h.l3 as usize, 0xff);
    let l4 = verifier::bounded_index(h.l4 as usize, 0x1ff);
    if check_cookie && f.pure_ack != 0 && cookies::ack_has_valid_cookie(ctx, l3, l4, h.v6 != 0, &sk)
    {
        return Here::CookieAck;
    }
    Here::Nothing
}

/// The active table, if one with members is installed.
#[inline(always)]
fn active_slot(state: &SteerState) -> Option<&'static SteerSlot> {
    STEER_SLOTS
        .get(state.active_slot & 1)
        .filter(|slot| slot.member_count > 0)
}

/// The address of member `index` of `slot` (family 0 for none).
#[inline(always)]
fn member(slot: &SteerSlot, index: u16) -> AddrKey {
    match slot.members.get(index as usize) {
        Some(m) if index != STEER_NO_MEMBER => m.addr,
        _ => AddrKey::default(),
    }
}

/// Encapsulates the IP packet at `s.packet.l3` for the member at `s.encap.to`
/// (second chance `s.encap.next`), counted under `reason`. The addresses are written
/// into the scratch by the caller, not kept in registers (see "STEER_SCRATCH" in
/// `verifier.rs`).
#[inline(always)]
fn send(
    ctx: &XdpContext,
    s: &mut SteerScratch,
    state: &SteerState,
    hops: u32,
    reason: Reason,
) -> Outcome {
    let e = &mut s.encap;
    if e.to.family == 0 || e.to == state.addr {
        return failed();
    }
    // SAFETY: the value is copied out at once (the program may learn it concurrently).
    let Some(peer) = (unsafe { STEER_PEERS.get(e.to) }) else {
        return failed();
    };
    e.peer = *peer;
    e.from = state.addr;
    e.inner_l3 = s.packet.l3;
    e.inner_v6 = s.packet.v6;
    e.hops = hops;
    e.hash = hash(&s.flow);
    match gue::encapsulate(ctx, &s.encap, &mut s.header) {
        Ok(action) => Outcome::Done(reason, action),
        Err(()) => failed(),
    }
}

/// A packet the router handed to this node (past the lists and limits).
#[inline(always)]
fn at_entry(
    ctx: &XdpContext,
    s: &mut SteerScratch,
    state: &SteerState,
    config: &XdpConfig,
) -> Outcome {
    if !steered_flow(ctx, s) {
        return Outcome::Local(false);
    }
    let Some(slot) = active_slot(state) else {
        return Outcome::Local(false);
    };
    let Some(row) = verifier::below(row_of(hash(&s.flow)), STEER_ROWS)
        .and_then(|i| slot.rows.get(i))
        .copied()
    else {
        return Outcome::Local(false);
    };
    let me = slot.self_index as u16;
    let primary_here = row.primary == me;
    let syn = s.flow.syn != 0;
    match here(ctx, s, primary_here) {
        Here::Owned | Here::CookieAck => return Outcome::Local(false),
        Here::Nothing if primary_here && syn => return Outcome::Local(false),
        Here::Nothing => {}
    }
    if primary_here {
        if row.secondary == STEER_NO_MEMBER || row.secondary == me {
            return Outcome::Done(Reason::Unowned, xdp_action::XDP_PASS);
        }
        s.encap.to = member(slot, row.secondary);
        s.encap.next = AddrKey::default();
        return send(ctx, s, state, 1, Reason::SecondChance);
    }
    if syn {
        services::count_steered_syn(s.packet.dst, s.packet.dst_port as u16, config);
    }
    // A SYN is the primary's to take; and no second chance back to this node.
    s.encap.next = if row.secondary == me || syn {
        AddrKey::default()
    } else {
        member(slot, row.secondary)
    };
    s.encap.to = member(slot, row.primary);
    send(ctx, s, state, 1, Reason::Steered)
}

/// A UDP datagram from a member to this node's GUE port (headers in `s.packet`).
#[inline(always)]
fn received(ctx: &XdpContext, s: &mut SteerScratch, state: &SteerState) -> Outcome {
    // The next hop goes straight to where a second chance sends it.
    let Ok(message) = gue::read(ctx, &s.packet, &mut s.read, &mut s.encap.to) else {
        return failed();
    };
    if message.control {
        gue::learn(ctx, &s.packet.src, &mut s.read);
        return Outcome::Done(Reason::Passed, xdp_action::XDP_PASS);
    }
    // From here on `s.packet` is the inner packet.
    if flow::ip(
        ctx,
        message.inner_l3,
        message.inner_v6,
        &mut s.packet,
        &mut s.read,
    )
    .is_err()
    {
        return failed();
    }
    let reason = if !steered_flow(ctx, s) || s.flow.syn != 0 {
        Reason::Decapsulated
    } else {
        let next = &s.encap.to;
        let last_hop =
            next.family == 0 || message.hops >= STEER_MAX_HOPS as u32 || *next == state.addr;
        match here(ctx, s, !last_hop) {
            Here::Owned | Here::CookieAck => Reason::Decapsulated,
            Here::Nothing if last_hop => Reason::Unowned,
            Here::Nothing => {
                s.encap.next = AddrKey::default();
                return send(ctx, s, state, message.hops + 1, Reason::SecondChance);
            }
        }
    };
    match gue::decapsulate(ctx, message.inner_l3, message.inner_v6, &mut s.read) {
        Ok(()) => Outcome::Done(reason, xdp_action::XDP_PASS),
        Err(()) => failed(),
    }
}
