//! What the host serves: the daemon's listeners (with their SYN cookie state) and the
//! service filter that drops traffic to ports nobody serves.

use aya_ebpf::programs::XdpContext;
use proxy_common::{
    AddrKey, COOKIES_ON, ListenerCounters, ListenerKey, ListenerState, Reason, SERVED_TCP,
    SERVED_UDP, XdpConfig,
};

use crate::cookies;
use crate::maps::{LISTENER_COUNTERS, LISTENERS, SERVED_PORTS, SERVICE_ADDRS};
use crate::parse::{IPPROTO_TCP, IPPROTO_UDP, IpPacket, TCP_ACK, TCP_RST, TCP_SYN};
use crate::socket;

#[inline(always)]
fn served(table: u32, port: u16) -> bool {
    SERVED_PORTS
        .get(table)
        .is_some_and(|set| set.contains(port))
}

/// The daemon's listener this TCP segment is addressed to: bound to the destination
/// address exactly, else to the wildcard of its family.
#[inline(always)]
fn listener(packet: &IpPacket) -> Option<ListenerState> {
    let port = packet.dst_port()?;
    if packet.proto != IPPROTO_TCP {
        return None;
    }
    listener_at(packet.dst.key(), port)
}

/// The daemon's TCP listener for `addr:port` (exact, else the wildcard).
#[inline(always)]
fn listener_at(addr: AddrKey, port: u16) -> Option<ListenerState> {
    if !served(SERVED_TCP, port) {
        return None;
    }
    let mut key = ListenerKey {
        addr,
        port: port as u32,
    };
    // SAFETY: the value is copied out at once; userspace may replace it concurrently,
    // which only makes this packet see the old or the new state.
    if let Some(state) = unsafe { LISTENERS.get(key) } {
        return Some(*state);
    }
    key.addr.addr = [0; 16];
    // SAFETY: as above.
    unsafe { LISTENERS.get(key) }.copied()
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
    if config.syn_cookie_listeners == 0 {
        return;
    }
    if let Some(state) = listener_at(vip, port) {
        count(&state, |c| c.syns += 1);
    }
}

/// Should `proxy_xdp` pass this packet (already past the lists and limits) on to the
/// services program? Cheap tests only: flags in the config and the served-port sets.
#[inline(always)]
pub fn concerns(packet: &IpPacket, config: &XdpConfig) -> bool {
    if packet.later_fragment {
        return false;
    }
    let filtered =
        config.service_filter != 0 && (packet.proto == IPPROTO_TCP || packet.proto == IPPROTO_UDP);
    filtered || cookie_stage_concerns(packet, config)
}

/// [`concerns`] for a TCP segment to `port` with these flags (the steering program's
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
    if packet.proto != IPPROTO_TCP || !served(SERVED_TCP, port) {
        return false;
    }
    // SYNs are counted for every listener with cookies on or auto; ACKs are checked
    // only while some listener answers with cookies.
    let ack_only = packet.tcp_flags & (TCP_ACK | TCP_SYN | TCP_RST) == TCP_ACK;
    (packet.tcp_syn && config.syn_cookie_listeners != 0)
        || (ack_only && config.syn_cookies_active != 0)
}

/// The SYN cookie stage for TCP to a listener (last in the policy order): SYNs are
/// answered with a cookie SYN-ACK, ACKs that would create a connection from a cookie
/// are checked. Everything else (and every listener with cookies off) passes.
#[inline(always)]
pub fn syn_cookies(ctx: &XdpContext, packet: &IpPacket, config: &XdpConfig) -> Reason {
    let Some(state) = listener(packet) else {
        return Reason::Passed;
    };
    let flags = packet.tcp_flags;
    if packet.tcp_syn {
        count(&state, |c| c.syns += 1);
        if state.cookies != COOKIES_ON || flags & TCP_RST != 0 {
            return Reason::Passed;
        }
        let Some(sk) = socket::lookup_tcp(ctx, packet) else {
            return Reason::Passed;
        };
        // A SYN matching a time-wait socket is the kernel's to handle (it may reuse it).
        if !sk.is_listener() {
            return Reason::Passed;
        }
        if cookies::answer_syn(ctx, packet, &sk, config).is_err() {
            return Reason::Passed;
        }
        count(&state, |c| c.cookies_sent += 1);
        return Reason::SynCookieSent;
    }
    if state.cookies != COOKIES_ON || flags & (TCP_ACK | TCP_SYN | TCP_RST) != TCP_ACK {
        return Reason::Passed;
    }
    let Some(sk) = socket::lookup_tcp(ctx, packet) else {
        return Reason::Passed;
    };
    // A connection (or a request socket from before cookies were on) exists: as today.
    if !sk.is_listener() {
        return Reason::Passed;
    }
    if cookies::ack_has_valid_cookie(ctx, packet, &sk) {
        count(&state, |c| c.cookie_acks_ok += 1);
        Reason::SynCookieAckOk
    } else {
        count(&state, |c| c.cookie_acks_bad += 1);
        Reason::SynCookieAckBad
    }
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
