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
//!   state in an LRU hash (one entry inserted per unseen source), then XDP_PASS.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{LruHashMap, ProgramArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};

#[btf_map]
static TARGET: ProgramArray<1> = ProgramArray::new();

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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
