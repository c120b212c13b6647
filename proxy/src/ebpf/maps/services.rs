//! What the host serves, as the XDP services programs read it: the listeners with
//! their SYN cookie state (LISTENERS; the wildcard ones also by port in
//! WILDCARD_LISTENERS), their per-listener counters (LISTENER_COUNTERS), the
//! served/allowed ports and the ports with address-bound listeners (SERVED_PORTS) and
//! the service addresses (SERVICE_ADDRS). Derived from the config at every (re)load, so not pinned.

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use proxy_common::{
    AddrKey, BOUND_TCP, FAMILY_V6, ListenerCounters, ListenerKey, ListenerState, PortListeners,
    PortSet, SERVED_TCP, SERVED_UDP, map_names,
};

use super::{EbpfError, Maps, map_err};

/// The service filter and SYN cookie fields of the CONFIG map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceSettings {
    pub service_filter: bool,
    /// Listeners with cookies `on` or `auto`.
    pub syn_cookie_listeners: u32,
    /// Listeners answering with cookies now.
    pub syn_cookies_active: u32,
    pub synack_wscale: u8,
    /// `net.ipv4.ip_local_port_range`.
    pub ephemeral_ports: (u16, u16),
}

impl Maps {
    pub fn write_service_settings(&mut self, s: &ServiceSettings) -> Result<(), EbpfError> {
        let mut config = self.read_config()?;
        config.service_filter = u32::from(s.service_filter);
        config.syn_cookie_listeners = s.syn_cookie_listeners;
        config.syn_cookies_active = s.syn_cookies_active;
        config.synack_wscale = u32::from(s.synack_wscale);
        config.ephemeral_first = u32::from(s.ephemeral_ports.0);
        config.ephemeral_last = u32::from(s.ephemeral_ports.1);
        self.config
            .set(0, config, 0)
            .map_err(map_err(map_names::CONFIG))
    }

    /// The service maps (None for maps opened from the pins: they are not pinned).
    pub fn services(&mut self) -> Option<&mut ServiceMaps> {
        self.services.as_mut()
    }

    pub fn services_ref(&self) -> Option<&ServiceMaps> {
        self.services.as_ref()
    }
}

pub struct ServiceMaps {
    listeners: HashMap<MapData, ListenerKey, ListenerState>,
    wildcards: Array<MapData, PortListeners>,
    counters: PerCpuArray<MapData, ListenerCounters>,
    served: Array<MapData, PortSet>,
    addrs: HashMap<MapData, AddrKey, u32>,
}

impl ServiceMaps {
    pub(crate) fn take_from(ebpf: &mut aya::Ebpf) -> Result<ServiceMaps, EbpfError> {
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
        Ok(ServiceMaps {
            listeners: typed!(map_names::LISTENERS),
            wildcards: typed!(map_names::WILDCARD_LISTENERS),
            counters: typed!(map_names::LISTENER_COUNTERS),
            served: typed!(map_names::SERVED_PORTS),
            addrs: typed!(map_names::SERVICE_ADDRS),
        })
    }

    /// Makes LISTENERS exactly `wanted` (entries not in it are removed), the wildcard
    /// ones also in WILDCARD_LISTENERS, with the set of ports that have an
    /// address-bound listener (the program looks such a port's address up before the
    /// wildcard). A port is in that set whenever it has such an entry: added before
    /// the entries, removed after them.
    pub fn set_listeners(
        &mut self,
        wanted: &[(ListenerKey, ListenerState)],
    ) -> Result<(), EbpfError> {
        let mut bound = PortSet::empty();
        for (key, _) in wanted {
            if !is_wildcard(key) {
                bound.insert(key.port as u16);
            }
        }
        let mut during = self.bound_ports()?;
        for (i, word) in during.words.iter_mut().enumerate() {
            *word |= bound.words[i];
        }
        self.set_bound_ports(&during)?;
        let existing: Vec<ListenerKey> = self.listeners.keys().filter_map(Result::ok).collect();
        for key in existing
            .iter()
            .filter(|k| !wanted.iter().any(|(w, _)| w == *k))
        {
            let _ = self.listeners.remove(key);
            if is_wildcard(key) {
                self.set_wildcard(key, None)?;
            }
        }
        for (key, state) in wanted {
            self.set_listener(key, *state)?;
        }
        self.set_bound_ports(&bound)
    }

    /// Sets one listener's state (LISTENERS, and WILDCARD_LISTENERS for a wildcard).
    pub fn set_listener(
        &mut self,
        key: &ListenerKey,
        state: ListenerState,
    ) -> Result<(), EbpfError> {
        self.listeners
            .insert(key, state, 0)
            .map_err(map_err(map_names::LISTENERS))?;
        if is_wildcard(key) {
            self.set_wildcard(key, Some(state))?;
        }
        Ok(())
    }

    /// The slot of `key`'s family in its port's WILDCARD_LISTENERS entry.
    fn set_wildcard(
        &mut self,
        key: &ListenerKey,
        state: Option<ListenerState>,
    ) -> Result<(), EbpfError> {
        let err = map_err(map_names::WILDCARD_LISTENERS);
        let port = key.port;
        let mut entry = self.wildcards.get(&port, 0).map_err(&err)?;
        let slot = state.map_or(0, PortListeners::slot);
        if key.addr.family == FAMILY_V6 {
            entry.v6 = slot;
        } else {
            entry.v4 = slot;
        }
        self.wildcards.set(port, entry, 0).map_err(&err)
    }

    fn bound_ports(&self) -> Result<PortSet, EbpfError> {
        self.served
            .get(&BOUND_TCP, 0)
            .map_err(map_err(map_names::SERVED_PORTS))
    }

    fn set_bound_ports(&mut self, ports: &PortSet) -> Result<(), EbpfError> {
        self.served
            .set(BOUND_TCP, *ports, 0)
            .map_err(map_err(map_names::SERVED_PORTS))
    }

    /// A listener's counters, summed over CPUs.
    pub fn listener_counters(&self, index: u32) -> Result<ListenerCounters, EbpfError> {
        let per_cpu = self
            .counters
            .get(&index, 0)
            .map_err(map_err(map_names::LISTENER_COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(ListenerCounters::default(), |mut sum, c| {
                sum.syns += c.syns;
                sum.cookies_sent += c.cookies_sent;
                sum.cookie_acks_ok += c.cookie_acks_ok;
                sum.cookie_acks_bad += c.cookie_acks_bad;
                sum
            }))
    }

    pub fn set_served_ports(&mut self, tcp: &PortSet, udp: &PortSet) -> Result<(), EbpfError> {
        let err = map_err(map_names::SERVED_PORTS);
        self.served.set(SERVED_TCP, *tcp, 0).map_err(&err)?;
        self.served.set(SERVED_UDP, *udp, 0).map_err(&err)
    }

    /// Makes SERVICE_ADDRS exactly `wanted`.
    pub fn set_service_addrs(&mut self, wanted: &[AddrKey]) -> Result<(), EbpfError> {
        let stale: Vec<AddrKey> = self
            .addrs
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for key in stale {
            let _ = self.addrs.remove(&key);
        }
        for key in wanted {
            self.addrs
                .insert(key, 1, 0)
                .map_err(map_err(map_names::SERVICE_ADDRS))?;
        }
        Ok(())
    }
}

/// Bound to its family's wildcard address?
fn is_wildcard(key: &ListenerKey) -> bool {
    key.addr.addr == [0; 16]
}
