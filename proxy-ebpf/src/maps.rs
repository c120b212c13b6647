//! Every map of the XDP program. Userspace (`proxy/src/ebpf/maps/`) is the only writer
//! of policy; the program only reads policy and writes counters, rate state and samples.
//! List sizes here are the defaults from `proxy-common`; the loader resizes them from the config.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LpmTrie, PerCpuArray, ProgramArray, RingBuf},
    macros::btf_map,
};
use proxy_common::{
    AddrKey, COUNTERS_LEN, CookieScratch, Counter, DEFAULT_MAX_ALLOW_ENTRIES as ALLOW_ENTRIES,
    DEFAULT_MAX_BLOCK_ENTRIES as BLOCK_ENTRIES, DropEvent, ListenerCounters, ListenerKey,
    ListenerState, MAX_LISTENERS, MAX_SERVICE_ADDRS, PolicyEntry, PortListeners, PortSet,
    RateSketch, V4_SUMMARY_16_WORDS, V4_SUMMARY_WORDS, VERDICT_CACHE_SLOTS, VerdictSlot, XdpConfig,
    steering::{STEER_MAX_MEMBERS, SteerPeer, SteerScratch, SteerSlot, SteerState},
};

/// Sources that skip every other check. Written by userspace (config, `proxy allow`).
#[btf_map]
pub static ALLOW_V4: LpmTrie<[u8; 4], PolicyEntry, { ALLOW_ENTRIES as usize }> = LpmTrie::new();
#[btf_map]
pub static ALLOW_V6: LpmTrie<[u8; 16], PolicyEntry, { ALLOW_ENTRIES as usize }> = LpmTrie::new();

/// Sources dropped outright, with optional expiry. Written by userspace (config,
/// `proxy block`, auto-blocking); the program deletes entries it finds expired.
#[btf_map]
pub static BLOCK_V4: LpmTrie<[u8; 4], PolicyEntry, { BLOCK_ENTRIES as usize }> = LpmTrie::new();
#[btf_map]
pub static BLOCK_V6: LpmTrie<[u8; 16], PolicyEntry, { BLOCK_ENTRIES as usize }> = LpmTrie::new();

/// Rate limits and sampling. Written by userspace, read on every packet.
#[btf_map]
pub static CONFIG: Array<XdpConfig, 1> = Array::new();

/// Destination ports the rate limits are scoped to (when `ports_scoped`). Userspace writes.
#[btf_map]
pub static PORTS: Array<PortSet, 1> = Array::new();

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

/// Changes after every list change (userspace writes it after the change), so cached
/// verdicts computed before the change are not used after it.
#[btf_map]
pub static POLICY_GEN: Array<u64, 1> = Array::new();

/// One bit per IPv4 /24: set by userspace before an entry touching that /24 is
/// inserted, cleared only after no entry touches it. Clear bit: no list can match.
#[btf_map]
pub static V4_SUMMARY: Array<u64, { V4_SUMMARY_WORDS as usize }> = Array::new();

/// One bit per IPv4 /16: set by userspace before any V4_SUMMARY bit in that /16, cleared
/// only after all of them are. 8 KiB, read first: random flood sources miss the 2 MiB
/// V4_SUMMARY in cache, not this.
#[btf_map]
pub static V4_SUMMARY_16: Array<u64, { V4_SUMMARY_16_WORDS as usize }> = Array::new();

/// Recent allow/block verdicts per source, per CPU; only the program touches it.
#[btf_map]
pub static VERDICT_CACHE: PerCpuArray<VerdictSlot, { VERDICT_CACHE_SLOTS as usize }> =
    PerCpuArray::new();

/// The daemon's TCP listeners and their SYN cookie state. Userspace writes.
#[btf_map]
pub static LISTENERS: HashMap<ListenerKey, ListenerState, { MAX_LISTENERS as usize }> =
    HashMap::new();

/// The listeners bound to a port's wildcard addresses, by port (one array read instead
/// of a LISTENERS lookup). Userspace writes.
#[btf_map]
pub static WILDCARD_LISTENERS: Array<PortListeners, 65536> = Array::new();

/// SYNs and cookie verdicts per listener, per CPU. The program writes, userspace sums.
#[btf_map]
pub static LISTENER_COUNTERS: PerCpuArray<ListenerCounters, { MAX_LISTENERS as usize }> =
    PerCpuArray::new();

/// TCP (0) and UDP (1) ports served or allowed (the service filter), TCP ports with
/// a listener bound to a specific address (2). Userspace writes.
#[btf_map]
pub static SERVED_PORTS: Array<PortSet, 3> = Array::new();

/// Destinations the service filter applies to. Userspace writes.
#[btf_map]
pub static SERVICE_ADDRS: HashMap<AddrKey, u32, { MAX_SERVICE_ADDRS as usize }> = HashMap::new();

/// The TCP segment handed to the SYN cookie stage with its tail call, and the stage's
/// option parser cells, per CPU (see `handoff.rs`). Only the program touches it.
#[btf_map]
pub static COOKIE_SCRATCH: PerCpuArray<CookieScratch, 1> = PerCpuArray::new();

/// Index 0: `proxy_xdp_services` (tail-called by `proxy_xdp` and `proxy_xdp_steer`);
/// 1: `proxy_xdp_cookies` (tail-called by `proxy_xdp_services`); 2: `proxy_xdp_steer`
/// (tail-called by `proxy_xdp`). Userspace fills it at load.
#[btf_map]
pub static SERVICES: ProgramArray<3> = ProgramArray::new();

/// Steering on or off, this node's address and GUE port, the active slot of
/// STEER_SLOTS. Userspace writes.
#[btf_map]
pub static STEER_STATE: Array<SteerState, 1> = Array::new();

/// The fleet's forwarding table: the one in use and the next. Userspace writes a
/// whole slot, only the one not in use, then switches `active_slot`.
#[btf_map]
pub static STEER_SLOTS: Array<SteerSlot, 2> = Array::new();

/// The steered VIPs with their listener ports (port 0: the VIP itself, for ICMP
/// errors). Userspace writes.
#[btf_map]
pub static STEER_VIPS: HashMap<ListenerKey, u32, { MAX_LISTENERS as usize }> = HashMap::new();

/// What `proxy_xdp` decided for the packet it passes to `proxy_xdp_steer` (a
/// [`Reason`](proxy_common::Reason): passed or allowlisted), per CPU: a tail call runs
/// on the same CPU, to completion. Only the program touches it.
#[btf_map]
pub static STEER_ENTRY_VERDICT: PerCpuArray<u32, 1> = PerCpuArray::new();

/// Per-CPU room for what the steering code encapsulates (the BPF stack is too small).
/// Only the program touches it.
#[btf_map]
pub static STEER_SCRATCH: PerCpuArray<SteerScratch, 1> = PerCpuArray::new();

/// The members (of either slot) encapsulated packets are accepted from, and how to
/// reach each: userspace inserts and deletes members, the program learns their MACs
/// and interface from their probes.
#[btf_map]
pub static STEER_PEERS: HashMap<AddrKey, SteerPeer, { 2 * STEER_MAX_MEMBERS }> = HashMap::new();
