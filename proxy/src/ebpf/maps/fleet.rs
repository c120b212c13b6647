//! Fleet entries in the kernel lists. A prefix has one slot per list; the rule for
//! sharing it: a local entry (config, `proxy block add`, auto-block) holds the slot
//! before a fleet entry, so a fleet write never replaces a local one and a fleet
//! delete never removes one. A fleet entry under a local one is "hidden" and comes
//! back when the fleet module reconciles after the local one is gone.

use std::time::Duration;

use ipnet::IpNet;

use super::{EbpfError, List, ListEntry, Maps, Origin, map_err};
use proxy_common::map_names;

/// Where a fleet entry ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetSlot {
    /// In the kernel as a fleet entry.
    Applied,
    /// A local entry holds the prefix; it enforces meanwhile.
    Hidden(Origin),
}

impl Maps {
    /// Puts a fleet entry into the kernel unless a local entry holds exactly that
    /// prefix. `expires_in` = None: permanent.
    pub fn apply_fleet(
        &mut self,
        list: List,
        cidr: IpNet,
        expires_in: Option<Duration>,
        reason: &str,
    ) -> Result<FleetSlot, EbpfError> {
        let _lock = self.write_lock();
        if let Some(current) = self.exact(list, cidr)?
            && current.origin != Origin::Fleet
        {
            return Ok(FleetSlot::Hidden(current.origin));
        }
        self.insert_locked(list, cidr, expires_in, Origin::Fleet, reason)?;
        Ok(FleetSlot::Applied)
    }

    /// Removes the fleet entries at exactly these prefixes; local entries there stay.
    /// Returns how many were removed.
    pub fn remove_fleet(&mut self, list: List, nets: &[IpNet]) -> Result<usize, EbpfError> {
        let _lock = self.write_lock();
        let mut fleet = Vec::with_capacity(nets.len());
        for net in nets {
            if self
                .exact(list, *net)?
                .is_some_and(|e| e.origin == Origin::Fleet)
            {
                fleet.push(*net);
            }
        }
        if fleet.is_empty() {
            return Ok(0);
        }
        self.remove_many_locked(list, &fleet)
    }

    /// The unexpired fleet entries of a list.
    pub fn fleet_entries(&self, list: List) -> Result<Vec<ListEntry>, EbpfError> {
        let mut entries = self.entries(list)?;
        entries.retain(|e| e.origin == Origin::Fleet);
        Ok(entries)
    }

    /// The lists' generation: it changes with every edit, by any writer.
    pub fn policy_generation(&self) -> Result<u64, EbpfError> {
        self.policy_gen
            .get(&0, 0)
            .map_err(map_err(map_names::POLICY_GEN))
    }
}
