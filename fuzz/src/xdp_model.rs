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
