//! A pool: its settings, backends and Maglev table; immutable once built. A reload
//! builds a new one; [`Backend`]s that survive it (same address) are carried over as
//! the same `Arc`, so their health state and connection counts continue.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::backend::Backend;
use super::maglev::{KEY_SEED, Maglev, MaglevError, hash_bytes};
use crate::api::{BackendStats, PoolStats};
use crate::config::{self, HashKey};
use crate::datapath::upstream_tls::UpstreamTls;
use crate::metrics::Metrics;

/// A pool: its settings, backends and Maglev table.
#[derive(Debug)]
pub struct Pool {
    pub settings: config::Pool,
    backends: Vec<Arc<Backend>>,
    table: Maglev,
    /// `[pool.tls]`: TLS to the backends.
    pub tls: Option<UpstreamTls>,
}

/// What the pool's hash key is computed from.
pub struct KeyInput<'a> {
    pub client: SocketAddr,
    pub sni: Option<&'a str>,
}

impl Pool {
    /// Builds a pool; backends also present in `previous` keep their state.
    pub fn build(
        settings: &config::Pool,
        previous: Option<&Pool>,
        metrics: &Metrics,
    ) -> Result<Pool, MaglevError> {
        let name: Arc<str> = settings.name.as_str().into();
        let backends: Vec<Arc<Backend>> = settings
            .backends
            .iter()
            .map(|b| {
                previous
                    .and_then(|p| p.backends.iter().find(|o| o.address == b.address))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Backend::new(&name, b.address, metrics)))
            })
            .collect();
        let members: Vec<(String, u32)> = settings
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight))
            .collect();
        let table = Maglev::new(&members, settings.table_size)?;
        Ok(Pool {
            settings: settings.clone(),
            backends,
            table,
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

    /// Backends to try, best first: the Maglev owner of the key, then the next
    /// candidates, skipping backends marked down. If every backend is down, all are
    /// tried in the same order (a wrong health verdict should not refuse everyone).
    /// Weight-0 (drained) backends are never candidates.
    pub fn candidates(&self, key_hash: u64) -> impl Iterator<Item = &Arc<Backend>> + '_ {
        let any_up = self
            .backends
            .iter()
            .zip(&self.settings.backends)
            .any(|(b, c)| c.weight > 0 && b.is_up());
        self.table
            .candidates(key_hash)
            .map(|i| &self.backends[i])
            .filter(move |b| !any_up || b.is_up())
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            name: self.settings.name.clone(),
            backends: self
                .backends
                .iter()
                .zip(&self.settings.backends)
                .map(|(b, c)| BackendStats {
                    address: b.address,
                    weight: c.weight,
                    healthy: b.is_up(),
                    active_connections: b.active_connections(),
                    connect_failures: b.metrics.connect_failures.get(),
                    last_failure: b.last_failure(),
                })
                .collect(),
        }
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
        let p = Pool::build(&settings, None, &metrics).unwrap();
        let h = key(&p, "192.0.2.9:1234");
        let first = p.candidates(h).next().unwrap().address;
        let owner = p.backends.iter().find(|b| b.address == first).unwrap();
        owner.record(false, Source::Traffic, &settings.health, "refused");
        assert!(owner.is_up(), "one failure is below fall = 2");
        owner.record(false, Source::Traffic, &settings.health, "refused");
        assert!(!owner.is_up());
        let now: Vec<_> = p.candidates(h).map(|b| b.address).collect();
        assert_eq!(now.len(), 2);
        assert!(!now.contains(&first));
        for b in &p.backends {
            for _ in 0..2 {
                b.record(false, Source::Check, &settings.health, "timeout");
            }
        }
        assert_eq!(p.candidates(h).count(), 3, "all down: try them all");
        assert_eq!(p.candidates(h).next().unwrap().address, first);
        owner.record(true, Source::Check, &settings.health, "");
        owner.record(true, Source::Check, &settings.health, "");
        assert!(owner.is_up());
        assert_eq!(p.stats().backends.iter().filter(|b| b.healthy).count(), 1);
    }

    #[test]
    fn reload_keeps_backend_state() {
        let metrics = Metrics::new();
        let a = pool(&[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]);
        let old = Pool::build(&a, None, &metrics).unwrap();
        for _ in 0..2 {
            old.backends[1].record(false, Source::Check, &a.health, "refused");
        }
        let b = pool(&[("10.0.0.2:80", 5), ("10.0.0.3:80", 1)]);
        let new = Pool::build(&b, Some(&old), &metrics).unwrap();
        assert!(Arc::ptr_eq(&old.backends[1], &new.backends[0]));
        assert!(!new.backends[0].is_up());
        assert!(new.backends[1].is_up());
        assert_eq!(new.stats().backends[0].weight, 5);
    }

    #[test]
    fn drained_backend_gets_nothing() {
        let metrics = Metrics::new();
        let settings = pool(&[("10.0.0.1:80", 1), ("10.0.0.2:80", 0)]);
        let p = Pool::build(&settings, None, &metrics).unwrap();
        for port in 0..200 {
            let h = key(&p, &format!("192.0.2.1:{port}"));
            let all: Vec<_> = p.candidates(h).map(|b| b.address.port()).collect();
            assert_eq!(all.len(), 1);
            assert_eq!(
                p.candidates(h).next().unwrap().address.to_string(),
                "10.0.0.1:80"
            );
        }
    }

    #[test]
    fn hash_keys() {
        let metrics = Metrics::new();
        let mut settings = pool(&[("10.0.0.1:80", 1)]);
        let p = Pool::build(&settings, None, &metrics).unwrap();
        // Client IP: the port does not matter, IPv4-mapped equals IPv4.
        assert_eq!(key(&p, "192.0.2.1:1"), key(&p, "192.0.2.1:2"));
        assert_eq!(key(&p, "192.0.2.1:1"), key(&p, "[::ffff:192.0.2.1]:9"));
        settings.hash_key = HashKey::ClientIpPort;
        let p = Pool::build(&settings, None, &metrics).unwrap();
        assert_ne!(key(&p, "192.0.2.1:1"), key(&p, "192.0.2.1:2"));
        settings.hash_key = HashKey::Sni;
        let p = Pool::build(&settings, None, &metrics).unwrap();
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
