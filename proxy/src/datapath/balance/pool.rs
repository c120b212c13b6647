//! A pool: its settings, backends and algorithm. A reload builds a new one;
//! [`Backend`]s that survive it (same address) are carried over as the same `Arc`, so
//! their health, connection counts and runtime settings continue. A runtime change
//! (`proxy backend set`) rebuilds only the algorithm, swapped in atomically
//! ([`Pool::rebuild`]): connections being placed keep the one they loaded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::backend::{Backend, Control};
use super::selection::maglev::{KEY_SEED, MaglevError, hash_bytes};
use super::selection::{self, Members, Selection};
use crate::api::{BackendRuntime, BackendStats, PoolStats};
use crate::config::{self, HashKey};
use crate::datapath::upstream_tls::UpstreamTls;
use crate::metrics::Metrics;

/// A pool: its settings, backends and algorithm.
#[derive(Debug)]
pub struct Pool {
    pub settings: config::Pool,
    backends: Vec<Arc<Backend>>,
    /// `[pool.tls]`: TLS to the backends.
    pub tls: Option<UpstreamTls>,
    selector: ArcSwap<Selector>,
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

impl Pool {
    /// Builds a pool; backends also present in `previous` keep their state (health,
    /// connections, runtime settings). New backends take the runtime settings that
    /// `handed_over` (from the process this one took over from) has for them; with a
    /// `previous` pool they are new to it, so they start their slow start.
    pub fn build(
        settings: &config::Pool,
        previous: Option<&Pool>,
        handed_over: &[BackendRuntime],
        metrics: &Metrics,
    ) -> Result<Pool, MaglevError> {
        let name: Arc<str> = settings.name.as_str().into();
        let backends: Vec<Arc<Backend>> = settings
            .backends
            .iter()
            .map(|b| {
                if let Some(kept) = previous.and_then(|p| p.backend(b.address)) {
                    return kept.clone();
                }
                let new = Backend::new(&name, b.address, metrics, previous.is_some());
                let runtime = handed_over
                    .iter()
                    .find(|r| r.pool == settings.name && r.address == b.address);
                if let Some(r) = runtime {
                    new.set_control(Control {
                        state: r.state,
                        weight: r.weight.filter(|&w| w <= config::MAX_WEIGHT),
                        changed: r.changed.clone(),
                    });
                }
                Arc::new(new)
            })
            .collect();
        let selector = Selector::build(settings, &backends)?;
        Ok(Pool {
            settings: settings.clone(),
            backends,
            selector: ArcSwap::from_pointee(selector),
            tls: None,
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

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The backend at `address`, if the pool has it.
    pub fn backend(&self, address: SocketAddr) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.address == address)
    }

    /// The file's weight of `backend` (one of this pool's).
    pub fn config_weight(&self, backend: &Backend) -> u32 {
        self.backends
            .iter()
            .zip(&self.settings.backends)
            .find(|(b, _)| b.address == backend.address)
            .map_or(0, |(_, c)| c.weight)
    }

    /// Rebuilds the algorithm from every backend's runtime settings (after one
    /// changed) and swaps it in; with Maglev, the slots that moved.
    pub fn rebuild(&self) -> Result<Option<Moved>, MaglevError> {
        let new = Selector::build(&self.settings, &self.backends)?;
        let old = self.selector.load();
        let moved = moved(old.selection.table(), new.selection.table(), |a, b| a == b);
        self.selector.store(Arc::new(new));
        self.show_state();
        Ok(moved)
    }

    /// For a reload: the Maglev slots that moved from `previous` (same name) to this
    /// pool, backends compared by address.
    pub fn moved_from(&self, previous: &Pool) -> Option<Moved> {
        let (old, new) = (previous.selector.load(), self.selector.load());
        moved(old.selection.table(), new.selection.table(), |a, b| {
            previous.backends[a].address == self.backends[b].address
        })
    }

    /// Publishes each backend's state and weight in force (`proxy_backend_state`,
    /// `proxy_backend_weight`).
    pub fn show_state(&self) {
        for (b, c) in self.backends.iter().zip(&self.settings.backends) {
            let control = b.control();
            let (state_origin, weight_origin) = control.origins();
            b.metrics.control.show(
                control.state,
                state_origin,
                control.weight(c.weight),
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
    pub fn candidates(&self, key_hash: u64, n: usize) -> Candidates<'_> {
        Candidates {
            pool: self,
            key_hash,
            last: None,
            tried: Vec::new(),
            left: n,
        }
    }

    pub fn stats(&self) -> PoolStats {
        let now = super::slow_start::now_ms();
        PoolStats {
            name: self.settings.name.clone(),
            balance: self.settings.balance,
            slow_start_ms: self
                .settings
                .slow_start
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            backends: self
                .backends
                .iter()
                .zip(&self.settings.backends)
                .map(|(b, c)| {
                    let control = b.control();
                    let (state_origin, weight_origin) = control.origins();
                    let ramp = self.settings.slow_start.map(|r| b.ramp_permille(now, r));
                    BackendStats {
                        address: b.address,
                        weight: control.weight(c.weight),
                        weight_origin,
                        config_weight: c.weight,
                        state: control.state,
                        state_origin,
                        changed: control.changed.clone().filter(|_| control.is_runtime()),
                        slow_start_percent: ramp.filter(|&p| p < 1000).map(|p| (p / 10) as u32),
                        healthy: b.is_up(),
                        active_connections: b.active_connections(),
                        connect_failures: b.metrics.connect_failures.get(),
                        last_failure: b.last_failure(),
                    }
                })
                .collect(),
        }
    }
}

/// The backends to try for one connection ([`Pool::candidates`]).
pub struct Candidates<'a> {
    pool: &'a Pool,
    key_hash: u64,
    /// The last one given; moved to `tried` only when another is asked for, so a
    /// connection whose first connect works allocates nothing.
    last: Option<usize>,
    tried: Vec<usize>,
    left: usize,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a Arc<Backend>;

    fn next(&mut self) -> Option<&'a Arc<Backend>> {
        if self.left == 0 {
            return None;
        }
        self.tried.extend(self.last.take());
        // The algorithm in force now (a runtime change may have swapped it).
        let pool = self.pool;
        let selector = pool.selector.load();
        let members = Members::new(&pool.backends, &selector.weights, pool.settings.slow_start);
        let i = selector
            .selection
            .next(&members, self.key_hash, &self.tried)?;
        self.left -= 1;
        self.last = Some(i);
        Some(&pool.backends[i])
    }
}

impl Selector {
    fn build(settings: &config::Pool, backends: &[Arc<Backend>]) -> Result<Selector, MaglevError> {
        let weights: Vec<u32> = backends
            .iter()
            .zip(&settings.backends)
            .map(|(b, c)| b.control().serving_weight(c.weight))
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

/// Slots of `old` whose owner is not the same (by `same(old member, new member)`) in
/// `new`; all of them when a table appears or goes; `None` without tables.
fn moved(
    old: Option<&selection::maglev::Maglev>,
    new: Option<&selection::maglev::Maglev>,
    same: impl Fn(usize, usize) -> bool,
) -> Option<Moved> {
    match (old, new) {
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
        let owner = p.backends.iter().find(|b| b.address == first).unwrap();
        owner.record(false, Source::Traffic, &settings.health, "refused");
        assert!(owner.is_up(), "one failure is below fall = 2");
        owner.record(false, Source::Traffic, &settings.health, "refused");
        assert!(!owner.is_up());
        let now: Vec<_> = p.candidates(h, 10).map(|b| b.address).collect();
        assert_eq!(now.len(), 2);
        assert!(!now.contains(&first));
        for b in &p.backends {
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
            old.backends[1].record(false, Source::Check, &a.health, "refused");
        }
        let b = pool(&[("10.0.0.2:80", 5), ("10.0.0.3:80", 1)]);
        let new = Pool::build(&b, Some(&old), &[], &metrics).unwrap();
        assert!(Arc::ptr_eq(&old.backends[1], &new.backends[0]));
        assert!(!new.backends[0].is_up());
        assert!(new.backends[1].is_up());
        assert_eq!(new.stats().backends[0].weight, 5);
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
