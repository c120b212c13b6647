//! The contract between the XDP program (`proxy-ebpf`) and the daemon (`proxy`).
//!
//! Every map name, key and value shared by the two halves is declared here once:
//! `#[repr(C)]`, fixed-width integers only, explicit padding, no `bool`/`usize`/`Option`.
//! The kernel only reads policy and counts; userspace owns every policy write.
#![no_std]

pub mod prefix;
pub mod rate;
pub mod steering;

/// Default capacity of each blocklist trie (IPv4 and IPv6); `xdp.max_block_entries`.
pub const DEFAULT_MAX_BLOCK_ENTRIES: u32 = 65536;
/// Default capacity of each allowlist trie (IPv4 and IPv6); `xdp.max_allow_entries`.
pub const DEFAULT_MAX_ALLOW_ENTRIES: u32 = 4096;

/// Map names as the kernel (and `bpftool map show`) sees them; also the pin file names.
pub mod map_names {
    /// LPM trie, IPv4 allowlist: `LpmKey<[u8; 4]>` → [`PolicyEntry`](super::PolicyEntry).
    pub const ALLOW_V4: &str = "ALLOW_V4";
    /// LPM trie, IPv6 allowlist: `LpmKey<[u8; 16]>` → [`PolicyEntry`](super::PolicyEntry).
    pub const ALLOW_V6: &str = "ALLOW_V6";
    /// LPM trie, IPv4 blocklist: `LpmKey<[u8; 4]>` → [`PolicyEntry`](super::PolicyEntry).
    pub const BLOCK_V4: &str = "BLOCK_V4";
    /// LPM trie, IPv6 blocklist: `LpmKey<[u8; 16]>` → [`PolicyEntry`](super::PolicyEntry).
    pub const BLOCK_V6: &str = "BLOCK_V6";
    /// Array of one [`XdpConfig`](super::XdpConfig): rate limits, sampling, hash seeds.
    pub const CONFIG: &str = "CONFIG";
    /// Array of one [`PortSet`](super::PortSet): destination ports the rate limits
    /// apply to (when scoped).
    pub const PORTS: &str = "PORTS";
    /// Per-CPU array of [`Counter`](super::Counter), index [`counter_index`](super::counter_index).
    pub const COUNTERS: &str = "COUNTERS";
    /// Ring buffer of sampled [`DropEvent`](super::DropEvent)s.
    pub const DROP_EVENTS: &str = "DROP_EVENTS";
    /// Array of two [`RateSketch`](super::RateSketch)es: index 0 packets/s, 1 SYN/s.
    pub const RATE_SKETCH: &str = "RATE_SKETCH";
    /// Array of one u64: changes (to a never-reused value) after every list change,
    /// invalidating the program's per-CPU verdict cache.
    pub const POLICY_GEN: &str = "POLICY_GEN";
    /// Array of u64 words, one bit per IPv4 /24: set if any allow/block entry may
    /// intersect it. A clear bit lets the program skip both LPM lookups.
    pub const V4_SUMMARY: &str = "V4_SUMMARY";
    /// Array of u64 words, one bit per IPv4 /16: set if any V4_SUMMARY bit in that /16
    /// is set. 8 KiB that stays in cache, checked before V4_SUMMARY (2 MiB, a cache
    /// miss per packet when a flood's sources are random).
    pub const V4_SUMMARY_16: &str = "V4_SUMMARY_16";
    /// Per-CPU direct-mapped cache of recent list verdicts ([`VerdictSlot`](super::VerdictSlot)).
    pub const VERDICT_CACHE: &str = "VERDICT_CACHE";
    /// Program array of the [`TAIL_PROGRAMS`](super::TAIL_PROGRAMS), by index.
    pub const SERVICES: &str = "SERVICES";
    /// Hash [`ListenerKey`](super::ListenerKey) → [`ListenerState`](super::ListenerState):
    /// the daemon's TCP listeners and whether SYN cookies are answered for each.
    pub const LISTENERS: &str = "LISTENERS";
    /// Per-CPU array of [`ListenerCounters`](super::ListenerCounters), indexed by
    /// [`ListenerState::index`](super::ListenerState).
    pub const LISTENER_COUNTERS: &str = "LISTENER_COUNTERS";
    /// Array of [`PortListeners`](super::PortListeners), indexed by port: the
    /// listeners bound to the wildcard addresses (also in LISTENERS), found with one
    /// array read.
    pub const WILDCARD_LISTENERS: &str = "WILDCARD_LISTENERS";
    /// Array of three [`PortSet`](super::PortSet)s: TCP (index 0) and UDP (1) ports that
    /// are served (listeners) or allowed, which the service filter does not drop; TCP
    /// ports with a listener bound to a specific address (2).
    pub const SERVED_PORTS: &str = "SERVED_PORTS";
    /// Hash [`AddrKey`](super::AddrKey) → u32: the host's service addresses, the
    /// destinations the service filter applies to.
    pub const SERVICE_ADDRS: &str = "SERVICE_ADDRS";
    /// Array of one [`SteerState`](super::steering::SteerState): steering on, this
    /// node's address and GUE port, the active table slot.
    pub const STEER_STATE: &str = "STEER_STATE";
    /// Array of two [`SteerSlot`](super::steering::SteerSlot)s: the fleet's forwarding
    /// table in use and the next one.
    pub const STEER_SLOTS: &str = "STEER_SLOTS";
    /// Hash [`ListenerKey`](super::ListenerKey) → u32: the steered VIPs and ports (port
    /// 0: the VIP itself, for ICMP errors about its flows).
    pub const STEER_VIPS: &str = "STEER_VIPS";
    /// Hash [`AddrKey`](super::AddrKey) → [`SteerPeer`](super::steering::SteerPeer):
    /// the members encapsulated packets may come from, and how to reach each.
    pub const STEER_PEERS: &str = "STEER_PEERS";

    /// Maps derived from the config (and the fleet's table) at every (re)load: not pinned.
    pub const UNPINNED: [&str; 10] = [
        LISTENERS,
        LISTENER_COUNTERS,
        WILDCARD_LISTENERS,
        SERVED_PORTS,
        SERVICE_ADDRS,
        SERVICES,
        STEER_STATE,
        STEER_SLOTS,
        STEER_VIPS,
        STEER_PEERS,
    ];

    /// Maps pinned under the pin directory so policy and counters survive a restart.
    pub const PINNED: [&str; 10] = [
        ALLOW_V4,
        ALLOW_V6,
        BLOCK_V4,
        BLOCK_V6,
        CONFIG,
        PORTS,
        COUNTERS,
        POLICY_GEN,
        V4_SUMMARY,
        V4_SUMMARY_16,
    ];
}

/// The XDP program's function name (`bpftool prog show` lists it).
pub const PROGRAM_NAME: &str = "proxy_xdp";
/// The programs [`PROGRAM_NAME`] chains to by tail call, at their index in the
/// SERVICES program array: the service filter, the SYN cookie stage, and connection
/// steering (encapsulation to the node that owns a flow, and decapsulation).
pub const TAIL_PROGRAMS: [&str; 3] = ["proxy_xdp_services", "proxy_xdp_cookies", "proxy_xdp_steer"];
/// Index of each program in the SERVICES program array.
pub const TAIL_SERVICES: u32 = 0;
pub const TAIL_COOKIES: u32 = 1;
pub const TAIL_STEER: u32 = 2;

/// Why the program passed or dropped a packet. Index into the per-interface counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Parsed, no policy matched, under every limit: XDP_PASS.
    Passed = 0,
    /// Source matched the allowlist: XDP_PASS, no further checks.
    Allowlisted = 1,
    /// Source matched an unexpired blocklist entry: XDP_DROP.
    Blocklisted = 2,
    /// Source over its packets-per-second limit: XDP_DROP.
    RatePps = 3,
    /// Source over its TCP SYN-per-second limit: XDP_DROP.
    RateSyn = 4,
    /// Truncated or invalid headers: XDP_DROP.
    Malformed = 5,
    /// Not IPv4/IPv6 (ARP, LLDP, ...): XDP_PASS.
    NonIp = 6,
    /// A SYN to a listener with SYN cookies on, answered with a cookie SYN-ACK: XDP_TX.
    SynCookieSent = 7,
    /// The ACK of a cookie SYN-ACK, cookie valid: XDP_PASS (the kernel accepts it).
    SynCookieAckOk = 8,
    /// An ACK to a cookie listener with no connection and an invalid cookie: XDP_DROP.
    SynCookieAckBad = 9,
    /// To a service address, at a port no listener serves and not allowed: XDP_DROP.
    PortClosed = 10,
    /// TCP to a steered VIP (or an ICMP error about such a flow) without a socket
    /// here, sent in GUE to its row's primary: XDP_TX (or XDP_REDIRECT).
    Steered = 11,
    /// Without a socket at the row's primary either, sent on to the row's secondary.
    SecondChance = 12,
    /// Arrived in GUE from a member and handed to the stack here (a socket here, a
    /// SYN, or a cookie ACK for this node).
    Decapsulated = 13,
    /// No node on its path has a socket for it: handed to the stack here (its last
    /// hop), which answers as it would without steering (a reset).
    Unowned = 14,
    /// Could not be steered (no member to send to, the member not reachable yet, the
    /// frame too big for the MTU) or malformed GUE from a member: XDP_DROP.
    SteerFailed = 15,
}

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::Passed,
        Reason::Allowlisted,
        Reason::Blocklisted,
        Reason::RatePps,
        Reason::RateSyn,
        Reason::Malformed,
        Reason::NonIp,
        Reason::SynCookieSent,
        Reason::SynCookieAckOk,
        Reason::SynCookieAckBad,
        Reason::PortClosed,
        Reason::Steered,
        Reason::SecondChance,
        Reason::Decapsulated,
        Reason::Unowned,
        Reason::SteerFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::Passed => "passed",
            Reason::Allowlisted => "allowlisted",
            Reason::Blocklisted => "blocklisted",
            Reason::RatePps => "rate_pps",
            Reason::RateSyn => "rate_syn",
            Reason::Malformed => "malformed",
            Reason::NonIp => "non_ip",
            Reason::SynCookieSent => "syn_cookie_sent",
            Reason::SynCookieAckOk => "syn_cookie_ack_ok",
            Reason::SynCookieAckBad => "syn_cookie_ack_bad",
            Reason::PortClosed => "port_closed",
            Reason::Steered => "steered",
            Reason::SecondChance => "second_chance",
            Reason::Decapsulated => "decapsulated",
            Reason::Unowned => "unowned",
            Reason::SteerFailed => "steer_failed",
        }
    }

    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Reason::Blocklisted
                | Reason::RatePps
                | Reason::RateSyn
                | Reason::Malformed
                | Reason::SynCookieAckBad
                | Reason::PortClosed
                | Reason::SteerFailed
        )
    }

    /// Verdicts that send the packet on to another node.
    pub const fn is_steer(self) -> bool {
        matches!(self, Reason::Steered | Reason::SecondChance)
    }

    /// Verdicts whose packet never reaches the stack (drops and cookie answers): sampled
    /// into DROP_EVENTS.
    pub const fn is_sampled(self) -> bool {
        self.is_drop() || matches!(self, Reason::SynCookieSent)
    }

    pub const fn from_u32(v: u32) -> Option<Reason> {
        if v < REASON_COUNT {
            Some(Reason::ALL[v as usize])
        } else {
            None
        }
    }
}

pub const REASON_COUNT: u32 = 16;
/// Counter slots per interface (a power of two ≥ [`REASON_COUNT`]).
pub const REASON_SLOTS: u32 = 16;
/// Interfaces with `ifindex < MAX_IFINDEX` get their own counters; higher ones share slot 0.
pub const MAX_IFINDEX: u32 = 1024;
pub const COUNTERS_LEN: u32 = MAX_IFINDEX * REASON_SLOTS;

/// Index into the COUNTERS map for `(ifindex, reason)`.
#[inline(always)]
pub const fn counter_index(ifindex: u32, reason: Reason) -> u32 {
    let slot = if ifindex < MAX_IFINDEX { ifindex } else { 0 };
    slot * REASON_SLOTS + reason as u32
}

/// Packets and bytes seen for one (interface, reason), per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Key of the LPM tries: prefix length in bits, then the address in network byte order.
/// Same layout as the kernel's `struct bpf_lpm_trie_key_u8` and aya's `lpm_trie::Key`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpmKey<const N: usize> {
    pub prefix_len: u32,
    pub addr: [u8; N],
}

/// Who put an entry into the allow/block list.
pub mod origin {
    /// From the configuration file (re-applied on reload).
    pub const CONFIG: u32 = 1;
    /// Added by an operator at runtime (`proxy block add`).
    pub const MANUAL: u32 = 2;
    /// Added by the daemon's auto-blocker.
    pub const AUTO: u32 = 3;
    /// Shared by the fleet (`[fleet.policy]`): applied from the store, removed with it.
    pub const FLEET: u32 = 4;
}

pub const REASON_TEXT_LEN: usize = 48;

/// Value of the allow/block LPM tries.
///
/// `packed(4)` because the kernel stores the value right after a 4-byte IPv4 key, so
/// it is only 4-byte aligned there; the program reads the u64 as two 32-bit loads.
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct PolicyEntry {
    /// CLOCK_MONOTONIC deadline in ns (`bpf_ktime_get_ns`); 0 = never expires.
    /// The program ignores (and deletes) entries whose deadline has passed.
    pub expires_at_ns: u64,
    /// Wall-clock creation time, seconds since the epoch (for `proxy block list`).
    pub created_at_unix: u64,
    /// One of [`origin`].
    pub origin: u32,
    /// The entry's own prefix length, so the program can delete it once expired.
    pub prefix_len: u32,
    /// Free text, NUL-padded UTF-8 (for operators; the program never reads it).
    pub reason: [u8; REASON_TEXT_LEN],
}

/// One direction of rate limiting (packets/s or SYN/s) as the program uses it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateParams {
    /// Sustained rate per source; 0 disables this limit.
    pub per_sec: u32,
    /// Packets a source may send back to back before the rate applies.
    pub burst: u32,
    /// `1e9 / per_sec`: virtual time one packet costs (GCRA emission interval).
    pub interval_ns: u64,
    /// `burst * interval_ns`: how far ahead of now a source's virtual time may run.
    pub tolerance_ns: u64,
}

impl RateParams {
    pub const fn new(per_sec: u32, burst: u32) -> RateParams {
        if per_sec == 0 {
            return RateParams {
                per_sec: 0,
                burst: 0,
                interval_ns: 0,
                tolerance_ns: 0,
            };
        }
        let burst = if burst == 0 { 1 } else { burst };
        let interval_ns = 1_000_000_000u64 / per_sec as u64;
        RateParams {
            per_sec,
            burst,
            interval_ns,
            tolerance_ns: interval_ns * burst as u64,
        }
    }
}

/// A bit per TCP/UDP port (bit `p & 63` of word `p >> 6`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PortSet {
    pub words: [u64; 1024],
}

impl PortSet {
    pub const fn empty() -> PortSet {
        PortSet { words: [0; 1024] }
    }

    #[inline(always)]
    pub const fn contains(&self, port: u16) -> bool {
        self.words[(port >> 6) as usize] & (1u64 << (port & 63)) != 0
    }

    pub fn insert(&mut self, port: u16) {
        self.words[(port >> 6) as usize] |= 1u64 << (port & 63);
    }
}

/// Words in V4_SUMMARY: 2^24 /24 prefixes, 64 per word.
pub const V4_SUMMARY_WORDS: u32 = 1 << 18;

/// Bit of V4_SUMMARY covering an IPv4 address (host order): (word index, bit mask).
#[inline(always)]
pub const fn v4_summary_bit(addr: u32) -> (u32, u64) {
    let slash24 = addr >> 8;
    (slash24 >> 6, 1u64 << (slash24 & 63))
}

/// Words in V4_SUMMARY_16: 2^16 /16 prefixes, 64 per word.
pub const V4_SUMMARY_16_WORDS: u32 = 1 << 10;

/// Bit of V4_SUMMARY_16 covering an IPv4 address (host order): (word index, bit mask).
#[inline(always)]
pub const fn v4_summary_16_bit(addr: u32) -> (u32, u64) {
    let slash16 = addr >> 16;
    (slash16 >> 6, 1u64 << (slash16 & 63))
}

/// Slots of the per-CPU verdict cache (power of two).
pub const VERDICT_CACHE_SLOTS: u32 = 4096;

/// List verdicts kept in the verdict cache.
pub const LISTED_NONE: u32 = 0;
pub const LISTED_ALLOW: u32 = 1;
pub const LISTED_BLOCK: u32 = 2;

/// One slot of the per-CPU verdict cache: the allow/block verdict for one source,
/// valid while `generation` equals POLICY_GEN and `expires_at_ns` has not passed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictSlot {
    /// Source address (IPv4 in the first 4 bytes; family disambiguates).
    pub addr: [u8; 16],
    pub family: u32,
    /// LISTED_NONE, LISTED_ALLOW or LISTED_BLOCK.
    pub listed: u32,
    /// POLICY_GEN when the verdict was computed (read before the lookups).
    pub generation: u64,
    /// Expiry of the matched entry (0 = none): after it the slot is stale.
    pub expires_at_ns: u64,
}

/// Cells per source in the rate sketch (one per row).
pub const SKETCH_ROWS: usize = 4;
/// Cache lines per sketch (power of two). A source's cells all sit in one line.
pub const SKETCH_LINES: usize = 1 << 13;
pub const SKETCH_LINE_BITS: u32 = 13;

/// Count-min-style sketch of per-source GCRA state: every cell holds a "theoretical
/// arrival time" in ns. A source hashes to one 64-byte line and, in each of the 4
/// rows, to one of that row's 2 cells in the line; its estimate is the minimum over
/// its 4 cells, which never under-estimates (collisions only push cells forward).
/// Fixed size (512 KiB), no allocation, no eviction, one cache line per packet:
/// a spoofed-source flood cannot push real clients out.
#[repr(C)]
pub struct RateSketch {
    pub lines: [rate::SketchLine; SKETCH_LINES],
}

pub const SKETCH_PPS: u32 = 0;
pub const SKETCH_SYN: u32 = 1;

/// Listeners the LISTENERS map holds (and LISTENER_COUNTERS has slots for).
pub const MAX_LISTENERS: u32 = 256;
/// Service addresses the SERVICE_ADDRS map holds.
pub const MAX_SERVICE_ADDRS: u32 = 1024;

/// An address with its family: IPv4 in the first 4 bytes, the rest zero. All zero
/// with a family: the wildcard (`0.0.0.0` / `::`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub addr: [u8; 16],
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u32,
}

impl AddrKey {
    #[inline(always)]
    pub fn v4(addr: [u8; 4]) -> AddrKey {
        let mut key = AddrKey {
            addr: [0; 16],
            family: FAMILY_V4,
        };
        key.addr[..4].copy_from_slice(&addr);
        key
    }

    #[inline(always)]
    pub fn v6(addr: [u8; 16]) -> AddrKey {
        AddrKey {
            addr,
            family: FAMILY_V6,
        }
    }
}

/// Key of LISTENERS: where a listener accepts TCP connections.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    /// Bound address; the wildcard matches every destination of its family.
    pub addr: AddrKey,
    /// Host byte order.
    pub port: u32,
}

/// SYN cookie states of a listener (in [`ListenerState::cookies`]).
pub const COOKIES_OFF: u32 = 0;
/// SYNs are answered with cookie SYN-ACKs and cookie ACKs are checked in XDP.
pub const COOKIES_ON: u32 = 1;

/// Value of LISTENERS. Userspace writes it; `cookies` flips in `auto` mode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerState {
    /// [`COOKIES_OFF`] or [`COOKIES_ON`].
    pub cookies: u32,
    /// This listener's slot in LISTENER_COUNTERS (< [`MAX_LISTENERS`]).
    pub index: u32,
}

/// Value of WILDCARD_LISTENERS (index: the port): the listeners bound to the IPv4
/// and the IPv6 wildcard address of a port, each as [`PortListeners::slot`] encodes
/// it (0: none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortListeners {
    pub v4: u16,
    pub v6: u16,
}

impl PortListeners {
    const COOKIES_ON_BIT: u16 = 1 << 15;

    /// A listener's state in 16 bits: its counter index + 1 (it is below
    /// [`MAX_LISTENERS`]), bit 15 for cookies on.
    pub const fn slot(state: ListenerState) -> u16 {
        let on = if state.cookies == COOKIES_ON {
            Self::COOKIES_ON_BIT
        } else {
            0
        };
        on | (state.index as u16 + 1)
    }

    /// The state a slot holds, if any.
    #[inline(always)]
    pub const fn state(slot: u16) -> Option<ListenerState> {
        let index = slot & !Self::COOKIES_ON_BIT;
        if index == 0 {
            return None;
        }
        let cookies = if slot & Self::COOKIES_ON_BIT != 0 {
            COOKIES_ON
        } else {
            COOKIES_OFF
        };
        Some(ListenerState {
            cookies,
            index: index as u32 - 1,
        })
    }
}

/// Per-listener packet counts, per CPU (LISTENER_COUNTERS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerCounters {
    /// SYNs that reached the cookie stage (past allow/block lists and rate limits),
    /// whatever the mode: `auto` decides from their rate.
    pub syns: u64,
    pub cookies_sent: u64,
    pub cookie_acks_ok: u64,
    pub cookie_acks_bad: u64,
}

/// The TCP segment a program hands to `proxy_xdp_cookies` with its tail call, and the
/// cookie stage's working memory: one per CPU (COOKIE_SCRATCH). The caller
/// (`proxy_xdp` or `proxy_xdp_services`) writes where the headers are just before the
/// call, which runs on the same CPU to completion, so the cookie stage does not parse
/// them again. Only the program touches it.
#[repr(C)]
pub struct CookieScratch {
    /// Source and destination addresses and ports laid out as the kernel's `struct
    /// bpf_sock_tuple` (IPv4 in the first 3 words), each word as in the packet
    /// (network order): copied from the packet by the cookie stage a word at a time,
    /// read in place by the socket lookup.
    pub tuple: [u32; 9],
    /// Non-zero: written for the packet being processed and not taken yet.
    pub fresh: u32,
    /// Non-zero: IPv6 (the whole tuple is used).
    pub v6: u32,
    /// Offsets of the IP and TCP headers from the start of the frame (at most
    /// [`COOKIE_L3_MAX`] and [`COOKIE_L4_MAX`]).
    pub l3: u32,
    pub l4: u32,
    /// The TCP flags byte.
    pub tcp_flags: u32,
    /// What the option parser found in a SYN.
    pub options: SynOptions,
}

/// Largest header offsets the cookie stage reads (masks, 2^k - 1): Ethernet with two
/// VLAN tags, IPv4 with options or IPv6 with a few extension headers fit; a segment
/// whose TCP header lies further in goes to the kernel as it is.
pub const COOKIE_L3_MAX: u32 = 0xff;
pub const COOKIE_L4_MAX: u32 = 0x1ff;

/// The options of a client's SYN the cookie can carry, as the program's option
/// parser finds them (u32 cells it reads and writes as memory: see `load_cell` in
/// proxy-ebpf/src/verifier.rs).
#[repr(C)]
pub struct SynOptions {
    /// Where the parser is in the TCP header.
    pub cursor: u32,
    /// The client's window shift, or the parser's "none".
    pub wscale: u32,
    pub sack: u32,
    pub has_tsval: u32,
    /// The client's timestamp value (echoed in ours).
    pub tsval: u32,
}

/// Index of the TCP and UDP port sets in SERVED_PORTS.
pub const SERVED_TCP: u32 = 0;
pub const SERVED_UDP: u32 = 1;
/// Index of the TCP ports with a listener bound to a specific address in
/// SERVED_PORTS: only for these the program looks the address up in LISTENERS
/// before the wildcard.
pub const BOUND_TCP: u32 = 2;

/// The single CONFIG entry, written by userspace, read by the program on every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    pub pps: RateParams,
    pub syn: RateParams,
    /// IPv6 sources are rate-limited per prefix of this length (1..=128).
    pub ipv6_prefix_len: u32,
    /// Non-zero: rate limits apply only to destination ports marked in PORTS.
    pub ports_scoped: u32,
    /// Send one drop event in this many drops to DROP_EVENTS; 0 = none.
    pub sample_every: u32,
    /// Non-zero: log every drop through aya-log (debugging only, costs per packet).
    pub log_drops: u32,
    /// Secret per-row hash seeds, random per pin directory.
    pub hash_seeds: [u64; SKETCH_ROWS],
    /// Non-zero: drop TCP/UDP to service addresses at ports not in SERVED_PORTS.
    pub service_filter: u32,
    /// Listeners with SYN cookies `on` or `auto`: their SYNs go to the services program.
    pub syn_cookie_listeners: u32,
    /// Listeners answering with cookies now: ACKs to listeners are checked too.
    pub syn_cookies_active: u32,
    /// Window scale the kernel will choose for a connection made from a cookie (its
    /// `rcv_wscale`), advertised in cookie SYN-ACKs. Computed by the daemon from sysctls.
    pub synack_wscale: u32,
    /// `net.ipv4.ip_local_port_range`: UDP replies to a bound socket in this range
    /// pass the service filter (the host's own client sockets).
    pub ephemeral_first: u32,
    pub ephemeral_last: u32,
}

/// IP family values in [`DropEvent::family`].
pub const FAMILY_V4: u32 = 4;
pub const FAMILY_V6: u32 = 6;

/// A sampled drop, sent through the DROP_EVENTS ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// Source address; IPv4 uses the first 4 bytes.
    pub addr: [u8; 16],
    pub family: u32,
    /// A [`Reason`] value.
    pub reason: u32,
    pub ifindex: u32,
    /// How many drops this sample stands for (the sampling rate).
    pub weight: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C) plain integers/arrays without padding holes.
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for PolicyEntry {}
    unsafe impl aya::Pod for RateParams {}
    unsafe impl aya::Pod for XdpConfig {}
    unsafe impl aya::Pod for DropEvent {}
    unsafe impl aya::Pod for VerdictSlot {}
    unsafe impl aya::Pod for PortSet {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for ListenerKey {}
    unsafe impl aya::Pod for ListenerState {}
    unsafe impl aya::Pod for PortListeners {}
    unsafe impl aya::Pod for ListenerCounters {}
    unsafe impl aya::Pod for steering::SteerState {}
    unsafe impl aya::Pod for steering::SteerSlot {}
    unsafe impl aya::Pod for steering::SteerPeer {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<PolicyEntry>(), 8 + 8 + 4 + 4 + REASON_TEXT_LEN);
        assert_eq!(size_of::<PolicyEntry>() % 4, 0);
        assert_eq!(size_of::<RateParams>(), 24);
        assert_eq!(
            size_of::<XdpConfig>(),
            2 * 24 + 4 * 4 + 8 * SKETCH_ROWS + 6 * 4
        );
        assert_eq!(size_of::<AddrKey>(), 20);
        assert_eq!(size_of::<ListenerKey>(), 24);
        assert_eq!(size_of::<ListenerState>(), 8);
        assert_eq!(size_of::<PortListeners>(), 4);
        assert_eq!(size_of::<ListenerCounters>(), 32);
        assert_eq!(size_of::<DropEvent>(), 32);
        assert_eq!(size_of::<VerdictSlot>(), 40);
        assert_eq!(size_of::<LpmKey<4>>(), 8);
        assert_eq!(size_of::<LpmKey<16>>(), 20);
    }

    #[test]
    fn rate_params_precompute_gcra_constants() {
        let p = RateParams::new(1000, 50);
        assert_eq!(p.interval_ns, 1_000_000);
        assert_eq!(p.tolerance_ns, 50_000_000);
        assert_eq!(RateParams::new(0, 10), RateParams::default());
        assert_eq!(RateParams::new(10, 0).burst, 1);
    }

    #[test]
    fn port_set_holds_every_port() {
        let mut set = PortSet::empty();
        for p in [1u16, 63, 64, 443, 65535] {
            set.insert(p);
        }
        for p in [1u16, 63, 64, 443, 65535] {
            assert!(set.contains(p), "{p}");
        }
        assert!(!set.contains(0) && !set.contains(444) && !set.contains(65534));
        assert_eq!(size_of::<PortSet>(), 8192);
    }

    #[test]
    fn a_port_slot_holds_a_listener_state() {
        assert_eq!(PortListeners::state(0), None);
        for index in [0, 1, 77, MAX_LISTENERS - 1] {
            for cookies in [COOKIES_OFF, COOKIES_ON] {
                let state = ListenerState { cookies, index };
                let slot = PortListeners::slot(state);
                assert_ne!(slot, 0);
                assert_eq!(PortListeners::state(slot), Some(state));
            }
        }
    }

    #[test]
    fn v4_summary_bit_covers_a_slash24() {
        let a = u32::from_be_bytes([198, 51, 100, 9]);
        let b = u32::from_be_bytes([198, 51, 100, 250]);
        let c = u32::from_be_bytes([198, 51, 101, 9]);
        assert_eq!(v4_summary_bit(a), v4_summary_bit(b));
        assert_ne!(v4_summary_bit(a), v4_summary_bit(c));
        assert!(v4_summary_bit(u32::MAX).0 < V4_SUMMARY_WORDS);
        // A /16 bit covers the four V4_SUMMARY words of its 256 /24s.
        let d = u32::from_be_bytes([198, 51, 0, 0]);
        let e = u32::from_be_bytes([198, 52, 100, 9]);
        for same in [b, c, d] {
            assert_eq!(v4_summary_16_bit(a), v4_summary_16_bit(same));
            assert_eq!(v4_summary_bit(a).0 / 4, v4_summary_bit(same).0 / 4);
        }
        assert_ne!(v4_summary_16_bit(a), v4_summary_16_bit(e));
        assert!(v4_summary_16_bit(u32::MAX).0 < V4_SUMMARY_16_WORDS);
    }

    #[test]
    fn counter_index_overflow_shares_slot_zero() {
        assert_eq!(counter_index(3, Reason::RateSyn), 3 * 16 + 4);
        assert_eq!(counter_index(5000, Reason::Passed), 0);
        assert!(counter_index(MAX_IFINDEX - 1, Reason::NonIp) < COUNTERS_LEN);
    }
}
