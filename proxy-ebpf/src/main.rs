//! The kernel half of the proxy: an XDP program that drops traffic from blocklisted
//! and over-rate sources before the kernel stack or the daemon sees it, and counts
//! every verdict. Decision order: allowlist → blocklist → rate limits → pass.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod rate;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{LpmTrie, lpm_trie::Key},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::xdp,
    programs::XdpContext,
};
use aya_log_ebpf::info;
use maps::*;
use parse::{IpPacket, Parsed, Source};
use proxy_common::{
    DropEvent, FAMILY_V4, FAMILY_V6, PolicyEntry, Reason, SKETCH_PPS, SKETCH_SYN, XdpConfig,
    counter_index,
};

/// How many expired entries one lookup may delete before giving up (nested prefixes).
const MAX_EXPIRED_PER_LOOKUP: usize = 3;

#[xdp]
pub fn proxy_xdp(ctx: XdpContext) -> u32 {
    let config = CONFIG.get(0);
    let (reason, src) = decide(&ctx, config);
    account(&ctx, config, reason, src.as_ref());
    if reason.is_drop() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn decide(ctx: &XdpContext, config: Option<&XdpConfig>) -> (Reason, Option<Source>) {
    let packet = match parse::parse(ctx) {
        Err(parse::Malformed) => return (Reason::Malformed, None),
        Ok(Parsed::NonIp) => return (Reason::NonIp, None),
        Ok(Parsed::Ip(packet)) => packet,
    };
    let reason = match config {
        Some(config) => policy(&packet, config),
        None => Reason::Passed,
    };
    (reason, Some(packet.src))
}

#[inline(always)]
fn policy(packet: &IpPacket, config: &XdpConfig) -> Reason {
    let mut clock = Clock(0);
    let (allowed, blocked) = match &packet.src {
        Source::V4(addr) => (
            listed(&ALLOW_V4, *addr, &mut clock),
            listed(&BLOCK_V4, *addr, &mut clock),
        ),
        Source::V6(addr) => (
            listed(&ALLOW_V6, *addr, &mut clock),
            listed(&BLOCK_V6, *addr, &mut clock),
        ),
    };
    if allowed {
        return Reason::Allowlisted;
    }
    if blocked {
        return Reason::Blocklisted;
    }
    let check_syn = packet.tcp_syn && config.syn.per_sec != 0;
    if (config.pps.per_sec == 0 && !check_syn) || !rate_limited_port(packet, config) {
        return Reason::Passed;
    }
    let (hi, lo) = sketch_key(&packet.src, config.ipv6_prefix_len);
    let cells = rate::Cells::of(hi, lo, &config.hash_seeds);
    let now = clock.now();
    if config.pps.per_sec != 0 {
        if let Some(sketch) = RATE_SKETCH.get_ptr_mut(SKETCH_PPS) {
            if !rate::admit(sketch, &cells, &config.pps, now) {
                return Reason::RatePps;
            }
        }
    }
    if check_syn {
        if let Some(sketch) = RATE_SKETCH.get_ptr_mut(SKETCH_SYN) {
            if !rate::admit(sketch, &cells, &config.syn, now) {
                return Reason::RateSyn;
            }
        }
    }
    Reason::Passed
}

/// Are rate limits applied to this packet's destination port?
#[inline(always)]
fn rate_limited_port(packet: &IpPacket, config: &XdpConfig) -> bool {
    if config.ports_scoped == 0 || packet.later_fragment {
        // Later fragments carry no port: treat them as aimed at a protected port.
        return true;
    }
    match packet.dst_port {
        Some(port) => PORTS.get(port as u32).is_some_and(|on| *on != 0),
        None => false,
    }
}

/// The source as a 128-bit key: IPv4 as `::ffff:a.b.c.d`, IPv6 cut to its prefix.
#[inline(always)]
fn sketch_key(src: &Source, ipv6_prefix_len: u32) -> (u64, u64) {
    match src {
        Source::V4(a) => (0, 0xffff_0000_0000 | u32::from_be_bytes(*a) as u64),
        Source::V6(a) => {
            let mut hi_bytes = [0u8; 8];
            let mut lo_bytes = [0u8; 8];
            hi_bytes.copy_from_slice(&a[..8]);
            lo_bytes.copy_from_slice(&a[8..]);
            let (hi, lo) = (u64::from_be_bytes(hi_bytes), u64::from_be_bytes(lo_bytes));
            match ipv6_prefix_len {
                0 => (0, 0),
                1..=63 => (hi & !(u64::MAX >> ipv6_prefix_len), 0),
                64 => (hi, 0),
                65..=127 => (hi, lo & !(u64::MAX >> (ipv6_prefix_len - 64))),
                _ => (hi, lo),
            }
        }
    }
}

/// Reads the clock at most once per packet, and only when needed.
struct Clock(u64);

impl Clock {
    #[inline(always)]
    fn now(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = unsafe { bpf_ktime_get_ns() };
        }
        self.0
    }
}

/// An address that can be cut to a prefix (to name the exact LPM entry to delete).
trait Prefixable: Copy {
    const BITS: u32;
    fn masked(self, prefix_len: u32) -> Self;
}

impl<const N: usize> Prefixable for [u8; N] {
    const BITS: u32 = N as u32 * 8;
    #[inline(always)]
    fn masked(mut self, prefix_len: u32) -> Self {
        let mut i = 0;
        while i < N {
            let bit = i as u32 * 8;
            if bit >= prefix_len {
                self[i] = 0;
            } else if prefix_len - bit < 8 {
                self[i] &= 0xffu8 << (8 - (prefix_len - bit));
            }
            i += 1;
        }
        self
    }
}

/// Longest-prefix match that honours expiry: an expired entry is deleted and the
/// lookup repeated, so a shorter covering prefix still applies.
#[inline(always)]
fn listed<K: Prefixable, const MAX: usize>(
    map: &LpmTrie<K, PolicyEntry, MAX>,
    addr: K,
    clock: &mut Clock,
) -> bool {
    let key = Key::new(K::BITS, addr);
    for _ in 0..MAX_EXPIRED_PER_LOOKUP {
        let Some(entry) = map.get(&key) else {
            return false;
        };
        let expires_at = entry.expires_at_ns;
        if expires_at == 0 || expires_at > clock.now() {
            return true;
        }
        let prefix_len = entry.prefix_len;
        let prefix_len = if prefix_len > K::BITS { K::BITS } else { prefix_len };
        let _ = map.remove(&Key::new(prefix_len, addr.masked(prefix_len)));
    }
    false
}

#[inline(always)]
fn account(ctx: &XdpContext, config: Option<&XdpConfig>, reason: Reason, src: Option<&Source>) {
    let ifindex = ctx.ingress_ifindex() as u32;
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index(ifindex, reason)) {
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
    if !reason.is_drop() {
        return;
    }
    let Some(config) = config else { return };
    let every = config.sample_every;
    if every != 0 && (every == 1 || unsafe { bpf_get_prandom_u32() } % every == 0) {
        let mut event = DropEvent { reason: reason as u32, ifindex, weight: every, ..DropEvent::default() };
        match src {
            Some(Source::V4(a)) => {
                event.family = FAMILY_V4;
                event.addr[..4].copy_from_slice(a);
            }
            Some(Source::V6(a)) => {
                event.family = FAMILY_V6;
                event.addr = *a;
            }
            None => {}
        }
        let _ = DROP_EVENTS.output(&event, 0);
    }
    if config.log_drops != 0 {
        info!(ctx, "xdp drop: reason={} ifindex={}", reason as u32, ifindex);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
