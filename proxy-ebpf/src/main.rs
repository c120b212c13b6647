//! The kernel half of the proxy: an XDP program that drops traffic from blocklisted
//! and over-rate sources before the kernel stack or the daemon sees it, answers SYNs
//! with SYN cookies for listeners under flood, drops traffic to ports nobody serves,
//! and counts every verdict. Decision order: allowlist → blocklist → rate limits →
//! service filter → SYN cookies → pass.
//!
//! Four programs chained by tail calls: `proxy_xdp` (attached) runs the lists and
//! limits; TCP to a served port that the SYN cookies concern continues in
//! `proxy_xdp_cookies`, other TCP and UDP the service filter may drop in
//! `proxy_xdp_services` (which hands TCP to cookie listeners on to the cookie stage
//! too). With connection steering (a fleet), TCP to a steered VIP and GUE from the
//! fleet's members continue in `proxy_xdp_steer` (see `steer.rs`), which may send them
//! on to another node or hand them to the services program. Each is verified alone
//! with its own 512-byte stack, which keeps each within the verifier's limits. The
//! services and steering programs parse the headers again (the steering program may
//! have decapsulated them); the cookie stage reads what its caller parsed
//! (`handoff.rs`).
#![no_std]
#![no_main]

mod cookies;
mod flow;
mod frame;
mod gue;
mod handoff;
mod maps;
mod parse;
mod services;
mod socket;
mod steer;
mod verifier;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{LpmTrie, lpm_trie::Key},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_coarse_ns},
    macros::xdp,
    programs::XdpContext,
};
use aya_log_ebpf::info;
use maps::*;
use parse::{Addr, IpPacket, Parsed};
use proxy_common::{
    AddrKey, DropEvent, FAMILY_V4, FAMILY_V6, LISTED_ALLOW, LISTED_BLOCK, LISTED_NONE, PolicyEntry,
    Reason, SKETCH_PPS, SKETCH_SYN, TAIL_COOKIES, TAIL_SERVICES, TAIL_STEER, VERDICT_CACHE_SLOTS,
    VerdictSlot, XdpConfig, counter_index, prefix,
    rate::{self, Cells, sketch_key_v4, sketch_key_v6},
    v4_summary_16_bit, v4_summary_bit,
};
use services::NO_TAIL;
use steer::Outcome;

/// How many expired entries one lookup may delete before giving up (nested prefixes).
const MAX_EXPIRED_PER_LOOKUP: usize = 3;

#[xdp]
pub fn proxy_xdp(ctx: XdpContext) -> u32 {
    let config = CONFIG.get(0);
    let (reason, src, next) = decide(&ctx, config);
    if next == TAIL_STEER
        && let Some(verdict) = STEER_ENTRY_VERDICT.get_ptr_mut(0)
    {
        // SAFETY: a per-CPU slot, valid for the program's run; the tail-called
        // program reads it on this CPU before anything else runs here.
        unsafe { *verdict = reason as u32 };
    }
    if next != NO_TAIL {
        // SAFETY: SERVICES holds the program for each index (or nothing: then the
        // call returns and the packet passes as decided here).
        unsafe { SERVICES.tail_call(&ctx, next) };
    }
    finish(&ctx, config, reason, &src)
}

/// The service filter, for packets `proxy_xdp` (or the steering program) passed on;
/// then the SYN cookie stage for TCP to cookie listeners.
#[xdp]
pub fn proxy_xdp_services(ctx: XdpContext) -> u32 {
    let config = CONFIG.get(0);
    let (reason, src) = match (parse::parse(&ctx), config) {
        (Ok(Parsed::Ip(mut packet)), Some(config)) => {
            services::prepare_cookie_stage(&packet, config);
            packet.offsets_opaque();
            let reason = services::service_filter(&ctx, &packet, config);
            if reason == Reason::Passed && services::cookie_stage_concerns(&packet, config) {
                // SAFETY: index 1 of SERVICES holds `proxy_xdp_cookies` (or nothing:
                // then the call returns and the packet passes).
                unsafe { SERVICES.tail_call(&ctx, TAIL_COOKIES) };
            }
            (reason, packet.src.key())
        }
        // Only parsed IP packets are passed on, with a config: nothing to do otherwise.
        _ => (Reason::Passed, AddrKey::default()),
    };
    finish(&ctx, config, reason, &src)
}

/// The SYN cookie stage, for TCP to a listener with cookies on or auto, handed over
/// by the program that called it (see `handoff.rs`).
#[xdp]
pub fn proxy_xdp_cookies(ctx: XdpContext) -> u32 {
    let config = CONFIG.get(0);
    let (reason, src) = match (handoff::scratch(), config) {
        (Some(s), Some(config)) => {
            let mut seg = handoff::Segment { s };
            let reason = if seg.take() && seg.load(&ctx) {
                services::syn_cookies(&ctx, &mut seg, config)
            } else {
                Reason::Passed
            };
            // The source only for a sampled verdict (see `account`).
            let src = if reason.is_sampled() {
                seg.src()
            } else {
                AddrKey::default()
            };
            (reason, src)
        }
        _ => (Reason::Passed, AddrKey::default()),
    };
    finish(&ctx, config, reason, &src)
}

/// Connection steering, for what `proxy_xdp` passed on: TCP to a steered VIP (past
/// the lists and limits) and GUE from a member. Packets handled here go on as without
/// steering (to the services program when it concerns them).
#[xdp]
pub fn proxy_xdp_steer(ctx: XdpContext) -> u32 {
    let config = CONFIG.get(0);
    let entry = STEER_ENTRY_VERDICT.get(0).copied().unwrap_or(0);
    let (Some(config_ref), Some(scratch)) = (config, steer::scratch()) else {
        return finish(&ctx, config, Reason::Passed, &AddrKey::default());
    };
    let outcome = steer::decide(&ctx, config_ref, scratch);
    let src = scratch.packet.src;
    match outcome {
        // The allowlist skips the service filter and cookies, as without steering.
        Outcome::Local(_) if entry == Reason::Allowlisted as u32 => {
            finish(&ctx, config, Reason::Allowlisted, &src)
        }
        Outcome::Local(to_services) => {
            if to_services {
                // SAFETY: index 0 of SERVICES holds `proxy_xdp_services` (or nothing:
                // then the call returns and the packet passes).
                unsafe { SERVICES.tail_call(&ctx, TAIL_SERVICES) };
            }
            finish(&ctx, config, Reason::Passed, &src)
        }
        Outcome::Done(reason, action) => {
            account(&ctx, config, reason, &src);
            action
        }
    }
}

/// Counts the verdict and turns it into an XDP action.
#[inline(always)]
fn finish(ctx: &XdpContext, config: Option<&XdpConfig>, reason: Reason, src: &AddrKey) -> u32 {
    account(ctx, config, reason, src);
    if reason.is_drop() {
        xdp_action::XDP_DROP
    } else if reason == Reason::SynCookieSent {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_PASS
    }
}

/// The verdict of the lists and limits, the source (family 0: none), and the program
/// the packet goes on to (its SERVICES index, or NO_TAIL). (Not an `Option<AddrKey>`:
/// see "Plain fields" in `verifier.rs`.)
#[inline(always)]
fn decide(ctx: &XdpContext, config: Option<&XdpConfig>) -> (Reason, AddrKey, u32) {
    let mut packet = match parse::parse(ctx) {
        Err(parse::Malformed) => return (Reason::Malformed, AddrKey::default(), NO_TAIL),
        Ok(Parsed::NonIp) => return (Reason::NonIp, AddrKey::default(), NO_TAIL),
        Ok(Parsed::Ip(packet)) => packet,
    };
    let Some(config) = config else {
        return (Reason::Passed, packet.src.key(), NO_TAIL);
    };
    // A member's GUE: its client went through the lists and limits on the entry node.
    if steer::from_member(&packet) {
        return (Reason::Passed, packet.src.key(), TAIL_STEER);
    }
    services::prepare_cookie_stage(&packet, config);
    // Fewer verifier states from here on (see `verifier::opaque_offset`).
    packet.offsets_opaque();
    let reason = policy(&packet, config);
    let listed_or_passed = reason == Reason::Passed || reason == Reason::Allowlisted;
    let next = if listed_or_passed && steer::concerns(&packet) {
        TAIL_STEER
    } else if reason == Reason::Passed {
        services::next_program(&packet, config)
    } else {
        NO_TAIL
    };
    (reason, packet.src.key(), next)
}

#[inline(always)]
fn policy(packet: &IpPacket, config: &XdpConfig) -> Reason {
    let mut clock = Clock(0);
    match list_verdict(&packet.src, &mut clock) {
        LISTED_ALLOW => return Reason::Allowlisted,
        LISTED_BLOCK => return Reason::Blocklisted,
        _ => {}
    }
    rate_limits(packet, config, &mut clock)
}

/// Per-source packet and SYN rate limits.
#[inline(always)]
fn rate_limits(packet: &IpPacket, config: &XdpConfig, clock: &mut Clock) -> Reason {
    let check_syn = packet.tcp_syn && config.syn.per_sec != 0;
    if (config.pps.per_sec == 0 && !check_syn) || !rate_limited_port(packet, config) {
        return Reason::Passed;
    }
    let (hi, lo) = match packet.src {
        Addr::V4(a) => sketch_key_v4(a),
        Addr::V6(a) => sketch_key_v6(a, config.ipv6_prefix_len),
    };
    let cells = Cells::of(hi, lo, &config.hash_seeds);
    let now = clock.now();
    if config.pps.per_sec != 0 && !admit(SKETCH_PPS, &cells, &config.pps, now) {
        return Reason::RatePps;
    }
    if check_syn && !admit(SKETCH_SYN, &cells, &config.syn, now) {
        return Reason::RateSyn;
    }
    Reason::Passed
}

/// GCRA admission in sketch `index` (see `proxy_common::rate`).
#[inline(always)]
fn admit(index: u32, cells: &Cells, params: &proxy_common::RateParams, now: u64) -> bool {
    let Some(sketch) = RATE_SKETCH.get_ptr_mut(index) else {
        return true;
    };
    // SAFETY: the pointer comes from the map, is 8-aligned and stays valid for the
    // program's run; `cells.line` is masked below SKETCH_LINES. Every CPU touches the
    // cells only through `rate::admit`'s relaxed atomics (userspace never does).
    let line = unsafe { rate::shared_line(&raw mut (*sketch).lines[cells.line]) };
    rate::admit(line, cells, params, now)
}

/// Allow/block verdict for a source: from this CPU's verdict cache when the slot is
/// for this source, from the current policy generation and unexpired; else looked up
/// (and cached).
#[inline(always)]
fn list_verdict(src: &Addr, clock: &mut Clock) -> u32 {
    // Most IPv4 sources fall in a /16 (else a /24) no entry touches: one bit answers.
    if let Addr::V4(a) = src {
        let addr = u32::from_be_bytes(*a);
        let (word, bit) = v4_summary_16_bit(addr);
        if V4_SUMMARY_16.get(word).is_some_and(|w| *w & bit == 0) {
            return LISTED_NONE;
        }
        let (word, bit) = v4_summary_bit(addr);
        if V4_SUMMARY.get(word).is_some_and(|w| *w & bit == 0) {
            return LISTED_NONE;
        }
    }
    // Read the generation before looking up, so a verdict is never tagged with a
    // generation newer than the lists it was computed from.
    let generation = POLICY_GEN.get(0).map_or(0, |g| *g);
    let (addr, family, spread) = match src {
        Addr::V4(a) => {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(a);
            (addr, FAMILY_V4, u32::from_ne_bytes(*a))
        }
        Addr::V6(a) => {
            let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            (*a, FAMILY_V6, w(0) ^ w(4) ^ w(8) ^ w(12))
        }
    };
    let index = spread.wrapping_mul(0x9E37_79B1) >> (32 - VERDICT_CACHE_BITS);
    let Some(slot) = VERDICT_CACHE.get_ptr_mut(index) else {
        return lookup_lists(src, clock).0;
    };
    // SAFETY: a per-CPU map slot: valid for the program's run and only this CPU
    // touches it (the program runs to completion without preemption).
    let slot = unsafe { &mut *slot };
    if slot.generation == generation
        && slot.family == family
        && slot.addr == addr
        && (slot.expires_at_ns == 0 || slot.expires_at_ns > clock.now())
    {
        return slot.listed;
    }
    let (listed, expires_at_ns) = lookup_lists(src, clock);
    *slot = VerdictSlot {
        addr,
        family,
        listed,
        generation,
        expires_at_ns,
    };
    listed
}

const VERDICT_CACHE_BITS: u32 = VERDICT_CACHE_SLOTS.trailing_zeros();

/// The allow/block tries (allowlist first), with the matched entry's expiry.
/// (IPv4 sources get here only when their V4_SUMMARY_16 and V4_SUMMARY bits are set.)
#[inline(always)]
fn lookup_lists(src: &Addr, clock: &mut Clock) -> (u32, u64) {
    match src {
        Addr::V4(a) => {
            if let Some(expires) = listed(&ALLOW_V4, *a, clock) {
                return (LISTED_ALLOW, expires);
            }
            if let Some(expires) = listed(&BLOCK_V4, *a, clock) {
                return (LISTED_BLOCK, expires);
            }
        }
        Addr::V6(a) => {
            if let Some(expires) = listed(&ALLOW_V6, *a, clock) {
                return (LISTED_ALLOW, expires);
            }
            if let Some(expires) = listed(&BLOCK_V6, *a, clock) {
                return (LISTED_BLOCK, expires);
            }
        }
    }
    (LISTED_NONE, 0)
}

/// Are rate limits applied to this packet's destination port?
#[inline(always)]
fn rate_limited_port(packet: &IpPacket, config: &XdpConfig) -> bool {
    if config.ports_scoped == 0 || packet.later_fragment {
        // Later fragments carry no port: treat them as aimed at a protected port.
        return true;
    }
    match packet.dst_port() {
        Some(port) => PORTS.get(0).is_some_and(|set| set.contains(port)),
        None => false,
    }
}

/// Reads the clock at most once per packet, and only when needed.
struct Clock(u64);

impl Clock {
    #[inline(always)]
    fn now(&mut self) -> u64 {
        if self.0 == 0 {
            // SAFETY: a BPF helper without arguments or side effects.
            self.0 = unsafe { bpf_ktime_get_coarse_ns() };
        }
        self.0
    }
}

/// Longest-prefix match that honours expiry: an expired entry is deleted and the
/// lookup repeated, so a shorter covering prefix still applies. Returns the matched
/// entry's expiry (0 = permanent).
#[inline(always)]
fn listed<const N: usize, const MAX: usize>(
    map: &LpmTrie<[u8; N], PolicyEntry, MAX>,
    addr: [u8; N],
    clock: &mut Clock,
) -> Option<u64> {
    let bits = N as u32 * 8;
    let key = Key::new(bits, addr);
    for _ in 0..MAX_EXPIRED_PER_LOOKUP {
        let entry = map.get(&key)?;
        let expires_at = entry.expires_at_ns;
        if expires_at == 0 || expires_at > clock.now() {
            return Some(expires_at);
        }
        let prefix_len = entry.prefix_len;
        let prefix_len = if prefix_len > bits { bits } else { prefix_len };
        let _ = map.remove(&Key::new(prefix_len, prefix::masked(addr, prefix_len)));
    }
    None
}

/// Counts the verdict (packets, and bytes of the frame as it leaves the program: a
/// steered frame with its encapsulation, a decapsulated one without) per interface,
/// and samples drops.
#[inline(always)]
fn account(ctx: &XdpContext, config: Option<&XdpConfig>, reason: Reason, src: &AddrKey) {
    let ifindex = ctx.ingress_ifindex() as u32;
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index(ifindex, reason)) {
        // SAFETY: a per-CPU map slot, valid for the program's run, written only by
        // this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
    if !reason.is_sampled() {
        return;
    }
    let Some(config) = config else { return };
    let every = config.sample_every;
    // SAFETY: a BPF helper without arguments.
    if every != 0 && (every == 1 || unsafe { bpf_get_prandom_u32() } % every == 0) {
        let mut event = DropEvent {
            reason: reason as u32,
            ifindex,
            weight: every,
            ..DropEvent::default()
        };
        event.family = src.family;
        event.addr = src.addr;
        let _ = DROP_EVENTS.output(event, 0);
    }
    if config.log_drops != 0 {
        info!(
            ctx,
            "xdp drop: reason={} ifindex={}", reason as u32, ifindex
        );
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
