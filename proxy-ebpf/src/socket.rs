//! Kernel socket lookups from XDP: which local socket (listener, connection, UDP socket)
//! a packet is for. A found socket holds a reference; `Socket` releases it when dropped.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN, bpf_sock, bpf_sock_tuple},
    helpers::generated,
    programs::XdpContext,
};

use proxy_common::{AddrKey, FAMILY_V6};

use crate::parse::{Addr, IpPacket};

/// A referenced kernel socket (released on drop, as the verifier requires).
pub struct Socket(*mut bpf_sock);

impl Socket {
    /// Is it a listening socket (rather than a connection, request or time-wait socket)?
    #[inline(always)]
    pub fn is_listener(&self) -> bool {
        // SAFETY: a non-null socket returned by a lookup helper; `state` is readable
        // through any socket pointer.
        unsafe { (*self.0).state == BPF_TCP_LISTEN }
    }

    /// The raw pointer, for the SYN cookie helpers.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut core::ffi::c_void {
        self.0 as *mut core::ffi::c_void
    }

    /// Is it a UDP socket connected to a peer?
    #[inline(always)]
    pub fn is_connected(&self) -> bool {
        // SAFETY: as in `is_listener`; `dst_port` is readable through any socket pointer.
        unsafe { (*self.0).dst_port != 0 }
    }
}

impl Drop for Socket {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: releases the reference taken by the lookup that made this `Socket`.
        unsafe { generated::bpf_sk_release(self.0 as *mut core::ffi::c_void) };
    }
}

/// The tuple as the packet carries it (source = the remote end), and its length.
#[inline(always)]
fn tuple(packet: &IpPacket) -> Option<([u8; 36], u32)> {
    let mut t = [0u8; 36];
    let sport = packet.src_port.to_be_bytes();
    let dport = packet.dst_port()?.to_be_bytes();
    let len = match (&packet.src, &packet.dst) {
        (Addr::V4(s), Addr::V4(d)) => {
            t[0..4].copy_from_slice(s);
            t[4..8].copy_from_slice(d);
            t[8..10].copy_from_slice(&sport);
            t[10..12].copy_from_slice(&dport);
            12
        }
        (Addr::V6(s), Addr::V6(d)) => {
            t[0..16].copy_from_slice(s);
            t[16..32].copy_from_slice(d);
            t[32..34].copy_from_slice(&sport);
            t[34..36].copy_from_slice(&dport);
            36
        }
        _ => return None,
    };
    Some((t, len))
}

/// The TCP socket this packet belongs to: a connection (or request / time-wait socket)
/// when one matches the 4-tuple, else the listener on the destination.
#[inline(always)]
pub fn lookup_tcp(ctx: &XdpContext, packet: &IpPacket) -> Option<Socket> {
    let (mut t, len) = tuple(packet)?;
    skc_lookup_tcp(ctx, t.as_mut_ptr(), len)
}

/// The TCP socket for the flow `remote:remote_port → local:local_port` (as
/// [`lookup_tcp`]): for a flow an ICMP error or an encapsulated packet is about.
#[inline(always)]
pub fn lookup_tcp_flow(
    ctx: &XdpContext,
    remote: &AddrKey,
    remote_port: u16,
    local: &AddrKey,
    local_port: u16,
) -> Option<Socket> {
    let mut t = [0u8; 36];
    let len = if remote.family == FAMILY_V6 {
        t[0..16].copy_from_slice(&remote.addr);
        t[16..32].copy_from_slice(&local.addr);
        t[32..34].copy_from_slice(&remote_port.to_be_bytes());
        t[34..36].copy_from_slice(&local_port.to_be_bytes());
        36
    } else {
        t[0..4].copy_from_slice(&remote.addr[..4]);
        t[4..8].copy_from_slice(&local.addr[..4]);
        t[8..10].copy_from_slice(&remote_port.to_be_bytes());
        t[10..12].copy_from_slice(&local_port.to_be_bytes());
        12
    };
    skc_lookup_tcp(ctx, t.as_mut_ptr(), len)
}

/// The TCP socket for a tuple laid out as the kernel's `bpf_sock_tuple` (`len`: 12
/// bytes for IPv4, 36 for IPv6), as [`lookup_tcp`]: the SYN cookie stage's tuple sits
/// in its scratch, ready for the helper.
#[inline(always)]
pub fn lookup_tcp_tuple(ctx: &XdpContext, t: &mut [u32; 9], len: u32) -> Option<Socket> {
    skc_lookup_tcp(ctx, t.as_mut_ptr() as *mut u8, len)
}

#[inline(always)]
fn skc_lookup_tcp(ctx: &XdpContext, t: *mut u8, len: u32) -> Option<Socket> {
    // SAFETY: `t` points at 36 bytes (all callers) laid out as the kernel's
    // `bpf_sock_tuple`, of which the helper reads `len`; the context pointer is the
    // program's own.
    let sk = unsafe {
        generated::bpf_skc_lookup_tcp(
            ctx.ctx as *mut core::ffi::c_void,
            t as *mut bpf_sock_tuple,
            len,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    // Not `then_some`: it builds (and drops, releasing null) a `Socket` eagerly, which
    // the verifier rejects (see `verifier.rs`).
    if sk.is_null() { None } else { Some(Socket(sk)) }
}

/// The UDP socket bound where this datagram is going, if any.
#[inline(always)]
pub fn lookup_udp(ctx: &XdpContext, packet: &IpPacket) -> Option<Socket> {
    let (mut t, len) = tuple(packet)?;
    // SAFETY: as in `lookup_tcp`.
    let sk = unsafe {
        generated::bpf_sk_lookup_udp(
            ctx.ctx as *mut core::ffi::c_void,
            t.as_mut_ptr() as *mut bpf_sock_tuple,
            len,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() { None } else { Some(Socket(sk)) }
}
