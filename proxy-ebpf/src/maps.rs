//! Every map of the XDP program. Userspace (`proxy/src/ebpf/maps.rs`) is the only writer
//! of policy; the program only reads policy and writes counters, rate state and samples.
//! Sizes here are defaults; the loader resizes the lists from the config.

use aya_ebpf::{
    btf_maps::{Array, LpmTrie, PerCpuArray, RingBuf},
    macros::btf_map,
};
use proxy_common::{COUNTERS_LEN, Counter, DropEvent, PolicyEntry, RateSketch, XdpConfig};

/// Sources that skip every other check. Written by userspace (config, `proxy allow`).
#[btf_map]
pub static ALLOW_V4: LpmTrie<[u8; 4], PolicyEntry, 4096> = LpmTrie::new();
#[btf_map]
pub static ALLOW_V6: LpmTrie<[u8; 16], PolicyEntry, 4096> = LpmTrie::new();

/// Sources dropped outright, with optional expiry. Written by userspace (config,
/// `proxy block`, auto-blocking); the program deletes entries it finds expired.
#[btf_map]
pub static BLOCK_V4: LpmTrie<[u8; 4], PolicyEntry, 65536> = LpmTrie::new();
#[btf_map]
pub static BLOCK_V6: LpmTrie<[u8; 16], PolicyEntry, 65536> = LpmTrie::new();

/// Rate limits and sampling. Written by userspace, read on every packet.
#[btf_map]
pub static CONFIG: Array<XdpConfig, 1> = Array::new();

/// Destination ports the rate limits are scoped to (when `ports_scoped`). Userspace writes.
#[btf_map]
pub static PORTS: Array<u8, 65536> = Array::new();

/// Packets and bytes per (interface, reason), per CPU. The program writes, userspace sums.
#[btf_map]
pub static COUNTERS: PerCpuArray<Counter, { COUNTERS_LEN as usize }> = PerCpuArray::new();

/// Sampled drops for userspace's aggregated logs and `proxy top`. 256 KiB.
#[btf_map]
pub static DROP_EVENTS: RingBuf<DropEvent, { 256 * 1024 }> = RingBuf::new();

/// Per-source rate state (GCRA in a count-min sketch); index 0 packets/s, 1 SYN/s.
/// Only the program touches it.
#[btf_map]
pub static RATE_SKETCH: Array<RateSketch, 2> = Array::new();
