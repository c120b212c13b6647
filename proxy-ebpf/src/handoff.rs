//! The parsed TCP segment handed to the SYN cookie stage with its tail call, through
//! the per-CPU COOKIE_SCRATCH: the caller writes where the headers are just before
//! `bpf_tail_call`, and the called program runs on the same CPU to completion before
//! anything else can (XDP runs with bottom halves off), so it reads them there
//! instead of parsing the headers again.

use aya_ebpf::programs::XdpContext;
use proxy_common::{AddrKey, COOKIE_L3_MAX, COOKIE_L4_MAX, CookieScratch, FAMILY_V4, FAMILY_V6};

use crate::maps::COOKIE_SCRATCH;
use crate::parse::{self, Addr, IpPacket};
use crate::verifier;

/// This CPU's scratch.
#[inline(always)]
pub fn scratch() -> Option<&'static mut CookieScratch> {
    let ptr = COOKIE_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a per-CPU map slot: valid for the program's run and only this CPU
    // touches it (the program runs to completion without preemption).
    Some(unsafe { &mut *ptr })
}

/// Writes where the TCP segment `packet` lies, for the cookie stage the caller may
/// call next: only offsets and flags (the stage reads addresses and ports from the
/// packet, [`Segment::load`]). Called while the offsets are exact (before
/// `IpPacket::offsets_opaque`), whatever the caller decides next: nothing stays live
/// to split the verifier's states. A segment whose headers lie further in than the
/// stage reads is written as taken ([`Segment::take`]): the stage passes it.
#[inline(always)]
pub fn save(packet: &IpPacket) {
    let Some(s) = scratch() else {
        return;
    };
    let fits = packet.l3 <= COOKIE_L3_MAX as usize && packet.l4 <= COOKIE_L4_MAX as usize;
    s.fresh = fits as u32;
    s.v6 = matches!(packet.src, Addr::V6(_)) as u32;
    s.l3 = packet.l3 as u32;
    s.l4 = packet.l4 as u32;
    s.tcp_flags = packet.tcp_flags as u32;
}

/// The handed-over segment's fields, read from the scratch. Offsets are masked
/// again: the verifier knows nothing of values read from a map.
pub struct Segment<'a> {
    pub s: &'a mut CookieScratch,
}

impl Segment<'_> {
    /// Takes the segment: `false` if it was taken already (the stage was called
    /// without a fresh [`save`], which the callers never do) or could not be handed
    /// over. Marks it taken.
    #[inline(always)]
    pub fn take(&mut self) -> bool {
        let fresh = self.s.fresh != 0;
        self.s.fresh = 0;
        fresh
    }

    /// Copies the addresses and ports from the packet into the tuple (as the kernel's
    /// `bpf_sock_tuple`: IPv4 addresses from offset 12 of the IP header, IPv6 from 8,
    /// then the ports), a word at a time (a 32-byte copy became a `memmove` call);
    /// `false` if the frame is too short.
    #[inline(always)]
    pub fn load(&mut self, ctx: &XdpContext) -> bool {
        let (l3, l4) = (self.l3(), self.l4());
        let word = |offset: usize| parse::read::<4>(ctx, offset).map(u32::from_ne_bytes);
        let t = &mut self.s.tuple;
        let loaded = |t: &mut [u32; 9]| -> Result<(), parse::Malformed> {
            if self.s.v6 != 0 {
                for (i, w) in t[..8].iter_mut().enumerate() {
                    *w = word(l3 + 8 + 4 * i)?;
                }
                t[8] = word(l4)?;
            } else {
                t[0] = word(l3 + 12)?;
                t[1] = word(l3 + 16)?;
                t[2] = word(l4)?;
            }
            Ok(())
        };
        loaded(t).is_ok()
    }

    #[inline(always)]
    pub fn v6(&self) -> bool {
        self.s.v6 != 0
    }

    #[inline(always)]
    pub fn l3(&self) -> usize {
        self.s.l3 as usize & COOKIE_L3_MAX as usize
    }

    #[inline(always)]
    pub fn l4(&self) -> usize {
        self.s.l4 as usize & COOKIE_L4_MAX as usize
    }

    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.s.tcp_flags as u8
    }

    /// The tuple's length for the socket lookup helpers.
    #[inline(always)]
    pub fn tuple_len(&self) -> u32 {
        if self.v6() { 36 } else { 12 }
    }

    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        let ports = self.s.tuple[if self.v6() { 8 } else { 2 }].to_ne_bytes();
        u16::from_be_bytes([ports[2], ports[3]])
    }

    /// The source (the client) as a map key / event field.
    #[inline(always)]
    pub fn src(&self) -> AddrKey {
        self.addr(0)
    }

    /// The destination (this host's address).
    #[inline(always)]
    pub fn dst(&self) -> AddrKey {
        self.addr(1)
    }

    /// Address `which` (0 source, 1 destination).
    #[inline(always)]
    fn addr(&self, which: usize) -> AddrKey {
        let t = &self.s.tuple;
        let mut key = verifier::zero_key(FAMILY_V4);
        if self.v6() {
            for w in 0..4 {
                key.addr[4 * w..4 * w + 4].copy_from_slice(&t[4 * which + w].to_ne_bytes());
            }
            key.family = FAMILY_V6;
        } else {
            key.addr[..4].copy_from_slice(&t[which].to_ne_bytes());
        }
        key
    }
}
