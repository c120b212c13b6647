//! A host-side reference model of the XDP program's verdict, written independently
//! of `proxy-ebpf/src/parse.rs` from the rules it documents, over a plain byte
//! slice. The `xdp` target runs both and compares. Rate limits are not modelled (the
//! target runs with them off); the allow and block lists are.

use std::net::IpAddr;

use ipnet::IpNet;
use proxy_common::Reason;

/// The lists the target loads into the program.
pub struct Policy {
    pub allow: Vec<IpNet>,
    pub block: Vec<IpNet>,
}

impl Policy {
    fn listed(&self, src: IpAddr) -> Option<Reason> {
        if self.allow.iter().any(|n| n.contains(&src)) {
            Some(Reason::Allowlisted)
        } else if self.block.iter().any(|n| n.contains(&src)) {
            Some(Reason::Blocklisted)
        } else {
            None
        }
    }
}

/// The reason the program must count `frame` under.
pub fn verdict(frame: &[u8], policy: &Policy) -> Reason {
    match source(frame) {
        Err(()) => Reason::Malformed,
        Ok(None) => Reason::NonIp,
        Ok(Some(src)) => policy.listed(src).unwrap_or(Reason::Passed),
    }
}

fn get(frame: &[u8], at: usize, len: usize) -> Result<&[u8], ()> {
    frame.get(at..at.checked_add(len).ok_or(())?).ok_or(())
}

fn be16(frame: &[u8], at: usize) -> Result<u16, ()> {
    let b = get(frame, at, 2)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

/// `Ok(None)`: not IP. `Ok(Some(src))`: a well-formed IP packet. `Err`: malformed.
fn source(frame: &[u8]) -> Result<Option<IpAddr>, ()> {
    const VLAN_TAGS: [u16; 2] = [0x8100, 0x88a8];
    let mut ether_type = be16(frame, 12)?;
    let mut at = 14;
    let mut tags = 0;
    while VLAN_TAGS.contains(&ether_type) {
        if tags == 2 {
            return Err(()); // a third tag
        }
        ether_type = be16(frame, at + 2)?;
        at += 4;
        tags += 1;
    }
    match ether_type {
        0x0800 => ipv4(frame, at).map(Some),
        0x86dd => ipv6(frame, at).map(Some),
        _ => Ok(None),
    }
}

fn ipv4(frame: &[u8], at: usize) -> Result<IpAddr, ()> {
    let h = get(frame, at, 20)?;
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4
        || header_len < 20
        || usize::from(u16::from_be_bytes([h[2], h[3]])) < header_len
    {
        return Err(());
    }
    get(frame, at, header_len)?;
    let src = IpAddr::from([h[12], h[13], h[14], h[15]]);
    let later_fragment = u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0;
    if !later_fragment {
        transport(frame, h[9], at + header_len)?;
    }
    Ok(src)
}

fn ipv6(frame: &[u8], at: usize) -> Result<IpAddr, ()> {
    let h = get(frame, at, 40)?;
    if h[0] >> 4 != 6 {
        return Err(());
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let src = IpAddr::from(src);
    let mut next = h[6];
    let mut l4 = at + 40;
    // At most four extension headers are walked; what follows is taken as transport.
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                let e = get(frame, l4, 2)?;
                next = e[0];
                l4 += (usize::from(e[1]) + 1) * 8;
            }
            51 => {
                let e = get(frame, l4, 2)?;
                next = e[0];
                l4 += (usize::from(e[1]) + 2) * 4;
            }
            44 => {
                let e = get(frame, l4, 8)?;
                next = e[0];
                l4 += 8;
                if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                    return Ok(src); // a later fragment: no transport header
                }
            }
            _ => break,
        }
    }
    transport(frame, next, l4)?;
    Ok(src)
}

/// TCP needs a full 20-byte header with a data offset of at least 5 words; UDP 8 bytes.
fn transport(frame: &[u8], proto: u8, at: usize) -> Result<(), ()> {
    match proto {
        6 => {
            let t = get(frame, at, 20)?;
            if t[12] >> 4 < 5 {
                return Err(());
            }
        }
        17 => {
            get(frame, at, 8)?;
        }
        _ => {}
    }
    Ok(())
}

/// Connection steering as the target configures it: this node, its members (in the
/// table's index order, all heard from), the table's rows, the steered VIPs.
pub struct Steering {
    pub me: std::net::Ipv4Addr,
    pub port: u16,
    pub members: Vec<std::net::Ipv4Addr>,
    pub me_index: u16,
    /// (primary, secondary) per row; `u16::MAX`: none.
    pub rows: Vec<(u16, u16)>,
    /// Steered VIPs with their ports.
    pub vips: Vec<(IpAddr, Vec<u16>)>,
}

/// What the program must do with a frame when steering is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub reason: Reason,
    /// For a frame sent on: the member it goes to.
    pub to: Option<std::net::Ipv4Addr>,
}

impl Expected {
    fn just(reason: Reason) -> Expected {
        Expected { reason, to: None }
    }
}

/// The fields steering reads of a well-formed IP packet (`parse`'s rules).
struct Fields {
    dst: IpAddr,
    proto: u8,
    /// TCP/UDP destination port (not a later fragment).
    dst_port: Option<u16>,
    later_fragment: bool,
}

/// The verdict with steering on: a member's GUE to this node's port before the lists;
/// TCP to a steered VIP and port (or ICMP to a steered VIP) after them, when passed
/// or allowlisted.
pub fn verdict_steered(frame: &[u8], policy: &Policy, s: &Steering) -> Expected {
    let src = match source(frame) {
        Err(()) => return Expected::just(Reason::Malformed),
        Ok(None) => return Expected::just(Reason::NonIp),
        Ok(Some(src)) => src,
    };
    let f = fields(frame).expect("a well-formed IP packet");
    let is_member = |a: IpAddr| s.members.iter().any(|m| IpAddr::V4(*m) == a && *m != s.me);
    if f.proto == 17
        && !f.later_fragment
        && f.dst_port == Some(s.port)
        && f.dst == IpAddr::V4(s.me)
        && is_member(src)
    {
        return received(frame, s);
    }
    let local = match policy.listed(src) {
        Some(Reason::Blocklisted) => return Expected::just(Reason::Blocklisted),
        Some(r) => r,
        None => Reason::Passed,
    };
    let concerns = !f.later_fragment
        && match f.proto {
            6 => f.dst_port.is_some_and(|p| steered(s, f.dst, p)),
            1 | 58 => steered(s, f.dst, 0),
            _ => false,
        };
    if !concerns {
        return Expected::just(local);
    }
    let Some(h) = lean(frame) else {
        return Expected::just(local);
    };
    let Some(flow) = flow_of(frame, &h).filter(|fl| steered(s, fl.vip, fl.vip_port)) else {
        return Expected::just(local);
    };
    let (primary, secondary) = s.rows[row_of(&flow)];
    // No sockets in the target's namespace: nothing is owned here.
    if primary == s.me_index {
        if flow.syn {
            return Expected::just(local);
        }
        if secondary == u16::MAX || secondary == s.me_index {
            return Expected::just(Reason::Unowned);
        }
        return send(s, s.members[usize::from(secondary)], Reason::SecondChance);
    }
    send(s, s.members[usize::from(primary)], Reason::Steered)
}

fn send(s: &Steering, to: std::net::Ipv4Addr, reason: Reason) -> Expected {
    if to == s.me || !s.members.contains(&to) {
        return Expected::just(Reason::SteerFailed);
    }
    Expected {
        reason,
        to: Some(to),
    }
}

fn steered(s: &Steering, vip: IpAddr, port: u16) -> bool {
    s.vips
        .iter()
        .any(|(v, ports)| *v == vip && (port == 0 || ports.contains(&port)))
}

/// A GUE datagram from a member to this node's port.
fn received(frame: &[u8], s: &Steering) -> Expected {
    let failed = Expected::just(Reason::SteerFailed);
    let Some(outer) = lean(frame) else {
        return Expected::just(Reason::Passed);
    };
    if outer.l4 != outer.l3 + 20 {
        return failed;
    }
    let at = outer.l4 + 8;
    let Ok(g) = get(frame, at, 4) else {
        return failed;
    };
    if g[0] >> 6 != 0 {
        return failed;
    }
    if g[0] & 0x20 != 0 {
        return Expected::just(Reason::Passed); // a probe
    }
    if usize::from(g[0] & 0x1f) * 4 != 8 {
        return failed;
    }
    let inner_v6 = match g[1] {
        4 => false,
        41 => true,
        _ => return failed,
    };
    let Ok(p) = get(frame, at + 4, 8) else {
        return failed;
    };
    if p[0..2] != [0x50, 0x53] {
        return failed;
    }
    let next = match p[3] {
        0 => None,
        4 => Some(std::net::Ipv4Addr::new(p[4], p[5], p[6], p[7])),
        _ => return failed,
    };
    let hops = p[2];
    let inner_l3 = at + 12;
    let Some(inner) = lean_ip(frame, inner_l3, inner_v6) else {
        return failed;
    };
    let steered_flow = flow_of(frame, &inner).filter(|fl| steered(s, fl.vip, fl.vip_port));
    let Some(flow) = steered_flow else {
        return Expected::just(Reason::Decapsulated);
    };
    if flow.syn {
        return Expected::just(Reason::Decapsulated);
    }
    match next {
        Some(n) if hops < 2 && n != s.me => send(s, n, Reason::SecondChance),
        _ => Expected::just(Reason::Unowned),
    }
}

/// What the steering program reads of a header (its own, lean rules: Ethernet with up
/// to two VLAN tags, IPv4 with options, IPv6 without extension headers; offsets
/// within 255 and 511 bytes).
struct Lean {
    l3: usize,
    l4: usize,
    v6: bool,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
    tcp_flags: u8,
    later: bool,
}

fn lean(frame: &[u8]) -> Option<Lean> {
    let mut ether_type = be16(frame, 12).ok()?;
    let mut at = 14;
    for _ in 0..2 {
        if ether_type == 0x8100 || ether_type == 0x88a8 {
            ether_type = be16(frame, at + 2).ok()?;
            at += 4;
        }
    }
    match ether_type {
        0x0800 => lean_ip(frame, at, false),
        0x86dd => lean_ip(frame, at, true),
        _ => None,
    }
}

fn lean_ip(frame: &[u8], l3: usize, v6: bool) -> Option<Lean> {
    let (proto, src, dst, l4, later) = if v6 {
        let h = get(frame, l3, 40).ok()?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let s: [u8; 16] = h[8..24].try_into().ok()?;
        let d: [u8; 16] = h[24..40].try_into().ok()?;
        (h[6], IpAddr::from(s), IpAddr::from(d), l3 + 40, false)
    } else {
        let h = get(frame, l3, 20).ok()?;
        let ihl = usize::from(h[0] & 0x0f) * 4;
        if h[0] >> 4 != 4 || ihl < 20 {
            return None;
        }
        let later = u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0;
        let s = IpAddr::from([h[12], h[13], h[14], h[15]]);
        let d = IpAddr::from([h[16], h[17], h[18], h[19]]);
        (h[9], s, d, l3 + ihl, later)
    };
    if l3 > 0xff || l4 > 0x1ff {
        return None;
    }
    let (ports, tcp_flags) = match (proto, later) {
        (6, false) => {
            let t = get(frame, l4, 14).ok()?;
            (Some((be(t, 0), be(t, 2))), t[13])
        }
        (17, false) => {
            let u = get(frame, l4, 4).ok()?;
            (Some((be(u, 0), be(u, 2))), 0)
        }
        _ => (None, 0),
    };
    Some(Lean {
        l3,
        l4,
        v6,
        proto,
        src,
        dst,
        ports,
        tcp_flags,
        later,
    })
}

fn be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A TCP flow to a VIP, as a packet or the ICMP error quoting it names it.
struct Flow {
    client: IpAddr,
    client_port: u16,
    vip: IpAddr,
    vip_port: u16,
    syn: bool,
}

fn flow_of(frame: &[u8], h: &Lean) -> Option<Flow> {
    if h.later {
        return None;
    }
    match h.proto {
        6 => {
            let (sport, dport) = h.ports?;
            Some(Flow {
                client: h.src,
                client_port: sport,
                vip: h.dst,
                vip_port: dport,
                syn: h.tcp_flags & 0x16 == 0x02,
            })
        }
        1 | 58 => {
            let icmp = get(frame, h.l4, 2).ok()?;
            let quoted = h.l4 + 8;
            let (vip, client, ports_at) = if h.v6 {
                let q = get(frame, quoted, 40).ok()?;
                if icmp[0] != 2 || q[0] >> 4 != 6 || q[6] != 6 {
                    return None;
                }
                let s: [u8; 16] = q[8..24].try_into().ok()?;
                let d: [u8; 16] = q[24..40].try_into().ok()?;
                (IpAddr::from(s), IpAddr::from(d), quoted + 40)
            } else {
                let q = get(frame, quoted, 20).ok()?;
                if icmp != [3, 4] || q[0] >> 4 != 4 || q[9] != 6 {
                    return None;
                }
                let s = IpAddr::from([q[12], q[13], q[14], q[15]]);
                let d = IpAddr::from([q[16], q[17], q[18], q[19]]);
                (s, d, quoted + usize::from(q[0] & 0x0f) * 4)
            };
            let p = get(frame, ports_at, 4).ok()?;
            Some(Flow {
                client,
                client_port: be(p, 2),
                vip,
                vip_port: be(p, 0),
                syn: false,
            })
        }
        _ => None,
    }
}

fn row_of(flow: &Flow) -> usize {
    let key = |a: IpAddr| match a {
        IpAddr::V4(a) => {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&a.octets());
            k
        }
        IpAddr::V6(a) => a.octets(),
    };
    proxy_common::steering::row_of(proxy_common::steering::flow_hash(
        &key(flow.client),
        flow.client_port,
        &key(flow.vip),
        flow.vip_port,
    ))
}

/// The fields `parse` finds in a well-formed frame (see [`source`]).
fn fields(frame: &[u8]) -> Result<Fields, ()> {
    let mut ether_type = be16(frame, 12)?;
    let mut at = 14;
    while ether_type == 0x8100 || ether_type == 0x88a8 {
        ether_type = be16(frame, at + 2)?;
        at += 4;
    }
    let (dst, mut proto, l4, later) = match ether_type {
        0x0800 => {
            let h = get(frame, at, 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let later = u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0;
            (
                IpAddr::from([h[16], h[17], h[18], h[19]]),
                h[9],
                at + ihl,
                later,
            )
        }
        _ => {
            let h = get(frame, at, 40)?;
            let d: [u8; 16] = h[24..40].try_into().map_err(|_| ())?;
            (IpAddr::from(d), h[6], at + 40, false)
        }
    };
    let mut l4 = l4;
    let mut later = later;
    if ether_type == 0x86dd {
        for _ in 0..4 {
            match proto {
                0 | 43 | 60 => {
                    let e = get(frame, l4, 2)?;
                    proto = e[0];
                    l4 += (usize::from(e[1]) + 1) * 8;
                }
                51 => {
                    let e = get(frame, l4, 2)?;
                    proto = e[0];
                    l4 += (usize::from(e[1]) + 2) * 4;
                }
                44 => {
                    let e = get(frame, l4, 8)?;
                    proto = e[0];
                    l4 += 8;
                    if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                        later = true;
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    let dst_port = match (proto, later) {
        (6 | 17, false) => Some(be16(frame, l4 + 2)?),
        _ => None,
    };
    Ok(Fields {
        dst,
        proto,
        dst_port,
        later_fragment: later,
    })
}
