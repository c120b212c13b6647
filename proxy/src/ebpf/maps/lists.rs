//! The allow and block lists: each is an IPv4 and an IPv6 LPM trie of `PolicyEntry`.
//! Both families go through one generic [`Trie`], so an error names the map that
//! failed, and every edit keeps the IPv4 summary and the policy generation in step.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData};
use ipnet::IpNet;
use proxy_common::{PolicyEntry, REASON_TEXT_LEN, map_names, origin};

use super::{EbpfError, List, ListEntry, Maps, Origin, is_errno, map_err, monotonic_ns};

/// The address bytes an LPM trie is keyed by.
pub trait AddressBytes: aya::Pod {
    fn to_ip(self) -> IpAddr;
}

impl AddressBytes for [u8; 4] {
    fn to_ip(self) -> IpAddr {
        IpAddr::from(self)
    }
}

impl AddressBytes for [u8; 16] {
    fn to_ip(self) -> IpAddr {
        IpAddr::from(self)
    }
}

/// One LPM trie, its name (for errors) and capacity (for "list full" errors).
pub struct Trie<K> {
    map: LpmTrie<MapData, K, PolicyEntry>,
    name: &'static str,
    capacity: u32,
}

impl<K: AddressBytes> Trie<K> {
    fn open(name: &'static str, map: Map) -> Result<Trie<K>, EbpfError> {
        let capacity = match &map {
            Map::LpmTrie(data) => data.info().map(|i| i.max_entries()).unwrap_or(0),
            _ => 0,
        };
        Ok(Trie {
            map: map.try_into().map_err(map_err(name))?,
            name,
            capacity,
        })
    }

    fn insert(
        &mut self,
        prefix_len: u8,
        key: K,
        entry: PolicyEntry,
        list: List,
    ) -> Result<(), EbpfError> {
        let key = Key::new(u32::from(prefix_len), key);
        self.map.insert(&key, entry, 0).map_err(|source| {
            if is_errno(&source, libc::ENOSPC) || is_errno(&source, libc::E2BIG) {
                EbpfError::MapFull {
                    list: list.noun(),
                    map: self.name,
                    capacity: self.capacity,
                    kind: match list {
                        List::Allow => "allow",
                        List::Block => "block",
                    },
                }
            } else {
                EbpfError::Map {
                    map: self.name,
                    source,
                }
            }
        })
    }

    /// Removes the exact prefix; `false` if it was not there.
    fn remove(&mut self, prefix_len: u8, key: K) -> Result<bool, EbpfError> {
        match self.map.remove(&Key::new(u32::from(prefix_len), key)) {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(source) => Err(EbpfError::Map {
                map: self.name,
                source,
            }),
        }
    }

    /// The longest prefix containing the full-length address `key` (`bits` long).
    pub(super) fn longest_match(&self, key: K, bits: u8) -> Result<Option<PolicyEntry>, EbpfError> {
        match self.map.get(&Key::new(u32::from(bits), key), 0) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(None),
            Err(source) => Err(EbpfError::Map {
                map: self.name,
                source,
            }),
        }
    }

    /// Every (prefix, entry), expired ones included.
    pub(super) fn all(&self) -> Result<Vec<(IpNet, PolicyEntry)>, EbpfError> {
        let mut out = Vec::new();
        for item in self.map.iter() {
            let (key, entry) = item.map_err(map_err(self.name))?;
            let net = IpNet::new(key.data().to_ip(), key.prefix_len() as u8).map_err(|_| {
                EbpfError::Io {
                    context: format!(
                        "{} holds a key with prefix length {}",
                        self.name,
                        key.prefix_len()
                    ),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidData),
                }
            })?;
            out.push((net, entry));
        }
        Ok(out)
    }
}

/// One list: its IPv4 and IPv6 tries.
pub struct ListTries {
    list: List,
    pub(super) v4: Trie<[u8; 4]>,
    pub(super) v6: Trie<[u8; 16]>,
}

impl ListTries {
    pub(super) fn open(
        list: List,
        get: &mut impl FnMut(&str) -> Result<Map, EbpfError>,
    ) -> Result<ListTries, EbpfError> {
        let (v4, v6) = match list {
            List::Allow => (map_names::ALLOW_V4, map_names::ALLOW_V6),
            List::Block => (map_names::BLOCK_V4, map_names::BLOCK_V6),
        };
        Ok(ListTries {
            list,
            v4: Trie::open(v4, get(v4)?)?,
            v6: Trie::open(v6, get(v6)?)?,
        })
    }

    fn insert(&mut self, net: IpNet, entry: PolicyEntry) -> Result<(), EbpfError> {
        match net {
            IpNet::V4(n) => self
                .v4
                .insert(n.prefix_len(), n.network().octets(), entry, self.list),
            IpNet::V6(n) => self
                .v6
                .insert(n.prefix_len(), n.network().octets(), entry, self.list),
        }
    }

    fn remove(&mut self, net: IpNet) -> Result<bool, EbpfError> {
        match net {
            IpNet::V4(n) => self.v4.remove(n.prefix_len(), n.network().octets()),
            IpNet::V6(n) => self.v6.remove(n.prefix_len(), n.network().octets()),
        }
    }

    fn longest_match(&self, addr: IpAddr) -> Result<Option<PolicyEntry>, EbpfError> {
        match addr {
            IpAddr::V4(a) => self.v4.longest_match(a.octets(), 32),
            IpAddr::V6(a) => self.v6.longest_match(a.octets(), 128),
        }
    }

    /// Every (prefix, entry), IPv4 first, expired ones included.
    fn all(&self) -> Result<Vec<(IpNet, PolicyEntry)>, EbpfError> {
        let mut out = self.v4.all()?;
        out.extend(self.v6.all()?);
        Ok(out)
    }
}

impl Maps {
    /// Adds or replaces an entry. `ttl` = None: permanent.
    pub fn insert(
        &mut self,
        list: List,
        cidr: IpNet,
        ttl: Option<Duration>,
        origin: Origin,
        reason: &str,
    ) -> Result<(), EbpfError> {
        let _lock = self.write_lock();
        self.insert_locked(list, cidr, ttl, origin, reason)
    }

    /// [`Maps::insert`] for a caller that holds the write lock.
    pub(super) fn insert_locked(
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
            origin: origin_code(origin),
            prefix_len: u32::from(cidr.prefix_len()),
            reason: reason_bytes(reason),
        };
        // The summary bit must be set before the entry exists, or the program could skip it.
        if let IpNet::V4(net) = cidr {
            self.summary_set(net)?;
        }
        self.tries_mut(list).insert(cidr, entry)?;
        self.bump_generation()
    }

    /// Removes the exact entry; returns whether it existed.
    pub fn remove(&mut self, list: List, cidr: IpNet) -> Result<bool, EbpfError> {
        Ok(self.remove_many(list, &[cidr])? == 1)
    }

    /// Removes the exact entries; returns how many existed.
    pub fn remove_many(&mut self, list: List, nets: &[IpNet]) -> Result<usize, EbpfError> {
        let _lock = self.write_lock();
        self.remove_many_locked(list, nets)
    }

    /// [`Maps::remove_many`] for a caller that holds the write lock.
    pub(super) fn remove_many_locked(
        &mut self,
        list: List,
        nets: &[IpNet],
    ) -> Result<usize, EbpfError> {
        let mut removed = 0;
        for cidr in nets {
            if self.tries_mut(list).remove(cidr.trunc())? {
                removed += 1;
            }
        }
        let v4: Vec<ipnet::Ipv4Net> = nets
            .iter()
            .filter_map(|n| match n.trunc() {
                IpNet::V4(n) => Some(n),
                IpNet::V6(_) => None,
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

    /// The unexpired entry of `list` that would match `addr` (longest prefix), if any.
    pub fn matching(&self, list: List, addr: IpAddr) -> Result<Option<ListEntry>, EbpfError> {
        let Some(entry) = self.tries(list).longest_match(addr)? else {
            return Ok(None);
        };
        let len = entry.prefix_len;
        let net = IpNet::new(addr, len as u8).map_err(|_| EbpfError::Io {
            context: format!(
                "the {} entry for {addr} has prefix length {len}",
                list.noun()
            ),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?;
        Ok(list_entry(net.trunc(), &entry, monotonic_ns()))
    }

    /// The unexpired entry stored for exactly `cidr` (not a covering prefix), if any.
    pub fn exact(&self, list: List, cidr: IpNet) -> Result<Option<ListEntry>, EbpfError> {
        let cidr = cidr.trunc();
        let entry = match cidr {
            IpNet::V4(n) => self
                .tries(list)
                .v4
                .longest_match(n.network().octets(), n.prefix_len())?,
            IpNet::V6(n) => self
                .tries(list)
                .v6
                .longest_match(n.network().octets(), n.prefix_len())?,
        };
        Ok(entry
            .filter(|e| e.prefix_len == u32::from(cidr.prefix_len()))
            .and_then(|e| list_entry(cidr, &e, monotonic_ns())))
    }

    /// Every unexpired entry of a list, IPv4 first.
    pub fn entries(&self, list: List) -> Result<Vec<ListEntry>, EbpfError> {
        let now = monotonic_ns();
        Ok(self
            .tries(list)
            .all()?
            .into_iter()
            .filter_map(|(net, entry)| list_entry(net, &entry, now))
            .collect())
    }

    /// Deletes entries whose expiry has passed (the kernel already ignores them).
    pub fn remove_expired(&mut self, list: List) -> Result<usize, EbpfError> {
        let now = monotonic_ns();
        let expired: Vec<IpNet> = self
            .tries(list)
            .all()?
            .into_iter()
            .filter(|(_, e)| e.expires_at_ns != 0 && e.expires_at_ns <= now)
            .map(|(net, _)| net)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        self.remove_many(list, &expired)
    }

    /// Makes the config-origin entries of a list exactly `wanted`; with
    /// `keep_runtime = false`, manual and automatic entries not in `wanted` go too.
    /// Fleet entries belong to the fleet store and stay.
    pub fn sync_config_entries(
        &mut self,
        list: List,
        wanted: &[(IpNet, Option<Duration>, String)],
        keep_runtime: bool,
    ) -> Result<(), EbpfError> {
        let (stale, _) = self.config_sync_plan(list, wanted, keep_runtime)?;
        self.remove_many(list, &stale)?;
        for (net, ttl, reason) in wanted {
            self.insert(list, *net, *ttl, Origin::Config, reason)?;
        }
        Ok(())
    }

    /// Checks, without writing, that [`Maps::sync_config_entries`] with the same
    /// arguments leaves at most `capacity` entries in each family's trie.
    pub fn check_config_entries(
        &self,
        list: List,
        wanted: &[(IpNet, Option<Duration>, String)],
        keep_runtime: bool,
        capacity: u32,
    ) -> Result<(), String> {
        let (_, kept) = self
            .config_sync_plan(list, wanted, keep_runtime)
            .map_err(|e| e.to_string())?;
        let mut after: HashSet<IpNet> = kept.into_iter().collect();
        after.extend(wanted.iter().map(|(net, _, _)| net.trunc()));
        let name = match list {
            List::Block => "block",
            List::Allow => "allow",
        };
        for (family, v4) in [("IPv4", true), ("IPv6", false)] {
            let n = after
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .count();
            if n > capacity as usize {
                return Err(format!(
                    "the {name}list would hold {n} {family} entries, above its capacity of \
                     {capacity} (raise xdp.max_{name}_entries and restart, or list fewer)"
                ));
            }
        }
        Ok(())
    }

    /// The entries a sync with the config's `wanted` removes, and those it keeps.
    fn config_sync_plan(
        &self,
        list: List,
        wanted: &[(IpNet, Option<Duration>, String)],
        keep_runtime: bool,
    ) -> Result<(Vec<IpNet>, Vec<IpNet>), EbpfError> {
        let listed: HashSet<IpNet> = wanted.iter().map(|(net, _, _)| net.trunc()).collect();
        let (stale, kept): (Vec<ListEntry>, Vec<ListEntry>) =
            self.entries(list)?.into_iter().partition(|current| {
                !listed.contains(&current.cidr)
                    && current.origin != Origin::Fleet
                    && (current.origin == Origin::Config || !keep_runtime)
            });
        let cidrs = |v: Vec<ListEntry>| v.into_iter().map(|e| e.cidr).collect();
        Ok((cidrs(stale), cidrs(kept)))
    }
}

fn origin_code(o: Origin) -> u32 {
    match o {
        Origin::Config => origin::CONFIG,
        Origin::Manual => origin::MANUAL,
        Origin::Auto => origin::AUTO,
        Origin::Fleet => origin::FLEET,
        Origin::Unknown => 0,
    }
}

fn origin_from_code(code: u32) -> Origin {
    match code {
        origin::CONFIG => Origin::Config,
        origin::MANUAL => Origin::Manual,
        origin::AUTO => Origin::Auto,
        origin::FLEET => Origin::Fleet,
        _ => Origin::Unknown,
    }
}

/// The entry as userspace shows it; `None` once expired.
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
        origin: origin_from_code(e.origin),
        reason: String::from_utf8_lossy(&reason[..len]).into_owned(),
    })
}

/// The reason text, cut to the kernel's fixed size on a character boundary.
fn reason_bytes(reason: &str) -> [u8; REASON_TEXT_LEN] {
    let mut out = [0u8; REASON_TEXT_LEN];
    let mut end = reason.len().min(REASON_TEXT_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn origin_codes_round_trip() {
        for o in [
            Origin::Config,
            Origin::Manual,
            Origin::Auto,
            Origin::Fleet,
            Origin::Unknown,
        ] {
            assert_eq!(origin_from_code(origin_code(o)), o);
        }
    }
}
