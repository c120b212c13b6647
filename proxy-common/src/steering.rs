//! Connection steering across a fleet: the forwarding table every node computes from
//! the fleet's membership, the flow hash that picks a row, and the GUE encapsulation
//! the nodes send each other packets in.
//!
//! A row holds a primary and a secondary member. The XDP program hands a packet to
//! the local stack when the node has a socket for it; otherwise a SYN goes to the
//! row's primary and any other packet to the primary, then from the primary to the
//! secondary ("second chance"), at most two encapsulations in all.

use crate::AddrKey;

/// Rows of the forwarding table: a prime at least 100 × [`STEER_MAX_MEMBERS`], so every
/// member's share stays within about 1 % of its due.
pub const STEER_ROWS: usize = 65537;
/// Members a table holds.
pub const STEER_MAX_MEMBERS: usize = 256;
/// "No member" in a row (a fleet of one has no secondary).
pub const STEER_NO_MEMBER: u16 = u16::MAX;
/// Encapsulations a packet may go through (entry → primary → secondary).
pub const STEER_MAX_HOPS: u8 = 2;

/// One row: indexes into the slot's `members`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerRow {
    pub primary: u16,
    pub secondary: u16,
}

/// A member as the encapsulation needs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerMember {
    /// Where it receives encapsulated packets (family 0: an unused slot).
    pub addr: AddrKey,
    /// Its GUE UDP port (host order).
    pub port: u32,
}

/// One installed table (STEER_SLOTS holds two: the active one and the next). The
/// daemon writes a whole slot at once and only the slot not in use.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SteerSlot {
    /// The fleet's table generation this slot holds.
    pub generation: u64,
    /// This node's index in `members`, or [`STEER_NO_MEMBER`] (u32).
    pub self_index: u32,
    pub member_count: u32,
    pub members: [SteerMember; STEER_MAX_MEMBERS],
    pub rows: [SteerRow; STEER_ROWS],
    pub _pad: u32,
}

/// STEER_STATE's single entry: whether steering runs and what this node is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerState {
    /// Non-zero: steer TCP to the VIPs in STEER_VIPS, decapsulate from STEER_PEERS.
    pub enabled: u32,
    /// This node's GUE port (host order): UDP to it from a member is decapsulated.
    pub port: u32,
    /// The slot of STEER_SLOTS packets are steered by; a slot without members
    /// (nothing installed yet) steers nothing.
    pub active_slot: u32,
    /// This node's own address: the outer source of what it sends.
    pub addr: AddrKey,
}

/// Value of STEER_PEERS (key: a member's address): how to reach it, learned by the
/// program from the member's probes (GUE control messages). Userspace inserts a
/// member zeroed and deletes it when it leaves; it never overwrites what was learned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerPeer {
    /// The interface its probes arrive on (0: not learned yet).
    pub ifindex: u32,
    /// Its GUE UDP port (host order), written by userspace.
    pub port: u32,
    /// Destination MAC for frames to it (its probes' source MAC: the member itself,
    /// or the router in between).
    pub dmac: [u8; 6],
    /// Our MAC on that interface (its probes' destination MAC).
    pub smac: [u8; 6],
    pub _pad: u32,
    /// `bpf_ktime_get_coarse_ns` of the last probe.
    pub learned_ns: u64,
}

/// The steering program's working memory, one per CPU (STEER_SCRATCH; the BPF stack
/// is too small): the headers it read, the flow they name, and what it encapsulates.
/// Only the program touches it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteerScratch {
    pub packet: SteerHeaders,
    pub flow: SteerFlow,
    pub encap: SteerEncap,
    /// The headers an encapsulation writes in front of the packet, built here and
    /// stored into the frame at once: Ethernet, outer IP, UDP, GUE, private data.
    pub header: [u8; STEER_HEADER_ROOM],
    /// Header bytes read from the frame, one read at a time.
    pub read: [u8; STEER_READ_ROOM],
}

/// Room for one read of header bytes (an IPv6 header).
pub const STEER_READ_ROOM: usize = 40;

/// Room for the headers an encapsulation writes (14 + the IPv6 overhead, rounded up).
pub const STEER_HEADER_ROOM: usize = 88;
const _: () = assert!(14 + gue::OVERHEAD_V6 <= STEER_HEADER_ROOM);

/// A packet's headers as the steering program reads them: IPv4 with options, IPv6
/// without extension headers (a packet with them is not steered).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerHeaders {
    pub src: AddrKey,
    pub dst: AddrKey,
    /// Offsets of the IP and transport headers in the frame.
    pub l3: u32,
    pub l4: u32,
    /// Non-zero: IPv6.
    pub v6: u32,
    /// The transport protocol (IPPROTO_*).
    pub proto: u32,
    /// TCP/UDP ports, host order (0 otherwise).
    pub src_port: u32,
    pub dst_port: u32,
    /// The TCP flags byte (0 otherwise).
    pub tcp_flags: u32,
    /// Non-zero: a later IPv4 fragment (no transport header).
    pub later_fragment: u32,
}

/// A TCP flow to a steered VIP, as a packet (or an ICMP error about it) names it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerFlow {
    pub client: AddrKey,
    pub vip: AddrKey,
    pub client_port: u32,
    pub vip_port: u32,
    /// Non-zero: a connection attempt (SYN without ACK or RST).
    pub syn: u32,
    /// Non-zero: an ACK alone (it may carry a SYN cookie).
    pub pure_ack: u32,
}

/// What the program encapsulates, for whom.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerEncap {
    /// How to reach `to`.
    pub peer: SteerPeer,
    /// This node (the outer source).
    pub from: AddrKey,
    /// The member it goes to.
    pub to: AddrKey,
    /// The second chance for the receiver (family 0: none).
    pub next: AddrKey,
    /// Where the IP packet to carry starts in the frame.
    pub inner_l3: u32,
    /// Non-zero: the carried packet is IPv6.
    pub inner_v6: u32,
    /// Encapsulations including this one.
    pub hops: u32,
    /// The flow's hash (the outer UDP source port comes from it).
    pub hash: u32,
    pub _pad: u32,
}

/// The flow's 32-bit hash, the same on every node and in userspace: the row is
/// `hash % STEER_ROWS`, the outer UDP source port comes from it too. The addresses
/// are 16 bytes (IPv4 in the first 4, the rest zero); ports in host order.
#[inline(always)]
pub fn flow_hash(client: &[u8; 16], client_port: u16, vip: &[u8; 16], vip_port: u16) -> u32 {
    let word = |a: &[u8; 16], i: usize| u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    // murmur3's block step, one word at a time (no array: the BPF stack is small)
    let step = |h: u32, w: u32| {
        let k = w
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        (h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64)
    };
    let mut h: u32 = 0x9747_b28c;
    h = step(h, word(client, 0));
    h = step(h, word(client, 4));
    h = step(h, word(client, 8));
    h = step(h, word(client, 12));
    h = step(h, word(vip, 0));
    h = step(h, word(vip, 4));
    h = step(h, word(vip, 8));
    h = step(h, word(vip, 12));
    h = step(h, ((client_port as u32) << 16) | vip_port as u32);
    // murmur3's finaliser
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The row of a flow hash.
#[inline(always)]
pub const fn row_of(hash: u32) -> usize {
    (hash % STEER_ROWS as u32) as usize
}

/// The outer UDP source port for a flow hash: in 49152..=65535, so the fabric and the
/// receiving NIC spread flows by it (as the kernel's `udp_flow_src_port`).
#[inline(always)]
pub const fn outer_source_port(hash: u32) -> u16 {
    0xc000 | ((hash ^ (hash >> 16)) & 0x3fff) as u16
}

/// GUE (draft-ietf-intarea-gue) as the nodes use it: version 0; data messages
/// (C = 0) carry an IPv4 (proto 4) or IPv6 (proto 41) packet after our private data;
/// control messages (C = 1) are the probes members send each other.
pub mod gue {
    /// The GUE header: version/C/Hlen, proto, flags (zero).
    pub const HEADER_LEN: usize = 4;
    /// Bit C of the first byte: a control message.
    pub const CONTROL: u8 = 0x20;
    /// Our private data's type (the first 16 bits of it).
    pub const PRIVATE_TYPE: u16 = 0x5053;
    /// Private data with an IPv4 outer header: type, hops, next-hop family, next hop.
    pub const PRIVATE_LEN_V4: usize = 8;
    /// The same with an IPv6 outer header (a 16-byte next hop).
    pub const PRIVATE_LEN_V6: usize = 20;
    pub const UDP_LEN: usize = 8;
    /// Bytes a steered packet grows by: outer IP, UDP, GUE, private data.
    pub const OVERHEAD_V4: usize = 20 + UDP_LEN + HEADER_LEN + PRIVATE_LEN_V4;
    pub const OVERHEAD_V6: usize = 40 + UDP_LEN + HEADER_LEN + PRIVATE_LEN_V6;
    /// GUE's proto field for an IPv4 / IPv6 inner packet (IANA protocol numbers).
    pub const PROTO_IPV4: u8 = 4;
    pub const PROTO_IPV6: u8 = 41;
    /// The default UDP port (GUE has none assigned; this is glb-director's).
    pub const DEFAULT_PORT: u16 = 19523;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    #[test]
    fn flow_hash_is_pinned() {
        // Every node and every version must agree: a change moves every flow.
        let h = flow_hash(&v4([10, 78, 0, 100]), 40000, &v4([10, 99, 0, 1]), 443);
        assert_eq!(
            h,
            flow_hash(&v4([10, 78, 0, 100]), 40000, &v4([10, 99, 0, 1]), 443)
        );
        assert_eq!(h, 0xa943_256f, "{h:#x}");
        assert_ne!(
            h,
            flow_hash(&v4([10, 78, 0, 100]), 40001, &v4([10, 99, 0, 1]), 443)
        );
    }

    #[test]
    fn rows_spread_evenly() {
        let mut counts = [0u32; 64];
        for port in 0..64_000u16 {
            let h = flow_hash(
                &v4([10, 78, 0, 100 + (port % 32) as u8]),
                port,
                &v4([10, 99, 0, 1]),
                443,
            );
            counts[row_of(h) % 64] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1150, "{min}..{max}");
    }

    #[test]
    fn outer_ports_are_ephemeral() {
        for h in [0u32, 1, 0xffff_ffff, 0x1234_5678] {
            assert!(outer_source_port(h) >= 0xc000);
        }
    }

    #[test]
    fn layouts() {
        use core::mem::size_of;
        assert_eq!(size_of::<SteerRow>(), 4);
        assert_eq!(size_of::<SteerMember>(), 24);
        assert_eq!(size_of::<SteerState>(), 32);
        assert_eq!(size_of::<SteerPeer>(), 32);
        assert_eq!(size_of::<SteerEncap>(), 32 + 3 * 20 + 5 * 4);
        assert_eq!(size_of::<SteerHeaders>(), 2 * 20 + 8 * 4);
        assert_eq!(size_of::<SteerFlow>(), 2 * 20 + 4 * 4);
        assert_eq!(
            size_of::<SteerScratch>(),
            112 + 72 + 56 + STEER_HEADER_ROOM + STEER_READ_ROOM
        );
        assert_eq!(
            size_of::<SteerSlot>(),
            8 + 4 + 4 + 24 * STEER_MAX_MEMBERS + 4 * STEER_ROWS + 4
        );
        assert_eq!(size_of::<SteerSlot>() % 8, 0);
        assert_eq!(gue::OVERHEAD_V4, 40);
        assert_eq!(gue::OVERHEAD_V6, 72);
    }
}
