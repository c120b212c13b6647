//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with weights.
//!
//! The table is a pure function of the set of `(name, weight)` members and the table
//! size: member order does not matter and there is no random seed, so every `proxy`
//! process with the same configuration builds the same table (ECMP-friendly).
//! [`hash_bytes`] is part of that contract: changing it moves clients, and
//! `pinned_outputs` in the tests fails if it changes.

use super::{Members, Selection};
use crate::config::is_prime;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaglevError {
    #[error("table size {0} is not prime (Maglev needs a prime size, e.g. 65537)")]
    NotPrime(u32),
    #[error("table size {size} is smaller than the number of backends ({members})")]
    TooSmall { size: u32, members: usize },
    #[error("no backend with a weight above 0")]
    Empty,
}

/// A Maglev lookup table: `slot → member index` (indices into the slice given to
/// [`Maglev::new`]).
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u32>,
    members: usize,
    /// Members that own at least one slot.
    distinct: u32,
}

impl Maglev {
    /// Builds the table. `members` are `(stable name, weight)`; weight 0 members get no
    /// slot. A member with weight `w` gets about `w / Σw` of the slots.
    pub fn new<N: AsRef<[u8]>>(members: &[(N, u32)], size: u32) -> Result<Maglev, MaglevError> {
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        if (size as usize) < members.len() {
            return Err(MaglevError::TooSmall {
                size,
                members: members.len(),
            });
        }
        // Fill in name order, so the configuration's order does not matter.
        let mut order: Vec<usize> = (0..members.len()).filter(|&i| members[i].1 > 0).collect();
        if order.is_empty() {
            return Err(MaglevError::Empty);
        }
        order.sort_by(|&a, &b| members[a].0.as_ref().cmp(members[b].0.as_ref()));

        let m = u64::from(size);
        // Each member's permutation: slot_j = (offset + j * skip) mod m.
        let perms: Vec<(u64, u64)> = order
            .iter()
            .map(|&i| {
                let name = members[i].0.as_ref();
                let offset = hash_bytes(name, OFFSET_SEED) % m;
                let skip = hash_bytes(name, SKIP_SEED) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let weights: Vec<u64> = order.iter().map(|&i| u64::from(members[i].1)).collect();
        let max_weight = weights.iter().copied().max().unwrap_or(1);

        const EMPTY: u32 = u32::MAX;
        let mut table = vec![EMPTY; size as usize];
        let mut next = vec![0u64; order.len()];
        let mut credit = vec![0u64; order.len()];
        let mut filled = 0u64;
        // Weighted turns: every round each member earns `weight` credit and takes a
        // turn (claims its next preferred free slot) per `max_weight` credit.
        loop {
            for k in 0..order.len() {
                credit[k] += weights[k];
                if credit[k] < max_weight {
                    continue;
                }
                credit[k] -= max_weight;
                let (offset, skip) = perms[k];
                let mut slot = (offset + next[k] % m * skip) % m;
                while table[slot as usize] != EMPTY {
                    next[k] += 1;
                    slot = (offset + next[k] % m * skip) % m;
                }
                table[slot as usize] = order[k] as u32;
                next[k] += 1;
                filled += 1;
                if filled == m {
                    return Ok(Maglev {
                        table,
                        members: members.len(),
                        distinct: order.len() as u32,
                    });
                }
            }
        }
    }

    /// The member that owns `key_hash`.
    pub fn lookup(&self, key_hash: u64) -> usize {
        self.table[self.slot(key_hash)] as usize
    }

    /// Distinct members in preference order for `key_hash`: the owner first, then the
    /// owners of further slots picked by rehashing the key. Falling through therefore
    /// spreads a missing member's keys over the others in proportion to their slots.
    pub fn candidates(&self, key_hash: u64) -> Candidates<'_> {
        Candidates {
            maglev: self,
            key_hash,
            probe: 0,
            seen: Vec::new(),
        }
    }

    /// How many slots each member owns (index = member index).
    pub fn slot_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.members];
        for &m in &self.table {
            counts[m as usize] += 1;
        }
        counts
    }

    /// The table's size.
    pub fn size(&self) -> u32 {
        self.table.len() as u32
    }

    /// Slots whose owner differs in `other` (a table of the same size), members
    /// compared by `same(ours, theirs)`; every slot if the sizes differ.
    pub fn moved_slots(&self, other: &Maglev, same: impl Fn(usize, usize) -> bool) -> u32 {
        if self.table.len() != other.table.len() {
            return self.size();
        }
        let moved = self
            .table
            .iter()
            .zip(&other.table)
            .filter(|&(&a, &b)| !same(a as usize, b as usize))
            .count();
        moved as u32
    }

    fn slot(&self, key_hash: u64) -> usize {
        (key_hash % self.table.len() as u64) as usize
    }
}

/// Maglev as a pool's algorithm: the key's owner, then its further candidates.
#[derive(Debug)]
pub struct MaglevSelection {
    /// `None` when no member has a weight above 0 (all drained at runtime).
    pub table: Option<Maglev>,
}

impl MaglevSelection {
    /// The table of `members` (`(address, weight in force)`).
    pub fn new(members: &[(String, u32)], size: u32) -> Result<MaglevSelection, MaglevError> {
        match Maglev::new(members, size) {
            Ok(table) => Ok(MaglevSelection { table: Some(table) }),
            Err(MaglevError::Empty) => Ok(MaglevSelection { table: None }),
            Err(e) => Err(e),
        }
    }
}

impl Selection for MaglevSelection {
    fn next(&self, members: &Members<'_>, key_hash: u64, tried: &[usize]) -> Option<usize> {
        let table = self.table.as_ref()?;
        // Nearly always: the key's owner, first time.
        let owner = table.lookup(key_hash);
        if tried.is_empty() && members.takes(owner) {
            return Some(owner);
        }
        table
            .candidates(key_hash)
            .find(|&m| members.takes(m) && !tried.contains(&m))
    }

    fn table(&self) -> Option<&Maglev> {
        self.table.as_ref()
    }
}

/// Iterator returned by [`Maglev::candidates`].
pub struct Candidates<'a> {
    maglev: &'a Maglev,
    key_hash: u64,
    probe: u64,
    seen: Vec<u32>,
}

impl Candidates<'_> {
    /// Rehashed probes before falling back to a linear walk of the table (which is
    /// certain to find every member, so the iterator always ends).
    const REHASH_PROBES: u64 = 64;
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let table = &self.maglev.table;
        let len = table.len() as u64;
        let distinct = self.maglev.distinct as usize;
        while self.seen.len() < distinct {
            let slot = match self.probe {
                0 => self.key_hash % len,
                p if p < Self::REHASH_PROBES => hash_bytes(&self.key_hash.to_le_bytes(), p) % len,
                p => (self.key_hash + (p - Self::REHASH_PROBES)) % len,
            };
            self.probe += 1;
            let member = table[slot as usize];
            if !self.seen.contains(&member) {
                self.seen.push(member);
                return Some(member as usize);
            }
        }
        None
    }
}

const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
/// Seed for hashing lookup keys (client address, SNI).
pub const KEY_SEED: u64 = 0x6b65_795f_6861_7368; // "key_hash"

/// A stable 64-bit hash: FNV-1a over the bytes, then the SplitMix64 finaliser for
/// avalanche. Fixed forever (see the module doc); not for untrusted-collision use.
pub fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_TABLE_SIZE;

    fn backends(n: usize) -> Vec<(String, u32)> {
        (0..n)
            .map(|i| (format!("10.0.{}.{}:80", i / 250, i % 250 + 1), 1))
            .collect()
    }

    fn key(k: u64) -> u64 {
        hash_bytes(&k.to_le_bytes(), KEY_SEED)
    }

    #[test]
    fn balanced_with_100_backends() {
        let members = backends(100);
        let table = Maglev::new(&members, DEFAULT_TABLE_SIZE).unwrap();
        let counts = table.slot_counts();
        let mean = f64::from(DEFAULT_TABLE_SIZE) / 100.0;
        let max = f64::from(*counts.iter().max().unwrap());
        assert!(max / mean <= 1.05, "max/mean = {}", max / mean);
        assert!(counts.iter().all(|&c| c > 0));
    }

    #[test]
    fn rebuilding_without_one_of_10_moves_about_a_tenth() {
        // Rebuilding the table (a reload that deletes a backend) moves that backend's
        // keys and, as the Maglev paper documents, a small fraction of others.
        let all = backends(10);
        let before = Maglev::new(&all, DEFAULT_TABLE_SIZE).unwrap();
        let mut fewer = all.clone();
        let removed = fewer.remove(3).0;
        let after = Maglev::new(&fewer, DEFAULT_TABLE_SIZE).unwrap();
        let (mut moved, mut collateral, keys) = (0, 0, 200_000u64);
        for k in 0..keys {
            let (a, b) = (
                &all[before.lookup(key(k))].0,
                &fewer[after.lookup(key(k))].0,
            );
            if a != b {
                moved += 1;
                if *a != removed {
                    collateral += 1;
                }
            }
        }
        assert!(
            moved as f64 / keys as f64 <= 0.12,
            "moved {moved} of {keys}"
        );
        assert!(
            moved as f64 / keys as f64 >= 0.08,
            "moved {moved} of {keys}"
        );
        assert!(
            collateral as f64 / keys as f64 <= 0.005,
            "collateral {collateral}"
        );
    }

    #[test]
    fn falling_through_a_missing_member_moves_only_its_keys() {
        // A backend out of service (down, or every connect failing): its keys go to
        // their next candidate, nobody else moves.
        let all = backends(10);
        let table = Maglev::new(&all, DEFAULT_TABLE_SIZE).unwrap();
        let down = 3;
        let (mut moved, keys) = (0, 200_000u64);
        let mut spread = vec![0u32; 10];
        for k in 0..keys {
            let first = table.lookup(key(k));
            let chosen = table.candidates(key(k)).find(|&m| m != down).unwrap();
            if chosen != first {
                assert_eq!(
                    first, down,
                    "key {k} moved although it was not on the removed backend"
                );
                moved += 1;
                spread[chosen] += 1;
            }
        }
        assert!(
            moved as f64 / keys as f64 <= 0.12,
            "moved {moved} of {keys}"
        );
        // Its keys spread over all the others, not onto one neighbour.
        let others: Vec<u32> = spread
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != down)
            .map(|(_, &c)| c)
            .collect();
        let mean = moved as f64 / 9.0;
        assert!(
            others
                .iter()
                .all(|&c| (f64::from(c) - mean).abs() < mean * 0.25),
            "{spread:?}"
        );
    }

    #[test]
    fn weights_are_proportional() {
        let members: Vec<(String, u32)> = [1, 2, 3, 4, 10]
            .iter()
            .enumerate()
            .map(|(i, &w)| (format!("b{i}"), w))
            .collect();
        let table = Maglev::new(&members, DEFAULT_TABLE_SIZE).unwrap();
        let counts = table.slot_counts();
        let total_weight: u32 = members.iter().map(|m| m.1).sum();
        for (i, (_, w)) in members.iter().enumerate() {
            let ideal = f64::from(DEFAULT_TABLE_SIZE) * f64::from(*w) / f64::from(total_weight);
            let got = f64::from(counts[i]);
            assert!(
                (got - ideal).abs() / ideal <= 0.05,
                "member {i} weight {w}: {got} slots, ideal {ideal}"
            );
        }
    }

    #[test]
    fn weight_zero_gets_no_slot() {
        let members = vec![("a", 1), ("b", 0), ("c", 1)];
        let table = Maglev::new(&members, 101).unwrap();
        assert_eq!(table.slot_counts()[1], 0);
        assert_eq!(table.slot_counts().iter().sum::<u32>(), 101);
    }

    #[test]
    fn member_order_does_not_matter() {
        let members = backends(7);
        let mut reversed = members.clone();
        reversed.reverse();
        let a = Maglev::new(&members, 1009).unwrap();
        let b = Maglev::new(&reversed, 1009).unwrap();
        for k in 0..5000 {
            assert_eq!(members[a.lookup(key(k))].0, reversed[b.lookup(key(k))].0);
        }
    }

    #[test]
    fn candidates_are_distinct_and_complete() {
        let members = backends(5);
        let table = Maglev::new(&members, 251).unwrap();
        for k in 0..100 {
            let mut c: Vec<usize> = table.candidates(key(k)).collect();
            assert_eq!(c[0], table.lookup(key(k)));
            c.sort();
            assert_eq!(c, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn bad_sizes_are_rejected() {
        assert_eq!(
            Maglev::new(&[("a", 1)], 65_536).unwrap_err(),
            MaglevError::NotPrime(65_536)
        );
        assert_eq!(
            Maglev::new(&backends(5), 3).unwrap_err(),
            MaglevError::TooSmall {
                size: 3,
                members: 5
            }
        );
        assert_eq!(Maglev::new(&[("a", 0)], 7).unwrap_err(), MaglevError::Empty);
    }

    /// Pinned outputs: if this fails, a change moved clients between backends on
    /// upgrade. Only update the expected values on purpose, and say so in the release
    /// notes.
    #[test]
    fn pinned_outputs() {
        assert_eq!(hash_bytes(b"", KEY_SEED), PINNED_HASH_EMPTY);
        assert_eq!(hash_bytes(&[192, 0, 2, 1], KEY_SEED), PINNED_HASH_IP);
        let members = backends(10);
        let table = Maglev::new(&members, DEFAULT_TABLE_SIZE).unwrap();
        let owners: Vec<usize> = (0..16).map(|k| table.lookup(key(k))).collect();
        assert_eq!(owners, PINNED_OWNERS);
        let order: Vec<usize> = table.candidates(key(42)).collect();
        assert_eq!(order, PINNED_CANDIDATES);
        assert_eq!(table.slot_counts(), PINNED_COUNTS);
    }
    const PINNED_HASH_EMPTY: u64 = 0xf10c_22d2_6362_b423;
    const PINNED_HASH_IP: u64 = 0x87dc_29be_4e24_d1b3;
    const PINNED_OWNERS: [usize; 16] = [2, 1, 6, 9, 4, 6, 1, 2, 6, 5, 5, 0, 1, 1, 9, 8];
    const PINNED_CANDIDATES: [usize; 10] = [2, 9, 8, 4, 7, 0, 6, 5, 1, 3];
    const PINNED_COUNTS: [u32; 10] = [6554, 6554, 6554, 6554, 6554, 6554, 6553, 6553, 6553, 6554];
}
