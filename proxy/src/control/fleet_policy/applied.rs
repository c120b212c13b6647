//! This node's view of the shared entries and how it reaches the kernel: every entry
//! of the view is a fleet entry in the kernel lists (or hidden under a local entry at
//! the same prefix), and no fleet entry is in the kernel that the view lacks.

use std::collections::{BTreeMap, HashMap, HashSet};

use ipnet::IpNet;

use super::store::{SharedEntry, SharedValue};
use crate::api::List;
use crate::control::policy::FleetKernel;

#[derive(Default)]
pub struct Applied {
    entries: HashMap<(List, IpNet), SharedValue>,
    /// Entries a local entry holds the slot of (re-tried on reconcile).
    hidden: HashSet<(List, IpNet)>,
}

/// What one pass changed in the kernel.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub applied: usize,
    pub removed: usize,
    pub hidden: usize,
}

const LISTS: [List; 2] = [List::Block, List::Allow];

impl Applied {
    /// The view becomes exactly `entries` (a full read of the store) and the kernel
    /// follows: entries deleted while this node was away leave its maps too.
    pub fn replace(
        &mut self,
        kernel: &dyn FleetKernel,
        entries: Vec<SharedEntry>,
        now_ms: u64,
    ) -> anyhow::Result<Changes> {
        self.entries = entries
            .into_iter()
            .map(|e| ((e.list, e.value.cidr), e.value))
            .collect();
        self.hidden.clear();
        let mut changes = self.remove_strays(kernel)?;
        let keys: Vec<_> = self.entries.keys().copied().collect();
        for key in keys {
            self.apply_one(kernel, key, now_ms, &mut changes)?;
        }
        Ok(changes)
    }

    /// A put from the store (or from this node's own publish).
    pub fn put(
        &mut self,
        kernel: &dyn FleetKernel,
        entry: SharedEntry,
        now_ms: u64,
    ) -> anyhow::Result<Changes> {
        let key = (entry.list, entry.value.cidr);
        self.entries.insert(key, entry.value);
        self.hidden.remove(&key);
        let mut changes = Changes::default();
        self.apply_one(kernel, key, now_ms, &mut changes)?;
        Ok(changes)
    }

    /// A delete from the store (or a lease that ran out).
    pub fn delete(
        &mut self,
        kernel: &dyn FleetKernel,
        list: List,
        net: IpNet,
    ) -> anyhow::Result<Changes> {
        self.entries.remove(&(list, net));
        self.hidden.remove(&(list, net));
        Ok(Changes {
            removed: kernel.remove_fleet(list, &[net])?,
            ..Changes::default()
        })
    }

    /// After local edits: hidden entries whose local entry is gone come back, fleet
    /// entries the view lacks go, entries missing from the kernel return. Reads each
    /// list once.
    pub fn reconcile(&mut self, kernel: &dyn FleetKernel, now_ms: u64) -> anyhow::Result<Changes> {
        let mut changes = Changes::default();
        let mut in_kernel = HashSet::new();
        for list in LISTS {
            let mut strays = Vec::new();
            for e in kernel.fleet_entries(list)? {
                if self.entries.contains_key(&(list, e.cidr)) {
                    in_kernel.insert((list, e.cidr));
                } else {
                    strays.push(e.cidr);
                }
            }
            if !strays.is_empty() {
                changes.removed += kernel.remove_fleet(list, &strays)?;
            }
        }
        let missing: Vec<_> = self
            .entries
            .keys()
            .filter(|k| !in_kernel.contains(k))
            .copied()
            .collect();
        for key in missing {
            self.apply_one(kernel, key, now_ms, &mut changes)?;
        }
        Ok(changes)
    }

    /// Removes kernel fleet entries the view does not have.
    fn remove_strays(&self, kernel: &dyn FleetKernel) -> anyhow::Result<Changes> {
        let mut changes = Changes::default();
        for list in LISTS {
            let strays: Vec<IpNet> = kernel
                .fleet_entries(list)?
                .into_iter()
                .map(|e| e.cidr)
                .filter(|net| !self.entries.contains_key(&(list, *net)))
                .collect();
            if !strays.is_empty() {
                changes.removed += kernel.remove_fleet(list, &strays)?;
            }
        }
        Ok(changes)
    }

    fn apply_one(
        &mut self,
        kernel: &dyn FleetKernel,
        key: (List, IpNet),
        now_ms: u64,
        changes: &mut Changes,
    ) -> anyhow::Result<()> {
        let Some(value) = self.entries.get(&key) else {
            return Ok(());
        };
        let Some(remaining) = value.remaining(now_ms) else {
            // Ran out; etcd deletes it with its lease.
            self.entries.remove(&key);
            self.hidden.remove(&key);
            return Ok(());
        };
        if kernel.apply_fleet(key.0, key.1, remaining, &value.kernel_reason())? {
            self.hidden.remove(&key);
            changes.applied += 1;
        } else {
            self.hidden.insert(key);
            changes.hidden += 1;
        }
        Ok(())
    }

    pub fn get(&self, list: List, net: IpNet) -> Option<&SharedValue> {
        self.entries.get(&(list, net))
    }

    pub fn len(&self, list: List) -> usize {
        self.entries.keys().filter(|(l, _)| *l == list).count()
    }

    pub fn hidden(&self) -> usize {
        self.hidden.len()
    }

    /// (block, allow) entries per origin node.
    pub fn by_origin(&self) -> BTreeMap<String, (usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for ((list, _), v) in &self.entries {
            let counts = out.entry(v.origin.clone()).or_default();
            match list {
                List::Block => counts.0 += 1,
                List::Allow => counts.1 += 1,
            }
        }
        out
    }

    /// The view's entries of this node's `source`, for re-publishing config entries.
    pub fn published_by<'a>(
        &'a self,
        node: &'a str,
        source: super::store::Source,
    ) -> impl Iterator<Item = (List, IpNet)> + 'a {
        self.entries
            .iter()
            .filter(move |(_, v)| v.origin == node && v.source == source)
            .map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::api::{ListEntry, Origin};
    use crate::control::fleet_policy::store::Source;

    /// One slot per (list, prefix), local entries winning, as the real maps do.
    #[derive(Default)]
    struct FakeKernel {
        slots: Mutex<HashMap<(List, IpNet), Origin>>,
    }

    impl FleetKernel for FakeKernel {
        fn apply_fleet(
            &self,
            list: List,
            net: IpNet,
            _: Option<Duration>,
            _: &str,
        ) -> anyhow::Result<bool> {
            let mut slots = self.slots.lock().unwrap();
            match slots.get(&(list, net)) {
                Some(o) if *o != Origin::Fleet => Ok(false),
                _ => {
                    slots.insert((list, net), Origin::Fleet);
                    Ok(true)
                }
            }
        }
        fn remove_fleet(&self, list: List, nets: &[IpNet]) -> anyhow::Result<usize> {
            let mut slots = self.slots.lock().unwrap();
            let mut n = 0;
            for net in nets {
                if slots.get(&(list, *net)) == Some(&Origin::Fleet) {
                    slots.remove(&(list, *net));
                    n += 1;
                }
            }
            Ok(n)
        }
        fn fleet_entries(&self, list: List) -> anyhow::Result<Vec<ListEntry>> {
            Ok(self
                .slots
                .lock()
                .unwrap()
                .iter()
                .filter(|((l, _), o)| *l == list && **o == Origin::Fleet)
                .map(|((_, net), _)| ListEntry {
                    cidr: *net,
                    expires_in: None,
                    created_at_unix: 0,
                    origin: Origin::Fleet,
                    reason: String::new(),
                })
                .collect())
        }
        fn policy_generation(&self) -> Option<u64> {
            Some(0)
        }
    }

    fn entry(cidr: &str, ttl_ms: Option<u64>) -> SharedEntry {
        SharedEntry {
            list: List::Block,
            value: SharedValue {
                cidr: cidr.parse().unwrap(),
                reason: "r".into(),
                origin: "n1".into(),
                source: Source::Manual,
                created_unix_ms: 1_000,
                ttl_ms,
            },
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_read_removes_what_was_deleted_meanwhile() {
        let k = FakeKernel::default();
        let mut a = Applied::default();
        a.replace(
            &k,
            vec![entry("10.0.0.1/32", None), entry("10.0.0.2/32", None)],
            0,
        )
        .unwrap();
        // 10.0.0.2 deleted while the node was away; 10.0.0.3 added.
        let c = a
            .replace(
                &k,
                vec![entry("10.0.0.1/32", None), entry("10.0.0.3/32", None)],
                0,
            )
            .unwrap();
        assert_eq!(c.removed, 1);
        let slots = k.slots.lock().unwrap();
        assert!(slots.contains_key(&(List::Block, net("10.0.0.3/32"))));
        assert!(!slots.contains_key(&(List::Block, net("10.0.0.2/32"))));
    }

    #[test]
    fn local_entries_keep_their_slot_and_hidden_entries_come_back() {
        let k = FakeKernel::default();
        k.slots
            .lock()
            .unwrap()
            .insert((List::Block, net("10.0.0.1/32")), Origin::Manual);
        let mut a = Applied::default();
        let c = a.put(&k, entry("10.0.0.1/32", None), 0).unwrap();
        assert_eq!(c.hidden, 1);
        assert_eq!(a.hidden(), 1);
        // A fleet delete leaves the local entry alone.
        a.delete(&k, List::Block, net("10.0.0.1/32")).unwrap();
        assert_eq!(
            k.slots
                .lock()
                .unwrap()
                .get(&(List::Block, net("10.0.0.1/32"))),
            Some(&Origin::Manual)
        );
        // Hidden again, then the local entry goes: reconcile brings the fleet one back.
        a.put(&k, entry("10.0.0.1/32", None), 0).unwrap();
        k.slots.lock().unwrap().clear();
        let c = a.reconcile(&k, 0).unwrap();
        assert_eq!(c.applied, 1);
        assert_eq!(a.hidden(), 0);
    }

    #[test]
    fn expired_entries_are_not_applied() {
        let k = FakeKernel::default();
        let mut a = Applied::default();
        let c = a.put(&k, entry("10.0.0.1/32", Some(500)), 2_000).unwrap();
        assert_eq!(c, Changes::default());
        assert_eq!(a.len(List::Block), 0);
    }
}
