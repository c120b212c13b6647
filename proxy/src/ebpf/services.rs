//! The daemon's side of the service filter and SYN cookies: what the XDP services
//! programs must know (listeners, served ports, service addresses), derived from the
//! config, and the switch of `syn_cookies = "auto"` listeners.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use proxy_common::{
    AddrKey, COOKIES_OFF, COOKIES_ON, ListenerCounters, ListenerKey, ListenerState, PortSet,
};
use tracing::warn;

use crate::api::ListenerXdpStats;
use crate::config::Config;
use crate::config::SynCookieMode;
use crate::config::xdp::{SynCookiesConfig, Transport};

/// One listener as the XDP program knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedListener {
    pub name: String,
    pub bind: SocketAddr,
    pub key: ListenerKey,
    pub mode: SynCookieMode,
    /// Slot in LISTENER_COUNTERS.
    pub index: u32,
}

/// Everything the services programs read, for one config.
#[derive(Clone)]
pub struct ServicePlan {
    pub listeners: Vec<PlannedListener>,
    pub tcp_ports: PortSet,
    pub udp_ports: PortSet,
    pub service_filter: bool,
    pub addresses: Vec<AddrKey>,
}

pub fn addr_key(addr: IpAddr) -> AddrKey {
    match addr {
        IpAddr::V4(a) => AddrKey::v4(a.octets()),
        IpAddr::V6(a) => AddrKey::v6(a.octets()),
    }
}

impl ServicePlan {
    /// `interface_addresses`: the addresses of the XDP interfaces (the service
    /// filter's default destinations).
    pub fn from_config(config: &Config, interface_addresses: &[IpAddr]) -> ServicePlan {
        let mut tcp_ports = PortSet::empty();
        let mut udp_ports = PortSet::empty();
        let listeners = config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                tcp_ports.insert(l.bind.port());
                PlannedListener {
                    name: l.name.clone(),
                    bind: l.bind,
                    key: ListenerKey {
                        addr: addr_key(l.bind.ip()),
                        port: u32::from(l.bind.port()),
                    },
                    mode: l.syn_cookies,
                    index: i as u32,
                }
            })
            .collect();
        // Connection steering's probes arrive on its socket (GUE from a member the
        // program knows never reaches the filter).
        if let Some(steering) = config.steering() {
            udp_ports.insert(steering.port);
        }
        let filter = config.xdp.as_ref().and_then(|x| x.service_filter.as_ref());
        let mut addresses = Vec::new();
        if let Some(filter) = filter {
            for allowed in &filter.allow {
                match allowed.protocol {
                    Transport::Tcp => tcp_ports.insert(allowed.port),
                    Transport::Udp => udp_ports.insert(allowed.port),
                }
            }
            let chosen: Vec<IpAddr> = if filter.addresses.is_empty() {
                let bound = config
                    .listeners
                    .iter()
                    .map(|l| l.bind.ip())
                    .filter(|ip| !ip.is_unspecified());
                interface_addresses.iter().copied().chain(bound).collect()
            } else {
                filter.addresses.clone()
            };
            for ip in chosen {
                let key = addr_key(ip);
                if !addresses.contains(&key) {
                    addresses.push(key);
                }
            }
        }
        ServicePlan {
            listeners,
            tcp_ports,
            udp_ports,
            service_filter: filter.is_some(),
            addresses,
        }
    }

    /// Listeners with cookies `on` or `auto`.
    pub fn cookie_listeners(&self) -> u32 {
        self.listeners
            .iter()
            .filter(|l| l.mode != SynCookieMode::Off)
            .count() as u32
    }
}

/// Addresses configured on the named interfaces.
pub fn interface_addresses(names: &[String]) -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(all) => all
            .into_iter()
            .filter(|i| names.contains(&i.name))
            .map(|i| i.ip())
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot list interface addresses; the service filter applies only to listener addresses and xdp.service_filter.addresses");
            Vec::new()
        }
    }
}

/// A listener's cookie state changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    pub name: String,
    pub key: ListenerKey,
    pub index: u32,
    pub on: bool,
    pub syn_per_second: f64,
}

struct ListenerSwitch {
    listener: PlannedListener,
    /// Cookies answered now (always for `on`).
    active: bool,
    /// Last counters read and when.
    last: Option<(Instant, ListenerCounters)>,
    counters: ListenerCounters,
    syn_per_second: f64,
    /// Last time the SYN rate was at or above the threshold.
    last_busy: Option<Instant>,
}

/// Decides, from each listener's SYN counter, when `auto` listeners answer with
/// cookies: on as soon as the SYN rate between two observations reaches the
/// threshold, off after the rate stayed below it for the quiet period.
pub struct CookieSwitch {
    threshold: f64,
    quiet: Duration,
    listeners: Vec<ListenerSwitch>,
}

impl CookieSwitch {
    /// Starts from `plan`; `auto` listeners that were active in `previous` (same name,
    /// address and mode) stay active.
    pub fn new(
        plan: &ServicePlan,
        config: &SynCookiesConfig,
        previous: Option<&CookieSwitch>,
    ) -> CookieSwitch {
        let listeners = plan
            .listeners
            .iter()
            .map(|l| {
                let before = previous.and_then(|p| {
                    p.listeners.iter().find(|o| {
                        o.listener.name == l.name
                            && o.listener.key == l.key
                            && o.listener.mode == l.mode
                    })
                });
                ListenerSwitch {
                    listener: l.clone(),
                    active: l.mode == SynCookieMode::On
                        || (l.mode == SynCookieMode::Auto && before.is_some_and(|b| b.active)),
                    last: None,
                    counters: ListenerCounters::default(),
                    syn_per_second: 0.0,
                    last_busy: before.and_then(|b| b.last_busy),
                }
            })
            .collect();
        CookieSwitch {
            threshold: f64::from(config.auto_on_syn_per_second),
            quiet: config.auto_off_after,
            listeners,
        }
    }

    /// The LISTENERS entries for the current states.
    pub fn entries(&self) -> Vec<(ListenerKey, ListenerState)> {
        self.listeners
            .iter()
            .map(|l| (l.listener.key, state(l.active, l.listener.index)))
            .collect()
    }

    pub fn active_count(&self) -> u32 {
        self.listeners.iter().filter(|l| l.active).count() as u32
    }

    /// Takes each listener's counters (read at `now`); returns the switches to make.
    pub fn observe(
        &mut self,
        now: Instant,
        mut read: impl FnMut(u32) -> Option<ListenerCounters>,
    ) -> Vec<Switch> {
        let mut switches = Vec::new();
        for l in &mut self.listeners {
            let Some(counters) = read(l.listener.index) else {
                continue;
            };
            if let Some((at, before)) = l.last {
                let seconds = now.duration_since(at).as_secs_f64();
                if seconds > 0.0 {
                    l.syn_per_second = counters.syns.saturating_sub(before.syns) as f64 / seconds;
                }
            }
            l.last = Some((now, counters));
            l.counters = counters;
            if l.syn_per_second >= self.threshold {
                l.last_busy = Some(now);
            }
            if l.listener.mode != SynCookieMode::Auto {
                continue;
            }
            let quiet_long_enough = l
                .last_busy
                .is_none_or(|busy| now.duration_since(busy) >= self.quiet);
            let turn = match l.active {
                false => l.syn_per_second >= self.threshold,
                true => quiet_long_enough,
            };
            if turn {
                l.active = !l.active;
                switches.push(Switch {
                    name: l.listener.name.clone(),
                    key: l.listener.key,
                    index: l.listener.index,
                    on: l.active,
                    syn_per_second: l.syn_per_second,
                });
            }
        }
        switches
    }

    /// Per-listener mode, state, rate and counters, for `proxy stats` and /metrics;
    /// counters as `read` gives them now (else as last observed).
    pub fn stats(
        &self,
        mut read: impl FnMut(u32) -> Option<ListenerCounters>,
    ) -> Vec<ListenerXdpStats> {
        self.listeners
            .iter()
            .map(|l| (l, read(l.listener.index).unwrap_or(l.counters)))
            .map(|(l, counters)| ListenerXdpStats {
                listener: l.listener.name.clone(),
                bind: l.listener.bind.to_string(),
                syn_cookies: l.listener.mode.name().to_string(),
                cookies_active: l.active,
                syn_per_second: l.syn_per_second,
                syns: counters.syns,
                cookies_sent: counters.cookies_sent,
                cookie_acks_ok: counters.cookie_acks_ok,
                cookie_acks_bad: counters.cookie_acks_bad,
            })
            .collect()
    }
}

pub fn state(active: bool, index: u32) -> ListenerState {
    ListenerState {
        cookies: if active { COOKIES_ON } else { COOKIES_OFF },
        index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: &str) -> Config {
        let text = format!(
            r#"
            [[listener]]
            name = "web"
            bind = "0.0.0.0:8443"
            pool = "p"
            syn_cookies = "{mode}"
            [[pool]]
            name = "p"
            backends = [{{ address = "127.0.0.1:1" }}]
            [xdp]
            interfaces = ["lo"]
            syn_cookies = {{ auto_on_syn_per_second = 100, auto_off_after = "10s" }}
            [xdp.service_filter]
            allow = ["22/tcp", "53/udp"]
            "#
        );
        toml::from_str(&text).unwrap()
    }

    fn counters(syns: u64) -> Option<ListenerCounters> {
        Some(ListenerCounters {
            syns,
            ..ListenerCounters::default()
        })
    }

    #[test]
    fn plan_marks_listener_and_allowed_ports_and_addresses() {
        let c = config("auto");
        let plan = ServicePlan::from_config(&c, &["10.1.1.1".parse().unwrap()]);
        assert!(plan.tcp_ports.contains(8443) && plan.tcp_ports.contains(22));
        assert!(plan.udp_ports.contains(53) && !plan.udp_ports.contains(22));
        assert!(!plan.tcp_ports.contains(80));
        assert!(plan.service_filter);
        assert_eq!(plan.addresses, vec![addr_key("10.1.1.1".parse().unwrap())]);
        // The wildcard bind matches every IPv4 destination.
        assert_eq!(plan.listeners[0].key.addr, AddrKey::v4([0; 4]));
        assert_eq!(plan.cookie_listeners(), 1);
    }

    #[test]
    fn auto_switches_on_above_the_threshold_and_off_after_the_quiet_period() {
        let c = config("auto");
        let plan = ServicePlan::from_config(&c, &[]);
        let mut switch = CookieSwitch::new(&plan, &c.xdp.as_ref().unwrap().syn_cookies, None);
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        assert!(switch.observe(s(0), |_| counters(0)).is_empty());
        assert!(
            switch.observe(s(1), |_| counters(50)).is_empty(),
            "50/s is below 100/s"
        );
        let on = switch.observe(s(2), |_| counters(1050));
        assert_eq!(on.len(), 1);
        assert!(on[0].on && on[0].syn_per_second == 1000.0);
        assert_eq!(switch.active_count(), 1);
        assert_eq!(switch.entries()[0].1.cookies, COOKIES_ON);
        // Quiet for 9 s: still on; 10 s: off.
        assert!(switch.observe(s(11), |_| counters(1060)).is_empty());
        let off = switch.observe(s(12), |_| counters(1060));
        assert_eq!(off.len(), 1);
        assert!(!off[0].on);
        assert_eq!(switch.active_count(), 0);
    }

    #[test]
    fn on_and_off_modes_never_switch_and_reload_keeps_auto_state() {
        for (mode, active) in [("on", 1), ("off", 0)] {
            let c = config(mode);
            let plan = ServicePlan::from_config(&c, &[]);
            let mut switch = CookieSwitch::new(&plan, &c.xdp.as_ref().unwrap().syn_cookies, None);
            let t0 = Instant::now();
            switch.observe(t0, |_| counters(0));
            assert!(
                switch
                    .observe(t0 + Duration::from_secs(1), |_| counters(100_000))
                    .is_empty()
            );
            assert_eq!(switch.active_count(), active, "{mode}");
        }
        let c = config("auto");
        let plan = ServicePlan::from_config(&c, &[]);
        let cfg = &c.xdp.as_ref().unwrap().syn_cookies;
        let mut switch = CookieSwitch::new(&plan, cfg, None);
        let t0 = Instant::now();
        switch.observe(t0, |_| counters(0));
        switch.observe(t0 + Duration::from_secs(1), |_| counters(5000));
        let reloaded = CookieSwitch::new(&plan, cfg, Some(&switch));
        assert_eq!(reloaded.active_count(), 1);
    }
}
