//! Typed handles on the XDP program's maps: the allow/block lists, the rate-limit
//! config, the counters. Opened from a freshly loaded program or from the pins (so
//! CLI commands work against a running daemon without talking to it).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aya::maps::{
    Array, Map, MapData, MapError, PerCpuArray,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::IpNet;
use proxy_common::{
    Counter, MAX_IFINDEX, PolicyEntry, PortSet, REASON_TEXT_LEN, RateParams, Reason, SKETCH_ROWS,
    XdpConfig, counter_index, map_names, origin,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use super::EbpfError;
use super::loader::map_name_static;

/// Which list an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum List {
    Allow,
    Block,
}

impl List {
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            List::Allow => ("allowlist", "allow", map_names::ALLOW_V4),
            List::Block => ("blocklist", "block", map_names::BLOCK_V4),
        }
    }
}

/// Who added an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Manual,
    Auto,
    Unknown,
}

impl Origin {
    fn code(self) -> u32 {
        match self {
            Origin::Config => origin::CONFIG,
            Origin::Manual => origin::MANUAL,
            Origin::Auto => origin::AUTO,
            Origin::Unknown => 0,
        }
    }
    fn from_code(code: u32) -> Origin {
        match code {
            origin::CONFIG => Origin::Config,
            origin::MANUAL => Origin::Manual,
            origin::AUTO => Origin::Auto,
            _ => Origin::Unknown,
        }
    }
}

/// One allow/block list entry as userspace sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ListEntry {
    pub cidr: IpNet,
    /// Time left before the kernel stops honouring it; `None` = permanent.
    #[serde(with = "humantime_serde")]
    pub expires_in: Option<Duration>,
    pub created_at_unix: u64,
    pub origin: Origin,
    pub reason: String,
}

/// Rate limits as the operator states them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub packets_per_second: u32,
    pub packets_burst: u32,
    pub syn_per_second: u32,
    pub syn_burst: u32,
    pub ipv6_prefix: u8,
    /// Destination ports the limits apply to; empty = all.
    pub ports: Vec<u16>,
}

/// Packets and bytes per verdict reason for one interface, summed over CPUs.
#[derive(Clone, Debug, Default)]
pub struct InterfaceCounters {
    pub ifindex: u32,
    /// Interface name, if it still exists in this network namespace.
    pub interface: Option<String>,
    /// Indexed by `Reason as usize`.
    pub by_reason: [Counter; proxy_common::REASON_COUNT as usize],
}

impl InterfaceCounters {
    pub fn get(&self, reason: Reason) -> Counter {
        self.by_reason[reason as usize]
    }
}

pub struct Maps {
    allow_v4: LpmTrie<MapData, [u8; 4], PolicyEntry>,
    allow_v6: LpmTrie<MapData, [u8; 16], PolicyEntry>,
    block_v4: LpmTrie<MapData, [u8; 4], PolicyEntry>,
    block_v6: LpmTrie<MapData, [u8; 16], PolicyEntry>,
    config: Array<MapData, XdpConfig>,
    ports: Array<MapData, PortSet>,
    counters: PerCpuArray<MapData, Counter>,
    policy_gen: Array<MapData, u64>,
    v4_summary: Array<MapData, u64>,
    /// Capacity of the (v4, v6) allow and block tries, for "list full" errors.
    allow_capacity: u32,
    block_capacity: u32,
    /// The pin directory, flock()ed around every list change: the daemon and CLI
    /// commands may write the same maps. None for private (unpinned) maps.
    lock: Option<File>,
}

/// Holds the writers' lock (an flock on the pin directory's fd) until dropped.
struct WriteLock(Option<std::os::fd::RawFd>);

impl Drop for WriteLock {
    fn drop(&mut self) {
        if let Some(fd) = self.0 {
            unsafe { libc::flock(fd, libc::LOCK_UN) };
        }
    }
}

fn map_err(name: &str) -> impl Fn(MapError) -> EbpfError + '_ {
    move |source| EbpfError::Map {
        map: map_name_static(name),
        source,
    }
}

impl Maps {
    /// Takes the maps out of a freshly loaded program.
    pub(crate) fn take_from(ebpf: &mut aya::Ebpf) -> Result<Maps, EbpfError> {
        Maps::open(|name| {
            ebpf.take_map(name).ok_or_else(|| EbpfError::Io {
                context: format!("the embedded object has no map {name}"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        })
    }

    /// Opens the maps a running (or previous) daemon pinned under `dir`.
    pub fn from_pins(dir: &Path) -> Result<Maps, EbpfError> {
        if !dir.join(map_names::CONFIG).exists() {
            return Err(EbpfError::NotPinned(dir.to_path_buf()));
        }
        let mut maps = Maps::open(|name| {
            let data = MapData::from_pin(dir.join(name)).map_err(map_err(name))?;
            Map::from_map_data(data).map_err(map_err(name))
        })?;
        maps.lock_dir(dir)?;
        Ok(maps)
    }

    /// Serialise list changes with other processes using the maps pinned at `dir`.
    pub(crate) fn lock_dir(&mut self, dir: &Path) -> Result<(), EbpfError> {
        let file = File::open(dir).map_err(|source| EbpfError::Io {
            context: format!("opening {} for locking", dir.display()),
            source,
        })?;
        self.lock = Some(file);
        Ok(())
    }

    fn write_lock(&self) -> WriteLock {
        let fd = self.lock.as_ref().map(|f| f.as_raw_fd());
        if let Some(fd) = fd {
            unsafe { libc::flock(fd, libc::LOCK_EX) };
        }
        WriteLock(fd)
    }

    fn open(mut get: impl FnMut(&str) -> Result<Map, EbpfError>) -> Result<Maps, EbpfError> {
        let capacity = |map: &Map| match map {
            Map::LpmTrie(data) => data.info().map(|i| i.max_entries()).unwrap_or(0),
            _ => 0,
        };
        let allow_v4 = get(map_names::ALLOW_V4)?;
        let block_v4 = get(map_names::BLOCK_V4)?;
        let (allow_capacity, block_capacity) = (capacity(&allow_v4), capacity(&block_v4));
        macro_rules! typed {
            ($map:expr, $name:expr) => {
                $map.try_into().map_err(map_err($name))?
            };
        }
        Ok(Maps {
            allow_v4: typed!(allow_v4, map_names::ALLOW_V4),
            allow_v6: typed!(get(map_names::ALLOW_V6)?, map_names::ALLOW_V6),
            block_v4: typed!(block_v4, map_names::BLOCK_V4),
            block_v6: typed!(get(map_names::BLOCK_V6)?, map_names::BLOCK_V6),
            config: typed!(get(map_names::CONFIG)?, map_names::CONFIG),
            ports: typed!(get(map_names::PORTS)?, map_names::PORTS),
            counters: typed!(get(map_names::COUNTERS)?, map_names::COUNTERS),
            policy_gen: typed!(get(map_names::POLICY_GEN)?, map_names::POLICY_GEN),
            v4_summary: typed!(get(map_names::V4_SUMMARY)?, map_names::V4_SUMMARY),
            allow_capacity,
            block_capacity,
            lock: None,
        })
    }

    /// Adds or replaces an entry. `ttl` = None: permanent.
    pub fn insert(
        &mut self,
        list: List,
        cidr: IpNet,
        ttl: Option<Duration>,
        origin: Origin,
        reason: &str,
    ) -> Result<(), EbpfError> {
        let cidr = cidr.trunc();
        let entry = PolicyEntry {
            expires_at_ns: ttl.map_or(0, |t| {
                monotonic_ns().saturating_add(t.as_nanos() as u64).max(1)
            }),
            created_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            origin: origin.code(),
            prefix_len: cidr.prefix_len() as u32,
            reason: reason_bytes(reason),
        };
        let (list_name, kind, _) = list.names();
        let _lock = self.write_lock();
        // The summary bit must be set before the entry exists, or the program could skip it.
        if let IpNet::V4(net) = cidr {
            self.summary_set(net)?;
        }
        let result = match cidr {
            IpNet::V4(net) => {
                let key = Key::new(net.prefix_len() as u32, net.network().octets());
                self.trie_v4(list).insert(&key, entry, 0)
            }
            IpNet::V6(net) => {
                let key = Key::new(net.prefix_len() as u32, net.network().octets());
                self.trie_v6(list).insert(&key, entry, 0)
            }
        };
        let capacity = match list {
            List::Allow => self.allow_capacity,
            List::Block => self.block_capacity,
        };
        if result.is_ok() {
            self.bump_generation()?;
        }
        result.map_err(|source| {
            let map = match (list, cidr) {
                (List::Allow, IpNet::V4(_)) => map_names::ALLOW_V4,
                (List::Allow, IpNet::V6(_)) => map_names::ALLOW_V6,
                (List::Block, IpNet::V4(_)) => map_names::BLOCK_V4,
                (List::Block, IpNet::V6(_)) => map_names::BLOCK_V6,
            };
            if is_errno(&source, libc::ENOSPC) || is_errno(&source, libc::E2BIG) {
                EbpfError::MapFull {
                    list: list_name,
                    map,
                    capacity,
                    kind,
                }
            } else {
                EbpfError::Map { map, source }
            }
        })
    }

    /// Removes the exact entry; returns whether it existed.
    pub fn remove(&mut self, list: List, cidr: IpNet) -> Result<bool, EbpfError> {
        Ok(self.remove_many(list, &[cidr])? == 1)
    }

    /// Removes the exact entries; returns how many existed.
    pub fn remove_many(&mut self, list: List, nets: &[IpNet]) -> Result<usize, EbpfError> {
        let _lock = self.write_lock();
        let mut removed = 0;
        for cidr in nets {
            let result = match cidr.trunc() {
                IpNet::V4(net) => self
                    .trie_v4(list)
                    .remove(&Key::new(net.prefix_len() as u32, net.network().octets())),
                IpNet::V6(net) => self
                    .trie_v6(list)
                    .remove(&Key::new(net.prefix_len() as u32, net.network().octets())),
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) if is_errno(&e, libc::ENOENT) => {}
                Err(source) => {
                    return Err(EbpfError::Map {
                        map: list.names().2,
                        source,
                    });
                }
            }
        }
        let v4: Vec<ipnet::Ipv4Net> = nets
            .iter()
            .filter_map(|n| {
                if let IpNet::V4(n) = n.trunc() {
                    Some(n)
                } else {
                    None
                }
            })
            .collect();
        self.summary_recompute(&v4)?;
        if removed > 0 {
            self.bump_generation()?;
        }
        Ok(removed)
    }

    /// Tells the program's verdict caches that the lists changed.
    fn bump_generation(&mut self) -> Result<(), EbpfError> {
        // Never reused: monotonic time, and writers are serialised by the lock.
        let current = self
            .policy_gen
            .get(&0, 0)
            .map_err(map_err(map_names::POLICY_GEN))?;
        let next = monotonic_ns().max(current + 1);
        self.policy_gen
            .set(0, next, 0)
            .map_err(map_err(map_names::POLICY_GEN))
    }

    /// Sets the V4_SUMMARY bits of every /24 that `net` touches.
    fn summary_set(&mut self, net: ipnet::Ipv4Net) -> Result<(), EbpfError> {
        for (word, mask) in summary_words(net) {
            let old = self
                .v4_summary
                .get(&word, 0)
                .map_err(map_err(map_names::V4_SUMMARY))?;
            if old & mask != mask {
                self.v4_summary
                    .set(word, old | mask, 0)
                    .map_err(map_err(map_names::V4_SUMMARY))?;
            }
        }
        Ok(())
    }

    /// After removals: recomputes the summary words the removed prefixes touched from
    /// the entries that remain in both IPv4 tries.
    fn summary_recompute(&mut self, removed: &[ipnet::Ipv4Net]) -> Result<(), EbpfError> {
        if removed.is_empty() {
            return Ok(());
        }
        let mut words: BTreeMap<u32, u64> = BTreeMap::new();
        for net in removed {
            for (word, _) in summary_words(*net) {
                words.insert(word, 0);
            }
        }
        let mut remaining = Vec::new();
        for trie in [&self.allow_v4, &self.block_v4] {
            for key in trie.keys() {
                let key = key.map_err(map_err(map_names::V4_SUMMARY))?;
                remaining.push(
                    ipnet::Ipv4Net::new(Ipv4Addr::from(key.data()), key.prefix_len() as u8)
                        .expect("valid key"),
                );
            }
        }
        for net in remaining {
            for (word, mask) in summary_words(net) {
                if let Some(bits) = words.get_mut(&word) {
                    *bits |= mask;
                }
            }
        }
        for (word, bits) in words {
            let old = self
                .v4_summary
                .get(&word, 0)
                .map_err(map_err(map_names::V4_SUMMARY))?;
            if old != bits {
                self.v4_summary
                    .set(word, bits, 0)
                    .map_err(map_err(map_names::V4_SUMMARY))?;
            }
        }
        Ok(())
    }

    /// The unexpired entry of `list` that would match `addr` (longest prefix), if any.
    pub fn matching(&self, list: List, addr: IpAddr) -> Result<Option<ListEntry>, EbpfError> {
        let (v4, v6) = match list {
            List::Allow => (&self.allow_v4, &self.allow_v6),
            List::Block => (&self.block_v4, &self.block_v6),
        };
        let found = match addr {
            IpAddr::V4(a) => v4.get(&Key::new(32, a.octets()), 0),
            IpAddr::V6(a) => v6.get(&Key::new(128, a.octets()), 0),
        };
        match found {
            Ok(entry) => {
                let len = entry.prefix_len;
                let net = IpNet::new(addr, len as u8).map_err(|_| EbpfError::Io {
                    context: format!("entry for {addr} has prefix length {len}"),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidData),
                })?;
                Ok(list_entry(net.trunc(), &entry, monotonic_ns()))
            }
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(None),
            Err(source) => Err(EbpfError::Map {
                map: list.names().2,
                source,
            }),
        }
    }

    /// Every unexpired entry of a list, IPv4 first.
    pub fn entries(&self, list: List) -> Result<Vec<ListEntry>, EbpfError> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        let (v4, v6) = match list {
            List::Allow => (&self.allow_v4, &self.allow_v6),
            List::Block => (&self.block_v4, &self.block_v6),
        };
        for item in v4.iter() {
            let (key, entry) = item.map_err(map_err(list.names().2))?;
            let net = IpNet::new(IpAddr::from(key.data()), key.prefix_len() as u8)
                .expect("kernel keys are valid");
            out.extend(list_entry(net, &entry, now));
        }
        for item in v6.iter() {
            let (key, entry) = item.map_err(map_err(list.names().2))?;
            let net = IpNet::new(IpAddr::from(key.data()), key.prefix_len() as u8)
                .expect("kernel keys are valid");
            out.extend(list_entry(net, &entry, now));
        }
        Ok(out)
    }

    /// Deletes entries whose expiry has passed (the kernel already ignores them).
    pub fn remove_expired(&mut self, list: List) -> Result<usize, EbpfError> {
        let now = monotonic_ns();
        let (v4, v6) = match list {
            List::Allow => (&self.allow_v4, &self.allow_v6),
            List::Block => (&self.block_v4, &self.block_v6),
        };
        let expired = |e: &PolicyEntry| {
            let at = e.expires_at_ns;
            at != 0 && at <= now
        };
        let mut old: Vec<IpNet> = Vec::new();
        for (k, e) in v4.iter().filter_map(Result::ok) {
            if expired(&e) {
                old.push(
                    IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8).expect("valid key"),
                );
            }
        }
        for (k, e) in v6.iter().filter_map(Result::ok) {
            if expired(&e) {
                old.push(
                    IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8).expect("valid key"),
                );
            }
        }
        if old.is_empty() {
            return Ok(0);
        }
        self.remove_many(list, &old)?;
        Ok(old.len())
    }

    /// Makes the config-origin entries of a list exactly `wanted`; with
    /// `keep_runtime = false`, manual and automatic entries not in `wanted` go too.
    pub fn sync_config_entries(
        &mut self,
        list: List,
        wanted: &[(IpNet, Option<Duration>, String)],
        keep_runtime: bool,
    ) -> Result<(), EbpfError> {
        let stale: Vec<IpNet> = self
            .entries(list)?
            .into_iter()
            .filter(|current| {
                let listed = wanted.iter().any(|(net, _, _)| net.trunc() == current.cidr);
                !listed && (current.origin == Origin::Config || !keep_runtime)
            })
            .map(|e| e.cidr)
            .collect();
        self.remove_many(list, &stale)?;
        for (net, ttl, reason) in wanted {
            self.insert(list, *net, *ttl, Origin::Config, reason)?;
        }
        Ok(())
    }

    /// Writes rate limits and sampling; keeps (or first creates) the secret hash seeds.
    pub fn write_config(
        &mut self,
        limits: &RateLimits,
        sample_every: u32,
        log_drops: bool,
    ) -> Result<(), EbpfError> {
        let mut config = self.read_config()?;
        if config.hash_seeds == [0; SKETCH_ROWS] {
            let mut bytes = [0u8; 8 * SKETCH_ROWS];
            getrandom::fill(&mut bytes).map_err(|e| EbpfError::Io {
                context: "reading random hash seeds".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
            for (seed, chunk) in config.hash_seeds.iter_mut().zip(bytes.chunks_exact(8)) {
                *seed = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            }
        }
        let burst = |b: u32, rate: u32| if b == 0 { rate } else { b };
        config.pps = RateParams::new(
            limits.packets_per_second,
            burst(limits.packets_burst, limits.packets_per_second),
        );
        config.syn = RateParams::new(
            limits.syn_per_second,
            burst(limits.syn_burst, limits.syn_per_second),
        );
        config.ipv6_prefix_len = limits.ipv6_prefix.clamp(1, 128) as u32;
        config.ports_scoped = !limits.ports.is_empty() as u32;
        config.sample_every = sample_every;
        config.log_drops = log_drops as u32;
        let mut ports = PortSet::empty();
        for port in &limits.ports {
            ports.insert(*port);
        }
        self.ports
            .set(0, ports, 0)
            .map_err(map_err(map_names::PORTS))?;
        self.config
            .set(0, config, 0)
            .map_err(map_err(map_names::CONFIG))
    }

    pub fn read_config(&self) -> Result<XdpConfig, EbpfError> {
        self.config.get(&0, 0).map_err(map_err(map_names::CONFIG))
    }

    /// Counters of one interface, summed over CPUs.
    pub fn counters(&self, ifindex: u32) -> Result<InterfaceCounters, EbpfError> {
        let mut out = InterfaceCounters {
            ifindex,
            interface: super::loader::if_name(ifindex),
            ..Default::default()
        };
        for reason in Reason::ALL {
            let per_cpu = self
                .counters
                .get(&counter_index(ifindex, reason), 0)
                .map_err(map_err(map_names::COUNTERS))?;
            let sum = &mut out.by_reason[reason as usize];
            for c in per_cpu.iter() {
                sum.packets += c.packets;
                sum.bytes += c.bytes;
            }
        }
        Ok(out)
    }

    /// Counters of every interface that has seen packets (slot 0 collects ifindex ≥ 1024).
    pub fn all_counters(&self) -> Result<Vec<InterfaceCounters>, EbpfError> {
        let mut out = Vec::new();
        for ifindex in 0..MAX_IFINDEX {
            let c = self.counters(ifindex)?;
            if c.by_reason.iter().any(|r| r.packets > 0) {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn trie_v4(&mut self, list: List) -> &mut LpmTrie<MapData, [u8; 4], PolicyEntry> {
        match list {
            List::Allow => &mut self.allow_v4,
            List::Block => &mut self.block_v4,
        }
    }

    fn trie_v6(&mut self, list: List) -> &mut LpmTrie<MapData, [u8; 16], PolicyEntry> {
        match list {
            List::Allow => &mut self.allow_v6,
            List::Block => &mut self.block_v6,
        }
    }
}

/// The V4_SUMMARY (word, bit mask) pairs covering every /24 that `net` touches.
fn summary_words(net: ipnet::Ipv4Net) -> Vec<(u32, u64)> {
    let first = u32::from(net.network()) >> 8;
    let count: u64 = if net.prefix_len() >= 24 {
        1
    } else {
        1u64 << (24 - net.prefix_len())
    };
    let last = (first as u64 + count - 1) as u32;
    let mut out = Vec::new();
    let mut word = first >> 6;
    while word <= last >> 6 {
        let lo = if word == first >> 6 { first & 63 } else { 0 };
        let hi = if word == last >> 6 { last & 63 } else { 63 };
        let width = hi - lo + 1;
        let mask = if width == 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << lo
        };
        out.push((word, mask));
        word += 1;
    }
    out
}

fn list_entry(cidr: IpNet, e: &PolicyEntry, now: u64) -> Option<ListEntry> {
    let expires_at = e.expires_at_ns;
    if expires_at != 0 && expires_at <= now {
        return None;
    }
    let reason = e.reason;
    let len = reason.iter().position(|b| *b == 0).unwrap_or(reason.len());
    Some(ListEntry {
        cidr,
        expires_in: (expires_at != 0).then(|| Duration::from_nanos(expires_at - now)),
        created_at_unix: e.created_at_unix,
        origin: Origin::from_code(e.origin),
        reason: String::from_utf8_lossy(&reason[..len]).into_owned(),
    })
}

fn reason_bytes(reason: &str) -> [u8; REASON_TEXT_LEN] {
    let mut out = [0u8; REASON_TEXT_LEN];
    let mut end = reason.len().min(REASON_TEXT_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&reason.as_bytes()[..end]);
    out
}

fn is_errno(e: &MapError, errno: i32) -> bool {
    match e {
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(errno),
        MapError::KeyNotFound => errno == libc::ENOENT,
        _ => false,
    }
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_words_cover_exactly_the_touched_slash24s() {
        let words = |s: &str| summary_words(s.parse().unwrap());
        // A /32 and a /24 touch one /24.
        let a = words("198.51.100.9/32");
        assert_eq!(a, words("198.51.100.0/24"));
        assert_eq!(a.len(), 1);
        let (w, m) = a[0];
        assert_eq!(
            (w, m),
            proxy_common::v4_summary_bit(u32::from_be_bytes([198, 51, 100, 200]))
        );
        // A /16 is 256 /24s: four full words.
        let b = words("10.1.0.0/16");
        assert_eq!(b.len(), 4);
        assert!(b.iter().all(|(_, m)| *m == u64::MAX));
        // A /20 is 16 /24s inside one word.
        let c = words("10.1.16.0/20");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1.count_ones(), 16);
        // /0 covers every word.
        assert_eq!(
            words("0.0.0.0/0").len(),
            proxy_common::V4_SUMMARY_WORDS as usize
        );
    }

    #[test]
    fn reason_text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(40);
        let bytes = reason_bytes(&long);
        let len = bytes
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(REASON_TEXT_LEN);
        assert!(std::str::from_utf8(&bytes[..len]).is_ok());
        assert_eq!(len, 48);
    }
}
