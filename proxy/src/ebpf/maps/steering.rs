//! Connection steering's maps: STEER_STATE (on/off, this node's address and port,
//! the active slot), STEER_VIPS (what is steered), STEER_PEERS (the members, with
//! what the program learned of how to reach them) and STEER_SLOTS (the forwarding
//! table in use and the next). Derived from the config and the fleet's table at
//! every start, so not pinned.

use std::net::IpAddr;
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData};
use proxy_common::steering::{
    STEER_MAX_MEMBERS, STEER_NO_MEMBER, STEER_ROWS, SteerMember, SteerPeer, SteerRow, SteerSlot,
    SteerState,
};
use proxy_common::{AddrKey, ListenerKey, map_names};

use super::{EbpfError, map_err};
use crate::ebpf::services::addr_key;

/// What steering is configured with: this node's address and GUE port, the steered
/// VIPs with their listener ports.
pub type Setup<'a> = (IpAddr, u16, &'a [(IpAddr, Vec<u16>)]);

/// A table as the kernel takes it (computed by the control plane).
pub struct SlotContent<'a> {
    pub generation: u64,
    /// (address, GUE port) per member, in index order.
    pub members: &'a [(IpAddr, u16)],
    /// This node's index, if it is a member.
    pub me: Option<u16>,
    /// (primary, secondary) per row: STEER_ROWS of them.
    pub rows: &'a [(u16, u16)],
}

pub struct SteerMaps {
    state: Array<MapData, SteerState>,
    slots: Array<MapData, SteerSlot>,
    vips: HashMap<MapData, ListenerKey, u32>,
    peers: HashMap<MapData, AddrKey, SteerPeer>,
    /// The generation each slot holds (`None`: nothing written yet).
    slot_generation: [Option<u64>; 2],
    /// The slot packets are steered by.
    active: usize,
}

impl SteerMaps {
    pub(crate) fn take_from(ebpf: &mut aya::Ebpf) -> Result<SteerMaps, EbpfError> {
        macro_rules! typed {
            ($name:expr) => {
                ebpf.take_map($name)
                    .ok_or_else(|| EbpfError::Io {
                        context: format!("the embedded object has no map {}", $name),
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    })?
                    .try_into()
                    .map_err(map_err($name))?
            };
        }
        Ok(SteerMaps {
            state: typed!(map_names::STEER_STATE),
            slots: typed!(map_names::STEER_SLOTS),
            vips: typed!(map_names::STEER_VIPS),
            peers: typed!(map_names::STEER_PEERS),
            slot_generation: [None, None],
            active: 0,
        })
    }

    /// Turns steering on for `vips` (address and listener ports) with this node's
    /// `address` and GUE `port`, or off (`None`).
    pub fn configure(&mut self, setup: Option<Setup>) -> Result<(), EbpfError> {
        let mut state = self
            .state
            .get(&0, 0)
            .map_err(map_err(map_names::STEER_STATE))?;
        let wanted: Vec<ListenerKey> = setup
            .iter()
            .flat_map(|(_, _, vips)| vips.iter())
            .flat_map(|(vip, ports)| {
                // Port 0: the VIP itself, for ICMP errors about its flows.
                std::iter::once(0)
                    .chain(ports.iter().copied())
                    .map(|port| ListenerKey {
                        addr: addr_key(*vip),
                        port: u32::from(port),
                    })
            })
            .collect();
        let stale: Vec<ListenerKey> = self
            .vips
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for key in stale {
            let _ = self.vips.remove(&key);
        }
        for key in &wanted {
            self.vips
                .insert(key, 1, 0)
                .map_err(map_err(map_names::STEER_VIPS))?;
        }
        match setup {
            Some((address, port, _)) => {
                state.enabled = 1;
                state.addr = addr_key(address);
                state.port = u32::from(port);
            }
            None => state.enabled = 0,
        }
        self.state
            .set(0, state, 0)
            .map_err(map_err(map_names::STEER_STATE))
    }

    /// Makes STEER_PEERS hold exactly these members, keeping what the program learned
    /// of the ones it has (a member whose port changed starts over).
    pub fn set_peers(&mut self, peers: &[(IpAddr, u16)]) -> Result<(), EbpfError> {
        let wanted: Vec<(AddrKey, u32)> = peers
            .iter()
            .map(|(a, p)| (addr_key(*a), u32::from(*p)))
            .collect();
        let current: Vec<(AddrKey, SteerPeer)> = self.peers.iter().filter_map(Result::ok).collect();
        for (key, peer) in &current {
            if !wanted.iter().any(|(k, p)| k == key && *p == peer.port) {
                let _ = self.peers.remove(key);
            }
        }
        for (key, port) in wanted {
            if current.iter().any(|(k, p)| *k == key && p.port == port) {
                continue;
            }
            let fresh = SteerPeer {
                port,
                ..SteerPeer::default()
            };
            self.peers
                .insert(key, fresh, 0)
                .map_err(map_err(map_names::STEER_PEERS))?;
        }
        Ok(())
    }

    /// Each member and how long ago its last probe arrived (`None`: never, so the
    /// program cannot send to it yet).
    pub fn reachable(&self, now_ns: u64) -> Vec<(IpAddr, Option<Duration>)> {
        self.peers
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(key, peer)| {
                let addr = key_addr(&key)?;
                let age = (peer.ifindex != 0)
                    .then(|| Duration::from_nanos(now_ns.saturating_sub(peer.learned_ns)));
                Some((addr, age))
            })
            .collect()
    }

    /// Writes `table` into the slot packets are not steered by (a whole slot, one
    /// write). Installing the generation a slot already holds writes nothing.
    pub fn install(&mut self, table: &SlotContent) -> Result<(), EbpfError> {
        if self.slot_generation.contains(&Some(table.generation)) {
            return Ok(());
        }
        if table.members.len() > STEER_MAX_MEMBERS || table.rows.len() != STEER_ROWS {
            return Err(EbpfError::Io {
                context: format!(
                    "a table of {} members and {} rows does not fit the kernel's ({STEER_MAX_MEMBERS}, {STEER_ROWS})",
                    table.members.len(),
                    table.rows.len()
                ),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        // SAFETY: every field of a SteerSlot is a plain integer (or an array of
        // structs of them): all zeroes is a valid value.
        let mut slot: Box<SteerSlot> = unsafe { Box::<SteerSlot>::new_zeroed().assume_init() };
        slot.generation = table.generation;
        slot.self_index = u32::from(table.me.unwrap_or(STEER_NO_MEMBER));
        slot.member_count = table.members.len() as u32;
        for (m, (addr, port)) in slot.members.iter_mut().zip(table.members) {
            *m = SteerMember {
                addr: addr_key(*addr),
                port: u32::from(*port),
            };
        }
        for (r, (primary, secondary)) in slot.rows.iter_mut().zip(table.rows) {
            *r = SteerRow {
                primary: *primary,
                secondary: *secondary,
            };
        }
        let standby = 1 - self.active;
        self.slots
            .set(standby as u32, slot, 0)
            .map_err(map_err(map_names::STEER_SLOTS))?;
        self.slot_generation[standby] = Some(table.generation);
        Ok(())
    }

    /// Makes the slot holding `generation` the one packets are steered by.
    pub fn activate(&mut self, generation: u64) -> Result<(), EbpfError> {
        let Some(slot) = self
            .slot_generation
            .iter()
            .position(|g| *g == Some(generation))
        else {
            return Err(EbpfError::Io {
                context: format!("table generation {generation} is not installed"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        };
        let mut state = self
            .state
            .get(&0, 0)
            .map_err(map_err(map_names::STEER_STATE))?;
        state.active_slot = slot as u32;
        self.state
            .set(0, state, 0)
            .map_err(map_err(map_names::STEER_STATE))?;
        self.active = slot;
        Ok(())
    }

    /// The generation packets are steered by.
    pub fn active_generation(&self) -> Option<u64> {
        self.slot_generation[self.active]
    }
}

fn key_addr(key: &AddrKey) -> Option<IpAddr> {
    match key.family {
        proxy_common::FAMILY_V4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(&key.addr[..4]);
            Some(IpAddr::from(a))
        }
        proxy_common::FAMILY_V6 => Some(IpAddr::from(key.addr)),
        _ => None,
    }
}
