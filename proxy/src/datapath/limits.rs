//! Connection limits: the process-wide and per-listener counts of open connections
//! and the per-source count, each checked on acquire and released on drop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Held for a connection's lifetime: releases its places in every limit.
pub struct Admission {
    _global: SlotGuard,
    _listener: SlotGuard,
    _source: Option<SourceGuard>,
    active: prometheus_client::metrics::gauge::Gauge,
}

impl Admission {
    pub fn new(
        global: SlotGuard,
        listener: SlotGuard,
        source: Option<SourceGuard>,
        active: prometheus_client::metrics::gauge::Gauge,
    ) -> Admission {
        active.inc();
        Admission {
            _global: global,
            _listener: listener,
            _source: source,
            active,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// A count of open connections with a limit checked on acquire, and its high-water
/// mark.
#[derive(Debug, Default)]
pub struct OpenCount {
    open: AtomicU32,
    peak: AtomicU32,
}

impl OpenCount {
    pub fn acquire(self: &Arc<Self>, limit: u32) -> Option<SlotGuard> {
        let before = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.peak.fetch_max(before + 1, Ordering::Relaxed);
        Some(SlotGuard(self.clone()))
    }

    pub fn get(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }

    /// The most connections open at once since the last call (or the start); the
    /// mark restarts from the connections open now.
    pub fn take_peak(&self) -> u32 {
        self.peak.swap(self.get(), Ordering::Relaxed)
    }
}

pub struct SlotGuard(Arc<OpenCount>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per source address.
#[derive(Debug, Default)]
pub struct PerSource(Mutex<HashMap<IpAddr, u32>>);

impl PerSource {
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<SourceGuard> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SourceGuard(self.clone(), ip))
    }
}

pub struct SourceGuard(Arc<PerSource>, IpAddr);

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut map = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_a_high_water_mark() {
        let count = Arc::new(OpenCount::default());
        let held: Vec<_> = (0..5).map(|_| count.acquire(10).unwrap()).collect();
        drop(held);
        let _one = count.acquire(10).unwrap();
        assert_eq!(count.take_peak(), 5);
        assert_eq!(count.take_peak(), 1, "restarts from what is open");
        assert!(count.acquire(1).is_none(), "the limit still holds");
    }

    #[test]
    fn counter_enforces_limit_and_releases() {
        let c = Arc::new(OpenCount::default());
        let a = c.acquire(2).unwrap();
        let _b = c.acquire(2).unwrap();
        assert!(c.acquire(2).is_none());
        drop(a);
        assert!(c.acquire(2).is_some());
    }

    #[test]
    fn per_source_is_per_address() {
        let p = Arc::new(PerSource::default());
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        let g = p.acquire(x, 1).unwrap();
        assert!(p.acquire(x, 1).is_none());
        assert!(p.acquire(y, 1).is_some());
        drop(g);
        assert!(p.acquire(x, 1).is_some());
        assert!(
            p.0.lock().unwrap().is_empty(),
            "released entries are removed"
        );
    }
}
