//! Benchmark and lab XDP programs (never attached by the product), used by
//! `cargo xtask bench xdp` and the tests:
//! - `xdp_pass`: passes everything. On a veth peer it makes the pair accept the
//!   frames an XDP program sends back with XDP_TX (veth needs an XDP program, or
//!   GRO, on the receiving end);
//! - `bare_drop`: returns XDP_DROP, the floor every ratio is taken against;
//! - `spoof_source`: rewrites the IPv4 source of the (Ethernet + IPv4) test packet
//!   to a new address on every run, then tail-calls the program in `TARGET[0]`.
//!   BPF_PROG_TEST_RUN reuses one buffer across repeats, so each repeat sees a new
//!   source: a spoofed-source flood. Its own cost is measured by targeting `bare_drop`;
//! - `lru_per_source`: the design the product avoids, for comparison: per-source
//!   state in an LRU hash (one entry inserted per unseen source), then XDP_PASS;
//! - `replay`: writes the frame in `TEMPLATE[0]` over the test packet (optionally with
//!   a new IPv4 source each run), then tail-calls `TARGET[0]`: for programs that
//!   rewrite the packet (SYN cookie answers), every repeat sees the original again.
//!   For programs that also move the frame's start (steering encapsulates and
//!   decapsulates), it first moves the start back by `head_undo` bytes from the
//!   second run on.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, LruHashMap, ProgramArray},
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_store_bytes},
    macros::{btf_map, xdp},
    programs::XdpContext,
};

/// The product's verifier workarounds (only `bounded_index` is used here).
#[allow(dead_code)]
#[path = "../verifier.rs"]
mod verifier;

#[btf_map]
static TARGET: ProgramArray<1> = ProgramArray::new();

/// The frame `replay` restores before every run.
#[repr(C)]
pub struct Template {
    /// Frame length (1..=128).
    pub len: u32,
    /// Non-zero: step the IPv4 source address (bytes 26..30) on every run.
    pub rotate_source: u32,
    /// What the target moves the frame's start by per run, undone before the next
    /// (`bpf_xdp_adjust_head`'s delta; 0: it does not).
    pub head_undo: i32,
    /// Runs so far (set to 0 before a measurement).
    pub runs: u32,
    pub bytes: [u8; 128],
}

#[btf_map]
static TEMPLATE: Array<Template, 1> = Array::new();

/// Per-source packet counts, the naive way (65,536 sources).
#[btf_map]
static PER_SOURCE: LruHashMap<u32, u64, 65536> = LruHashMap::new();

#[xdp]
pub fn lru_per_source(ctx: XdpContext) -> u32 {
    const SRC: usize = 14 + 12;
    if ctx.data() + SRC + 4 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: the 4 bytes at SRC are inside the packet (checked above).
    let src = unsafe { core::ptr::read_unaligned((ctx.data() + SRC) as *const u32) };
    match PER_SOURCE.get_ptr_mut(src) {
        // SAFETY: a pointer to a live map value; a racing update only miscounts.
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = PER_SOURCE.insert(src, 1, 0);
        }
    }
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bare_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn spoof_source(ctx: XdpContext) -> u32 {
    const SRC: usize = 14 + 12;
    if ctx.data() + SRC + 4 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let src = (ctx.data() + SRC) as *mut u32;
    // SAFETY: the 4 bytes at SRC are inside the packet (checked above), which this
    // program may rewrite; the tail call does not return on success.
    unsafe {
        // A multiplicative step walks all 2^32 addresses in a scattered order.
        *src = (*src).wrapping_mul(0x9E37_79B1).wrapping_add(1);
        TARGET.tail_call(&ctx, 0);
    }
    xdp_action::XDP_ABORTED
}

#[xdp]
pub fn replay(ctx: XdpContext) -> u32 {
    let Some(template) = TEMPLATE.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a map value, valid for the run; only this program writes it (one CPU).
    let t = unsafe { &mut *template };
    let len = verifier::bounded_index(t.len as usize, 127);
    if len < 34 {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: a helper on the program's own context; it checks the new start.
    if t.runs > 0 && t.head_undo != 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, t.head_undo) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    t.runs = t.runs.wrapping_add(1);
    if t.rotate_source != 0 {
        let src = u32::from_ne_bytes([t.bytes[26], t.bytes[27], t.bytes[28], t.bytes[29]]);
        let next = src.wrapping_mul(0x9E37_79B1).wrapping_add(1).to_ne_bytes();
        t.bytes[26..30].copy_from_slice(&next);
    }
    let delta = len as i32 - (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: helpers on the program's own context; the store reads `len` (≤ 127)
    // bytes of the 128-byte template.
    unsafe {
        if delta != 0 && bpf_xdp_adjust_tail(ctx.ctx, delta) != 0 {
            return xdp_action::XDP_ABORTED;
        }
        if bpf_xdp_store_bytes(ctx.ctx, 0, t.bytes.as_mut_ptr() as *mut _, len as u32) != 0 {
            return xdp_action::XDP_ABORTED;
        }
        TARGET.tail_call(&ctx, 0);
    }
    xdp_action::XDP_ABORTED
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
