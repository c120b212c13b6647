//! What the host serves: the daemon's listeners (with their SYN cookie state) and the
//! service filter that drops traffic to ports nobody serves.

use aya_ebpf::programs::XdpContext;
use proxy_common::{
    AddrKey, BOUND_TCP, COOKIES_ON, FAMILY_V6, ListenerCounters, ListenerKey, ListenerState,
    PortListeners, Reason, SERVED_TCP, SERVED_UDP, TAIL_COOKIES, TAIL_SERVICES, XdpConfig,
};

use crate::cookies;
use crate::handoff::{self, Segment};
use crate::maps::{LISTENER_COUNTERS, LISTENERS, SERVED_PORTS, SERVICE_ADDRS, WILDCARD_LISTENERS};
use crate::parse::{IPPROTO_TCP, IPPROTO_UDP, IpPacket, TCP_ACK, TCP_RST, TCP_SYN};
use crate::socket;

/// [`next_program`]'s "no program follows".
pub const NO_TAIL: u32 = u32::MAX;

#[inline(always)]
fn served(table: u32, port: u16) -> bool {
    SERVED_PORTS
        .get(table)
        .is_some_and(|set| set.contains(port))
}

/// The daemon's TCP listener for `addr:port`: bound to the address exactly (looked
/// up in LISTENERS only for ports that have such a listener), else to the wildcard
/// of its family (one array read).
#[inline(always)]
fn listener_at(addr: AddrKey, port: u16) -> Option<ListenerState> {
    let v6 = addr.family == FAMILY_V6;
    let key = ListenerKey {
        addr,
        port: port as u32,
    };
    // SAFETY: the value is copied out at once; userspace may replace it
    // concurrently, which only makes this packet see the old or the new state.
    if served(BOUND_TCP, port)
        && let Some(state) = unsafe { LISTENERS.get(key) }
    {
        return Some(*state);
    }
    let wildcards = WILDCARD_LISTENERS.get(port as u32)?;
    PortListeners::state(if v6 { wildcards.v6 } else { wildcards.v4 })
}

#[inline(always)]
fn count(state: &ListenerState, f: impl FnOnce(&mut ListenerCounters)) {
    if let Some(counters) = LISTENER_COUNTERS.get_ptr_mut(state.index) {
        // SAFETY: a per-CPU slot, valid for the program's run, written only by this CPU.
        f(unsafe { &mut *counters });
    }
}

/// A SYN steered to another node still counts towards this node's listener SYN rate:
/// `auto` cookies decide from the SYN rate the router hands this node, as without
/// steering.
#[inline(always)]
pub fn count_steered_syn(vip: AddrKey, port: u16, config: &XdpConfig) {
    if config.syn_cookie_listeners == 0 || !served(SERVED_TCP, port) {
        return;
    }
    if let Some(state) = listener_at(vip, port) {
        count(&state, |c| c.syns += 1);
    }
}

/// The program `proxy_xdp` passes this packet on to (already past the lists and
/// limits), as a SERVICES index, or [`NO_TAIL`]. Cheap tests only: flags in the
/// config and the served-port sets. The service filter passes every served port, so
/// TCP to one goes straight to the SYN cookie stage when that concerns it (the
/// caller hands the segment over, see `handoff.rs`), and to no program otherwise.
#[inline(always)]
pub fn next_program(packet: &IpPacket, config: &XdpConfig) -> u32 {
    // Later fragments and other protocols carry no port: the filter passes them.
    let Some(port) = packet.dst_port() else {
        return NO_TAIL;
    };
    let table = match packet.proto {
        IPPROTO_TCP => SERVED_TCP,
        IPPROTO_UDP => SERVED_UDP,
        _ => return NO_TAIL,
    };
    if served(table, port) {
        if table == SERVED_TCP && cookie_stage_concerns_flags(packet.tcp_flags, config) {
            return TAIL_COOKIES;
        }
        return NO_TAIL;
    }
    if config.service_filter != 0 {
        TAIL_SERVICES
    } else {
        NO_TAIL
    }
}

/// Whether the steering program hands a local TCP segment to the services program to `port` with these flags (the steering program's
/// packets: a steered VIP's listeners, never a fragment).
#[inline(always)]
pub fn concerns_tcp(port: u16, tcp_flags: u8, config: &XdpConfig) -> bool {
    if config.service_filter != 0 {
        return true;
    }
    if !served(SERVED_TCP, port) {
        return false;
    }
    let syn = tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let ack_only = tcp_flags & (TCP_ACK | TCP_SYN | TCP_RST) == TCP_ACK;
    (syn && config.syn_cookie_listeners != 0) || (ack_only && config.syn_cookies_active != 0)
}

/// Does the SYN cookie stage concern this packet (past the service filter)?
#[inline(always)]
pub fn cookie_stage_concerns(packet: &IpPacket, config: &XdpConfig) -> bool {
    let Some(port) = packet.dst_port() else {
        return false;
    };
    packet.proto == IPPROTO_TCP
        && served(SERVED_TCP, port)
        && cookie_stage_concerns_flags(packet.tcp_flags, config)
}

/// [`cookie_stage_concerns`] for a TCP segment to a served port: SYNs are counted for
/// every listener with cookies on or auto; ACKs are checked only while some listener
/// answers with cookies.
#[inline(always)]
fn cookie_stage_concerns_flags(flags: u8, config: &XdpConfig) -> bool {
    let syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let ack_only = flags & (TCP_ACK | TCP_SYN | TCP_RST) == TCP_ACK;
    (syn && config.syn_cookie_listeners != 0) || (ack_only && config.syn_cookies_active != 0)
}

/// Hands a TCP segment the SYN cookie stage may concern over to it (`handoff.rs`),
/// before the caller decides whether to call the stage: while the offsets are exact.
#[inline(always)]
pub fn prepare_cookie_stage(packet: &IpPacket, config: &XdpConfig) {
    if packet.proto == IPPROTO_TCP
        && !packet.later_fragment
        && cookie_stage_concerns_flags(packet.tcp_flags, config)
    {
        handoff::save(packet);
    }
}

/// The SYN cookie stage for the TCP segment handed over in `seg` (to a served port;
/// last in the policy order): SYNs are answered with a cookie SYN-ACK, ACKs that
/// would create a connection from a cookie are checked. Everything else (and every
/// listener with cookies off) passes.
#[inline(always)]
pub fn syn_cookies(ctx: &XdpContext, seg: &mut Segment, config: &XdpConfig) -> Reason {
    let Some(state) = listener_at(seg.dst(), seg.dst_port()) else {
        return Reason::Passed;
    };
    let flags = seg.flags();
    let counters = LISTENER_COUNTERS.get_ptr_mut(state.index);
    // SAFETY: a per-CPU slot, valid for the program's run, written only by this CPU.
    let counters = counters.map(|c| unsafe { &mut *c });
    if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        let sent = flags & TCP_RST == 0 && state.cookies == COOKIES_ON && answer(ctx, seg, config);
        if let Some(c) = counters {
            c.syns += 1;
            c.cookies_sent += sent as u64;
        }
        return if sent {
            Reason::SynCookieSent
        } else {
            Reason::Passed
        };
    }
    if state.cookies != COOKIES_ON || flags & (TCP_ACK | TCP_SYN | TCP_RST) != TCP_ACK {
        return Reason::Passed;
    }
    let len = seg.tuple_len();
    let Some(sk) = socket::lookup_tcp_tuple(ctx, &mut seg.s.tuple, len) else {
        return Reason::Passed;
    };
    // A connection (or a request socket from before cookies were on) exists: as today.
    if !sk.is_listener() {
        return Reason::Passed;
    }
    let ok = cookies::ack_has_valid_cookie(ctx, seg.l3(), seg.l4(), seg.v6(), &sk);
    if let Some(c) = counters {
        if ok {
            c.cookie_acks_ok += 1;
        } else {
            c.cookie_acks_bad += 1;
        }
    }
    if ok {
        Reason::SynCookieAckOk
    } else {
        Reason::SynCookieAckBad
    }
}

/// Answers the SYN in `seg` with a cookie when its flow meets the listener itself.
#[inline(always)]
fn answer(ctx: &XdpContext, seg: &mut Segment, config: &XdpConfig) -> bool {
    let len = seg.tuple_len();
    let Some(sk) = socket::lookup_tcp_tuple(ctx, &mut seg.s.tuple, len) else {
        return false;
    };
    // A SYN matching a connection or a time-wait socket is the kernel's to handle
    // (it may reuse a time-wait socket).
    sk.is_listener() && cookies::answer_syn(ctx, seg, &sk, config).is_ok()
}

/// The service filter: TCP and UDP to one of the host's service addresses at a port
/// that is neither served nor allowed are dropped, except replies to the host's own
/// sockets (backend connections, health checks, resolvers). Other protocols (ICMP,
/// ICMPv6 with neighbour discovery and path MTU messages) always pass.
#[inline(always)]
pub fn service_filter(ctx: &XdpContext, packet: &IpPacket, config: &XdpConfig) -> Reason {
    if config.service_filter == 0 || packet.later_fragment {
        return Reason::Passed;
    }
    let Some(port) = packet.dst_port() else {
        return Reason::Passed;
    };
    let table = match packet.proto {
        IPPROTO_TCP => SERVED_TCP,
        IPPROTO_UDP => SERVED_UDP,
        _ => return Reason::Passed,
    };
    if served(table, port) {
        return Reason::Passed;
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { SERVICE_ADDRS.get(packet.dst.key()) }.is_none() {
        return Reason::Passed;
    }
    if packet.proto == IPPROTO_TCP {
        // A new connection to an unserved port never passes; other segments pass when
        // they belong to a connection of this host's (a listener is not one).
        if !packet.tcp_syn
            && let Some(sk) = socket::lookup_tcp(ctx, packet)
            && !sk.is_listener()
        {
            return Reason::Passed;
        }
    } else if let Some(sk) = socket::lookup_udp(ctx, packet) {
        let ephemeral =
            port as u32 >= config.ephemeral_first && port as u32 <= config.ephemeral_last;
        if ephemeral || sk.is_connected() {
            return Reason::Passed;
        }
    }
    Reason::PortClosed
}
