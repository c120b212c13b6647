//! A pool: its settings, backends and algorithm. A reload builds a new one;
//! [`Backend`]s that survive it (same address) are carried over as the same `Arc`, so
//! their health, connection counts and runtime settings continue. The backends and
//! the algorithm over them form one [`Membership`], swapped in whole when a runtime
//! setting changes ([`Pool::rebuild`]) or DNS changes the backends
//! ([`Pool::set_discovered`]): connections being placed keep the one they loaded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::backend::{Backend, Control};
use super::selection::maglev::{KEY_SEED, MaglevError, hash_bytes};
use super::selection::{self, Members, Selection};
use crate::api::{BackendRuntime, BackendStats, DnsSourceStatus, PoolStats};
use crate::config::{self, Balance, HashKey};
use crate::datapath::upstream_tls::UpstreamTls;
use crate::metrics::Metrics;

/// A pool: its settings, backends and algorithm.
#[derive(Debug)]
pub struct Pool {
    pub settings: config::Pool,
    /// `[pool.tls]`: TLS to the backends.
    pub tls: Option<UpstreamTls>,
    members: ArcSwap<Membership>,
    /// Each DNS source's last lookup, by label (for the API).
    dns: std::sync::Mutex<std::collections::BTreeMap<String, DnsSourceStatus>>,
}

/// Where a backend came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An `address` in the file.
    Config,
    /// A DNS record: the source's label (`A/AAAA api.internal:8443`,
    /// `SRV _api._tcp.internal`).
    Dns(Arc<str>),
}

impl Origin {
    pub fn label(&self) -> String {
        match self {
            Origin::Config => "config".into(),
            Origin::Dns(record) => format!("dns {record}"),
        }
    }
}

/// The pool's backends now, each with its configured weight and origin, and the
/// algorithm over them.
#[derive(Debug)]
pub struct Membership {
    pub backends: Vec<Arc<Backend>>,
    /// The weight from the file or the DNS record, per backend.
    pub weights: Vec<u32>,
    pub origins: Vec<Origin>,
    selector: Selector,
}

/// The algorithm and the weights it works with, rebuilt on runtime changes.
#[derive(Debug)]
struct Selector {
    /// The weight each backend takes new connections with: its weight in force, 0
    /// while drained or in maintenance.
    weights: Vec<u32>,
    selection: Box<dyn Selection>,
}

/// What the pool's hash key is computed from.
pub struct KeyInput<'a> {
    pub client: SocketAddr,
    pub sni: Option<&'a str>,
}

/// Maglev slots whose owner changed, of all slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub slots: u32,
    pub of: u32,
}

impl Moved {
    pub fn percent(self) -> f64 {
        f64::from(self.slots) * 100.0 / f64::from(self.of.max(1))
    }
}

/// What a DNS change did to a pool.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    pub added: Vec<SocketAddr>,
    /// Backends no record names any more: no new connections, open ones continue.
    pub removed: Vec<SocketAddr>,
    /// Records left out (Maglev keeps at most a tenth of its table).
    pub left_out: usize,
    pub moved: Option<Moved>,
}

impl Pool {
    /// Builds a pool; backends also present in `previous` keep their state (health,
    /// connections, runtime settings), and its DNS backends stay while their source
    /// is still configured (until the next lookup says otherwise). New backends take
    /// the runtime settings that `handed_over` (from the process this one took over
    /// from) has for them; with a `previous` pool they are new to it, so they start
    /// their slow start.
    pub fn build(
        settings: &config::Pool,
        previous: Option<&Pool>,
        handed_over: &[BackendRuntime],
        metrics: &Metrics,
    ) -> Result<Pool, MaglevError> {
        let name: Arc<str> = settings.name.as_str().into();
        let make = |address: SocketAddr| -> Arc<Backend> {
            if let Some(kept) = previous.and_then(|p| p.backend(address)) {
                return kept;
            }
            let new = Backend::new(&name, address, metrics, previous.is_some());
            let runtime = handed_over
                .iter()
                .find(|r| r.pool == settings.name && r.address == address);
            if let Some(r) = runtime {
                new.set_control(Control {
                    state: r.state,
                    weight: r.weight.filter(|&w| w <= config::MAX_WEIGHT),
                    changed: r.changed.clone(),
                });
            }
            Arc::new(new)
        };
        let mut list: Vec<(SocketAddr, u32, Origin)> = settings
            .backends
            .iter()
            .filter_map(|b| Some((b.address?, b.weight, Origin::Config)))
            .collect();
        if let Some(previous) = previous {
            let sources = dns_sources(settings);
            let old = previous.members.load();
            for ((b, &w), origin) in old.backends.iter().zip(&old.weights).zip(&old.origins) {
                let still = matches!(origin, Origin::Dns(r) if sources.iter().any(|s| s == &**r));
                if still && !list.iter().any(|(a, _, _)| *a == b.address) {
                    list.push((b.address, w, origin.clone()));
                }
            }
        }
        let membership = Membership::build(settings, list, make)?;
        let sources = dns_sources(settings);
        let dns = sources
            .iter()
            .map(|label| {
                let kept =
                    previous.and_then(|p| p.dns_status().into_iter().find(|s| &s.source == label));
                let status = kept.unwrap_or_else(|| DnsSourceStatus {
                    source: label.clone(),
                    state: "unknown".into(),
                    last_resolution_unix: None,
                    last_result: None,
                    last_error: None,
                    backends: Vec::new(),
                });
                (label.clone(), status)
            })
            .collect();
        Ok(Pool {
            settings: settings.clone(),
            members: ArcSwap::from_pointee(membership),
            tls: None,
            dns: std::sync::Mutex::new(dns),
        })
    }

    /// The pool with TLS to its backends.
    pub fn with_tls(mut self, tls: Option<UpstreamTls>) -> Pool {
        self.tls = tls;
        self
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The backends now, with their weights and origins.
    pub fn members(&self) -> arc_swap::Guard<Arc<Membership>> {
        self.members.load()
    }

    /// The backends now.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.members.load().backends.clone()
    }

    /// The backend at `address`, if the pool has it now.
    pub fn backend(&self, address: SocketAddr) -> Option<Arc<Backend>> {
        let m = self.members.load();
        m.backends.iter().find(|b| b.address == address).cloned()
    }

    /// The configured weight (file or DNS record) of `backend`; 0 if it left.
    pub fn config_weight(&self, backend: &Backend) -> u32 {
        let m = self.members.load();
        m.backends
            .iter()
            .zip(&m.weights)
            .find(|(b, _)| b.address == backend.address)
            .map_or(0, |(_, &w)| w)
    }

    /// Rebuilds the algorithm from every backend's runtime settings (after one
    /// changed) and swaps it in; with Maglev, the slots that moved.
    pub fn rebuild(&self) -> Result<Option<Moved>, MaglevError> {
        let old = self.members.load_full();
        let list = old.list();
        let new = Membership::build(&self.settings, list, |a| {
            old.backends
                .iter()
                .find(|b| b.address == a)
                .cloned()
                .expect("same members")
        })?;
        let moved = moved(&old, &new);
        self.members.store(Arc::new(new));
        self.show_state();
        Ok(moved)
    }

    /// DNS source `source` now names `found` (address, weight, host name): the pool's backends
    /// from that source become these (addresses another source already has stay
    /// with it), the algorithm is rebuilt and swapped in.
    pub fn set_discovered(
        &self,
        source: &str,
        found: &[(SocketAddr, u32, &str)],
        metrics: &Metrics,
    ) -> Result<Discovered, MaglevError> {
        let old = self.members.load_full();
        let label: Arc<str> = source.into();
        let from_source = |o: &Origin| matches!(o, Origin::Dns(r) if **r == *source);
        let mut list: Vec<(SocketAddr, u32, Origin)> = old
            .list()
            .into_iter()
            .filter(|(_, _, o)| !from_source(o))
            .collect();
        // Maglev spreads well up to a tenth of its table.
        let room = match self.settings.balance {
            Balance::Maglev => (self.settings.table_size as usize / 10).saturating_sub(list.len()),
            _ => usize::MAX,
        };
        let fresh: Vec<&(SocketAddr, u32, &str)> = found
            .iter()
            .filter(|(a, _, _)| !list.iter().any(|(b, _, _)| b == a))
            .collect();
        let left_out = fresh.len().saturating_sub(room);
        for &&(address, weight, _) in fresh.iter().take(room) {
            list.push((address, weight, Origin::Dns(label.clone())));
        }
        let name: Arc<str> = self.settings.name.as_str().into();
        let new = Membership::build(&self.settings, list, |a| {
            old.backends
                .iter()
                .find(|b| b.address == a)
                .cloned()
                .unwrap_or_else(|| {
                    let host = found.iter().find(|f| f.0 == a).map(|f| f.2);
                    let backend = Backend::new(&name, a, metrics, true);
                    Arc::new(backend.with_host(host.filter(|h| !h.is_empty())))
                })
        })?;
        let has = |m: &Membership, a: SocketAddr| m.backends.iter().any(|b| b.address == a);
        let change = Discovered {
            added: new
                .backends
                .iter()
                .map(|b| b.address)
                .filter(|&a| !has(&old, a))
                .collect(),
            removed: old
                .backends
                .iter()
                .map(|b| b.address)
                .filter(|&a| !has(&new, a))
                .collect(),
            left_out,
            moved: moved(&old, &new),
        };
        for &a in &change.removed {
            metrics.remove_backend(&self.settings.name, &a.to_string());
        }
        self.members.store(Arc::new(new));
        self.show_state();
        Ok(change)
    }

    /// Records what a DNS source's last lookup found.
    pub fn set_dns_status(&self, status: DnsSourceStatus) {
        let mut dns = self.dns.lock().unwrap_or_else(|p| p.into_inner());
        dns.insert(status.source.clone(), status);
    }

    /// Every DNS source's last lookup.
    pub fn dns_status(&self) -> Vec<DnsSourceStatus> {
        let dns = self.dns.lock().unwrap_or_else(|p| p.into_inner());
        dns.values().cloned().collect()
    }

    /// Backends from the file and from DNS.
    pub fn origin_counts(&self) -> (usize, usize) {
        let m = self.members.load();
        let config = m.origins.iter().filter(|o| **o == Origin::Config).count();
        (config, m.origins.len() - config)
    }

    /// For a reload: the Maglev slots that moved from `previous` (same name) to this
    /// pool, backends compared by address.
    pub fn moved_from(&self, previous: &Pool) -> Option<Moved> {
        moved(&previous.members.load(), &self.members.load())
    }

    /// Publishes each backend's state and weight in force (`proxy_backend_state`,
    /// `proxy_backend_weight`).
    pub fn show_state(&self) {
        let m = self.members.load();
        for (b, &w) in m.backends.iter().zip(&m.weights) {
            let control = b.control();
            let (state_origin, weight_origin) = control.origins();
            b.metrics.control.show(
                control.state,
                state_origin,
                control.weight(w),
                weight_origin,
            );
        }
    }

    /// The hash of the configured key for one connection.
    pub fn key_hash(&self, input: &KeyInput<'_>) -> u64 {
        let ip = input.client.ip().to_canonical();
        let mut buf = [0u8; 18];
        let ip_bytes = match ip {
            IpAddr::V4(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                buf[..16].copy_from_slice(&v6.octets());
                16
            }
        };
        match (self.settings.hash_key, input.sni) {
            (HashKey::Sni, Some(sni)) => {
                let lower = sni.trim_end_matches('.').to_ascii_lowercase();
                hash_bytes(lower.as_bytes(), KEY_SEED)
            }
            (HashKey::ClientIpPort, _) => {
                buf[ip_bytes..ip_bytes + 2].copy_from_slice(&input.client.port().to_be_bytes());
                hash_bytes(&buf[..ip_bytes + 2], KEY_SEED)
            }
            _ => hash_bytes(&buf[..ip_bytes], KEY_SEED),
        }
    }

    /// Up to `n` backends to try for one connection, best first, in the pool's
    /// algorithm's order, each worked out when asked for (a connection that gets the
    /// first one costs one pick). Only backends that take new connections: ready,
    /// weight above 0, and up (unless every such backend is down: then all of them
    /// are tried, as a health check can be wrong).
    pub fn candidates(&self, key_hash: u64, n: usize) -> Candidates {
        Candidates {
            members: self.members.load_full(),
            slow_start: self.settings.slow_start,
            key_hash,
            last: None,
            tried: Vec::new(),
            left: n,
        }
    }

    pub fn stats(&self) -> PoolStats {
        let now = super::slow_start::now_ms();
        let m = self.members.load();
        PoolStats {
            name: self.settings.name.clone(),
            balance: self.settings.balance,
            slow_start_ms: self
                .settings
                .slow_start
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            backends: m
                .backends
                .iter()
                .zip(&m.weights)
                .zip(&m.origins)
                .map(|((b, &w), origin)| {
                    let control = b.control();
                    let (state_origin, weight_origin) = control.origins();
                    let ramp = self.settings.slow_start.map(|r| b.ramp_permille(now, r));
                    BackendStats {
                        address: b.address,
                        weight: control.weight(w),
                        weight_origin,
                        config_weight: w,
                        state: control.state,
                        state_origin,
                        changed: control.changed.clone().filter(|_| control.is_runtime()),
                        slow_start_percent: ramp.filter(|&p| p < 1000).map(|p| (p / 10) as u32),
                        healthy: b.is_up(),
                        active_connections: b.active_connections(),
                        connect_failures: b.metrics.connect_failures.get(),
                        last_failure: b.last_failure(),
                        origin: origin.label(),
                    }
                })
                .collect(),
            discovery: self.dns_status(),
        }
    }
}

/// The labels of the DNS sources `settings` configures (see [`Origin::Dns`]).
pub fn dns_sources(settings: &config::Pool) -> Vec<String> {
    let names = settings
        .backends
        .iter()
        .filter_map(|b| b.name.as_ref())
        .map(|n| format!("A/AAAA {n}"));
    let srv = settings
        .discovery
        .as_ref()
        .and_then(|d| d.srv.as_ref())
        .map(|s| format!("SRV {s}"));
    names.chain(srv).collect()
}

/// The backends to try for one connection ([`Pool::candidates`]).
pub struct Candidates {
    /// The membership in force when the connection started.
    members: Arc<Membership>,
    slow_start: Option<std::time::Duration>,
    key_hash: u64,
    /// The last one given; moved to `tried` only when another is asked for, so a
    /// connection whose first connect works allocates nothing.
    last: Option<usize>,
    tried: Vec<usize>,
    left: usize,
}

impl Iterator for Candidates {
    type Item = Arc<Backend>;

    fn next(&mut self) -> Option<Arc<Backend>> {
        if self.left == 0 {
            return None;
        }
        self.tried.extend(self.last.take());
        let m = &self.members;
        let members = Members::new(&m.backends, &m.selector.weights, self.slow_start);
        let i = m
            .selector
            .selection
            .next(&members, self.key_hash, &self.tried)?;
        self.left -= 1;
        self.last = Some(i);
        Some(m.backends[i].clone())
    }
}

impl Membership {
    /// The backends of `list` (address, configured weight, origin), each from `make`,
    /// with the algorithm over them.
    fn build(
        settings: &config::Pool,
        list: Vec<(SocketAddr, u32, Origin)>,
        make: impl Fn(SocketAddr) -> Arc<Backend>,
    ) -> Result<Membership, MaglevError> {
        let backends: Vec<Arc<Backend>> = list.iter().map(|(a, _, _)| make(*a)).collect();
        let weights: Vec<u32> = list.iter().map(|(_, w, _)| *w).collect();
        let origins: Vec<Origin> = list.into_iter().map(|(_, _, o)| o).collect();
        let selector = Selector::build(settings, &backends, &weights)?;
        Ok(Membership {
            backends,
            weights,
            origins,
            selector,
        })
    }

    /// (address, configured weight, origin) of every backend.
    fn list(&self) -> Vec<(SocketAddr, u32, Origin)> {
        self.backends
            .iter()
            .zip(&self.weights)
            .zip(&self.origins)
            .map(|((b, &w), o)| (b.address, w, o.clone()))
            .collect()
    }
}

impl Selector {
    fn build(
        settings: &config::Pool,
        backends: &[Arc<Backend>],
        config_weights: &[u32],
    ) -> Result<Selector, MaglevError> {
        let weights: Vec<u32> = backends
            .iter()
            .zip(config_weights)
            .map(|(b, &w)| b.control().serving_weight(w))
            .collect();
        let members: Vec<(String, u32)> = backends
            .iter()
            .zip(&weights)
            .map(|(b, &w)| (b.address.to_string(), w))
            .collect();
        let selection = selection::build(settings.balance, &members, settings.table_size)?;
        Ok(Selector { weights, selection })
    }
}

/// Maglev slots whose owner (by address) is not the same in `new` as in `old`; all
/// of them when a table appears or goes; `None` without tables.
fn moved(old: &Membership, new: &Membership) -> Option<Moved> {
    let same = |a: usize, b: usize| old.backends[a].address == new.backends[b].address;
    match (
        old.selector.selection.table(),
        new.selector.selection.table(),
    ) {
        (Some(a), Some(b)) => Some(Moved {
            slots: a.moved_slots(b, same),
            of: a.size(),
        }),
        (Some(t), None) | (None, Some(t)) => Some(Moved {
            slots: t.size(),
            of: t.size(),
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::balance::backend::Source;

    fn pool(backends: &[(&str, u32)]) -> config::Pool {
        let list = backends
            .iter()
            .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\npool = \"p\"\n\
             [[pool]]\nname = \"p\"\nbackends = [{list}]\n[pool.health]\nrise = 2\nfall = 2\n"
        );
        config::parse(&text).unwrap().pools.remove(0)
    }

    fn key(p: &Pool, client: &str) -> u64 {
        p.key_hash(&KeyInput {
            client: client.parse().unwrap(),
            sni: None,
        })
    }

    #[test]
    fn down_backends_are_skipped_until_all_are_down() {
        let metrics = Metrics::new();
        let settings = pool(&[("10.0.0.1:80", 1), ("10.0.0.2:80", 1), ("10.0.0.3:80", 1)]);
        let p = Pool::build(&settings, None, &[], &metrics).unwrap();
        let h = key(&p, "192.0.2.9:1234");
        let first = p.candidates(h, 10).next().unwrap().address;
        let owner = p.backend(first).unwrap();
        owner.record(false, Source::Traffic, &settings.health, "refused");
        assert!(owner.is_up(), "one failure is below fall = 2");
        owner.record(false, Source::Traffic, &settings.health, "refused");
        assert!(!owner.is_up());
        let now: Vec<_> = p.candidates(h, 10).map(|b| b.address).collect();
        assert_eq!(now.len(), 2);
        assert!(!now.contains(&first));
        for b in &p.backends() {
            for _ in 0..2 {
                b.record(false, Source::Check, &settings.health, "timeout");
            }
        }
        assert_eq!(p.candidates(h, 10).count(), 3, "all down: try them all");
        assert_eq!(p.candidates(h, 10).next().unwrap().address, first);
        owner.record(true, Source::Check, &settings.health, "");
        owner.record(true, Source::Check, &settings.health, "");
        assert!(owner.is_up());
        assert_eq!(p.stats().backends.iter().filter(|b| b.healthy).count(), 1);
    }

    #[test]
    fn reload_keeps_backend_state() {
        let metrics = Metrics::new();
        let a = pool(&[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]);
        let old = Pool::build(&a, None, &[], &metrics).unwrap();
        for _ in 0..2 {
            old.backends()[1].record(false, Source::Check, &a.health, "refused");
        }
        let b = pool(&[("10.0.0.2:80", 5), ("10.0.0.3:80", 1)]);
        let new = Pool::build(&b, Some(&old), &[], &metrics).unwrap();
        assert!(Arc::ptr_eq(&old.backends()[1], &new.backends()[0]));
        assert!(!new.backends()[0].is_up());
        assert!(new.backends()[1].is_up());
        assert_eq!(new.stats().backends[0].weight, 5);
    }

    /// DNS adds and removes backends: those that stay keep their state, Maglev moves
    /// about the changed share, a reload carries the DNS backends over.
    #[test]
    fn dns_backends_come_and_go_and_survive_a_reload() {
        let metrics = Metrics::new();
        let text = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\npool = \"p\"\n\
                    [[pool]]\nname = \"p\"\nbackends = [{ address = \"10.0.0.1:80\" }, \
                    { name = \"api.internal:80\" }]\n";
        let settings = config::parse(text).unwrap().pools.remove(0);
        let p = Pool::build(&settings, None, &[], &metrics).unwrap();
        assert_eq!(p.origin_counts(), (1, 0), "the name is not looked up yet");
        let label = "A/AAAA api.internal:80";
        assert_eq!(dns_sources(&settings), [label]);
        let addr = |last: u8| SocketAddr::from(([10, 0, 1, last], 80));
        let found: Vec<_> = (1..=4).map(|i| (addr(i), 1, "api.internal")).collect();
        let change = p.set_discovered(label, &found, &metrics).unwrap();
        assert_eq!(change.added.len(), 4);
        assert_eq!(p.backend(addr(2)).unwrap().host(), Some("api.internal"));
        assert_eq!(
            p.backend(SocketAddr::from(([10, 0, 0, 1], 80)))
                .unwrap()
                .host(),
            None
        );
        assert!(change.removed.is_empty());
        assert_eq!(p.origin_counts(), (1, 4));
        // The first DNS backend keeps its state through a change that drops another.
        let kept = p.backend(addr(1)).unwrap();
        for _ in 0..3 {
            kept.record(false, Source::Check, &settings.health, "refused");
        }
        let change = p
            .set_discovered(
                label,
                &[
                    (addr(1), 1, "api"),
                    (addr(2), 1, "api"),
                    (addr(3), 1, "api"),
                ],
                &metrics,
            )
            .unwrap();
        assert_eq!(change.removed, [addr(4)]);
        assert!(Arc::ptr_eq(&kept, &p.backend(addr(1)).unwrap()));
        assert!(!p.backend(addr(1)).unwrap().is_up());
        // One of five backends left: about a fifth of the table moved, no more.
        let moved = change.moved.unwrap().percent();
        assert!((15.0..=25.0).contains(&moved), "{moved} %");
        let stats = p.stats();
        assert_eq!(stats.backends.len(), 4);
        assert_eq!(stats.backends[1].origin, format!("dns {label}"));
        // A reload with the same source keeps them; without it, they go.
        let again = Pool::build(&settings, Some(&p), &[], &metrics).unwrap();
        assert_eq!(again.origin_counts(), (1, 3));
        let mut without = settings.clone();
        without.backends.truncate(1);
        let gone = Pool::build(&without, Some(&p), &[], &metrics).unwrap();
        assert_eq!(gone.origin_counts(), (1, 0));
    }

    #[test]
    fn drained_backend_gets_nothing() {
        let metrics = Metrics::new();
        let settings = pool(&[("10.0.0.1:80", 1), ("10.0.0.2:80", 0)]);
        let p = Pool::build(&settings, None, &[], &metrics).unwrap();
        for port in 0..200 {
            let h = key(&p, &format!("192.0.2.1:{port}"));
            let all: Vec<_> = p.candidates(h, 10).map(|b| b.address.port()).collect();
            assert_eq!(all.len(), 1);
            assert_eq!(
                p.candidates(h, 10).next().unwrap().address.to_string(),
                "10.0.0.1:80"
            );
        }
    }

    #[test]
    fn hash_keys() {
        let metrics = Metrics::new();
        let mut settings = pool(&[("10.0.0.1:80", 1)]);
        let p = Pool::build(&settings, None, &[], &metrics).unwrap();
        // Client IP: the port does not matter, IPv4-mapped equals IPv4.
        assert_eq!(key(&p, "192.0.2.1:1"), key(&p, "192.0.2.1:2"));
        assert_eq!(key(&p, "192.0.2.1:1"), key(&p, "[::ffff:192.0.2.1]:9"));
        settings.hash_key = HashKey::ClientIpPort;
        let p = Pool::build(&settings, None, &[], &metrics).unwrap();
        assert_ne!(key(&p, "192.0.2.1:1"), key(&p, "192.0.2.1:2"));
        settings.hash_key = HashKey::Sni;
        let p = Pool::build(&settings, None, &[], &metrics).unwrap();
        let sni = |client: &str, sni| {
            p.key_hash(&KeyInput {
                client: client.parse().unwrap(),
                sni,
            })
        };
        assert_eq!(
            sni("192.0.2.1:1", Some("A.com")),
            sni("192.0.2.2:1", Some("a.com"))
        );
        // No SNI: falls back to the client IP.
        assert_eq!(sni("192.0.2.1:1", None), sni("192.0.2.1:7", None));
        assert_ne!(sni("192.0.2.1:1", None), sni("192.0.2.2:1", None));
    }
}
