//! Auto-blocking: the daemon watches what each source does (failed TLS handshakes,
//! handshake timeouts, connection rate) and, past a threshold within a window, puts
//! it on the kernel blocklist for a while. The allowlist always wins. Every block is
//! logged and counted; the kernel honours the expiry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::autoblock::AutoblockSection;
use crate::ebpf::maps::{List, Origin};
use crate::ebpf::runtime::XdpSubsystem;
use crate::events::{SourceEvent, SourceEventKind};

/// Why a source was blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    FailedHandshakes(u32),
    HandshakeTimeouts(u32),
    NewConnections(u32),
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::FailedHandshakes(_) => "failed_handshakes",
            Trigger::HandshakeTimeouts(_) => "handshake_timeouts",
            Trigger::NewConnections(_) => "new_connections",
        }
    }

    fn describe(self, window: Duration) -> String {
        let w = humantime::format_duration(window);
        match self {
            Trigger::FailedHandshakes(n) => format!("auto: {n} failed TLS handshakes in {w}"),
            Trigger::HandshakeTimeouts(n) => format!("auto: {n} handshake timeouts in {w}"),
            Trigger::NewConnections(n) => format!("auto: {n} new connections in {w}"),
        }
    }
}

#[derive(Default)]
struct Tally {
    window_start: Option<Instant>,
    failed_handshakes: u32,
    handshake_timeouts: u32,
    new_connections: u32,
}

/// Per-source counting, pure (no I/O): feed events, get a trigger when a threshold
/// is reached. Memory is bounded by `max_tracked_sources`.
pub struct Detector {
    tallies: HashMap<IpAddr, Tally>,
}

impl Detector {
    pub fn new() -> Detector {
        Detector {
            tallies: HashMap::new(),
        }
    }

    pub fn observe(
        &mut self,
        settings: &AutoblockSection,
        event: &SourceEvent,
        now: Instant,
    ) -> Option<Trigger> {
        if !self.tallies.contains_key(&event.addr)
            && self.tallies.len() >= settings.max_tracked_sources
        {
            self.forget_expired(settings.window, now);
            if self.tallies.len() >= settings.max_tracked_sources {
                return None;
            }
        }
        let tally = self.tallies.entry(event.addr).or_default();
        match tally.window_start {
            Some(start) if now.duration_since(start) < settings.window => {}
            _ => {
                *tally = Tally {
                    window_start: Some(now),
                    ..Tally::default()
                }
            }
        }
        let reached = |count: &mut u32, threshold: u32| {
            *count += 1;
            threshold != 0 && *count >= threshold
        };
        let trigger = match &event.kind {
            SourceEventKind::HandshakeFailed { .. } => {
                reached(&mut tally.failed_handshakes, settings.failed_handshakes)
                    .then_some(Trigger::FailedHandshakes(tally.failed_handshakes))
            }
            SourceEventKind::HandshakeTimeout => {
                reached(&mut tally.handshake_timeouts, settings.handshake_timeouts)
                    .then_some(Trigger::HandshakeTimeouts(tally.handshake_timeouts))
            }
            SourceEventKind::Accepted | SourceEventKind::RejectedPerSourceLimit => {
                reached(&mut tally.new_connections, settings.new_connections)
                    .then_some(Trigger::NewConnections(tally.new_connections))
            }
        };
        if trigger.is_some() {
            self.tallies.remove(&event.addr);
        }
        trigger
    }

    /// Drops tallies whose window has ended.
    pub fn forget_expired(&mut self, window: Duration, now: Instant) {
        self.tallies.retain(|_, t| {
            t.window_start
                .is_some_and(|s| now.duration_since(s) < window)
        });
    }

    pub fn tracked(&self) -> usize {
        self.tallies.len()
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

/// Counters for metrics and `proxy stats`.
#[derive(Default, Debug)]
pub struct AutoblockCounters {
    pub failed_handshakes: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub new_connections: AtomicU64,
    /// Thresholds reached by allowlisted sources (not blocked).
    pub skipped_allowlisted: AtomicU64,
    /// Thresholds reached while no XDP program runs (nothing to block with).
    pub skipped_no_xdp: AtomicU64,
}

impl AutoblockCounters {
    fn count(&self, t: Trigger) {
        let c = match t {
            Trigger::FailedHandshakes(_) => &self.failed_handshakes,
            Trigger::HandshakeTimeouts(_) => &self.handshake_timeouts,
            Trigger::NewConnections(_) => &self.new_connections,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.failed_handshakes.load(Ordering::Relaxed)
            + self.handshake_timeouts.load(Ordering::Relaxed)
            + self.new_connections.load(Ordering::Relaxed)
    }
}

/// The auto-blocker as a daemon subsystem: follows `[autoblock]` across reloads and
/// consumes the data path's source events.
pub struct AutoBlocker {
    settings: Arc<ArcSwap<AutoblockSection>>,
    xdp: Arc<XdpSubsystem>,
    counters: Arc<AutoblockCounters>,
    events: Mutex<Option<mpsc::Receiver<SourceEvent>>>,
}

impl AutoBlocker {
    pub fn new(xdp: Arc<XdpSubsystem>, events: mpsc::Receiver<SourceEvent>) -> AutoBlocker {
        AutoBlocker {
            settings: Arc::new(ArcSwap::from_pointee(AutoblockSection::default())),
            xdp,
            counters: Arc::default(),
            events: Mutex::new(Some(events)),
        }
    }

    pub fn counters(&self) -> Arc<AutoblockCounters> {
        self.counters.clone()
    }
}

impl crate::daemon::Subsystem for AutoBlocker {
    fn name(&self) -> &str {
        "autoblock"
    }

    fn apply(&self, config: &Arc<crate::config::Config>) -> anyhow::Result<()> {
        let section = &config.autoblock;
        if section.enabled && config.xdp.is_none() {
            warn!(
                "[autoblock] needs the [xdp] section to block in the kernel: sources are counted but not blocked"
            );
        }
        self.settings.store(Arc::new(section.clone()));
        // First apply: start consuming events.
        if let Some(events) = self.events.lock().expect("events lock").take() {
            tokio::spawn(run(
                events,
                self.settings.clone(),
                self.xdp.clone(),
                self.counters.clone(),
            ));
        }
        Ok(())
    }
}

async fn run(
    mut events: mpsc::Receiver<SourceEvent>,
    settings: Arc<ArcSwap<AutoblockSection>>,
    xdp: Arc<XdpSubsystem>,
    counters: Arc<AutoblockCounters>,
) {
    let mut detector = Detector::new();
    let mut no_xdp_warned: Option<Instant> = None;
    let mut prune = tokio::time::interval(Duration::from_secs(5));
    loop {
        let event = tokio::select! {
            event = events.recv() => match event { Some(e) => e, None => return },
            _ = prune.tick() => {
                detector.forget_expired(settings.load().window, Instant::now());
                continue;
            }
        };
        let s = settings.load();
        if !s.enabled {
            continue;
        }
        if let Some(trigger) = detector.observe(&s, &event, Instant::now()) {
            if xdp.maps().is_none() {
                counters.skipped_no_xdp.fetch_add(1, Ordering::Relaxed);
                // Without XDP this could be a line per threshold: say it once a minute.
                if no_xdp_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    no_xdp_warned = Some(Instant::now());
                    warn!(
                        source = %event.addr,
                        trigger = trigger.label(),
                        so_far = counters.skipped_no_xdp.load(Ordering::Relaxed),
                        "auto-block thresholds reached, but no XDP program runs to block with (add [xdp]); \
                         next such line in a minute at the earliest"
                    );
                }
                continue;
            }
            block(&s, &xdp, &counters, event.addr, trigger);
        }
    }
}

fn block(
    s: &AutoblockSection,
    xdp: &XdpSubsystem,
    counters: &AutoblockCounters,
    addr: IpAddr,
    trigger: Trigger,
) {
    let Some(maps) = xdp.maps() else { return };
    let mut maps = maps.lock().expect("maps lock");
    match maps.matching(List::Allow, addr) {
        Ok(Some(entry)) => {
            counters.skipped_allowlisted.fetch_add(1, Ordering::Relaxed);
            info!(source = %addr, allowlist = %entry.cidr, trigger = trigger.label(), "not auto-blocking an allowlisted source");
            return;
        }
        Ok(None) => {}
        Err(e) => {
            warn!(error = %e, "auto-block: cannot read the allowlist; not blocking");
            return;
        }
    }
    let net = match addr {
        IpAddr::V4(_) => IpNet::from(addr),
        IpAddr::V6(_) => IpNet::new(addr, s.ipv6_prefix)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(addr)),
    };
    let reason = trigger.describe(s.window);
    match maps.insert(List::Block, net, Some(s.block_for), Origin::Auto, &reason) {
        Ok(()) => {
            counters.count(trigger);
            warn!(
                source = %addr,
                blocked = %net,
                trigger = trigger.label(),
                for_ = %humantime::format_duration(s.block_for),
                "{reason}: blocked in the kernel"
            );
        }
        Err(e) => warn!(source = %addr, error = %e, "auto-block failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(addr: &str, kind: SourceEventKind) -> SourceEvent {
        SourceEvent {
            addr: addr.parse().unwrap(),
            kind,
        }
    }

    fn settings() -> AutoblockSection {
        AutoblockSection {
            failed_handshakes: 3,
            handshake_timeouts: 2,
            new_connections: 5,
            ..Default::default()
        }
    }

    #[test]
    fn triggers_at_each_threshold_within_the_window() {
        let (s, mut d, t0) = (settings(), Detector::new(), Instant::now());
        let failed = SourceEventKind::HandshakeFailed { reason: "not_tls" };
        assert_eq!(d.observe(&s, &ev("192.0.2.1", failed.clone()), t0), None);
        assert_eq!(d.observe(&s, &ev("192.0.2.1", failed.clone()), t0), None);
        assert_eq!(
            d.observe(&s, &ev("192.0.2.1", failed.clone()), t0),
            Some(Trigger::FailedHandshakes(3))
        );
        assert_eq!(
            d.observe(&s, &ev("192.0.2.2", SourceEventKind::HandshakeTimeout), t0),
            None
        );
        assert_eq!(
            d.observe(&s, &ev("192.0.2.2", SourceEventKind::HandshakeTimeout), t0),
            Some(Trigger::HandshakeTimeouts(2))
        );
        for _ in 0..4 {
            assert_eq!(
                d.observe(&s, &ev("2001:db8::1", SourceEventKind::Accepted), t0),
                None
            );
        }
        assert_eq!(
            d.observe(
                &s,
                &ev("2001:db8::1", SourceEventKind::RejectedPerSourceLimit),
                t0
            ),
            Some(Trigger::NewConnections(5))
        );
    }

    #[test]
    fn counts_restart_after_the_window_and_sources_are_separate() {
        let (s, mut d, t0) = (settings(), Detector::new(), Instant::now());
        let failed = SourceEventKind::HandshakeFailed { reason: "bad" };
        d.observe(&s, &ev("192.0.2.1", failed.clone()), t0);
        d.observe(&s, &ev("192.0.2.1", failed.clone()), t0);
        d.observe(&s, &ev("192.0.2.9", failed.clone()), t0);
        let later = t0 + s.window + Duration::from_millis(1);
        assert_eq!(
            d.observe(&s, &ev("192.0.2.1", failed.clone()), later),
            None,
            "window restarted"
        );
        d.forget_expired(s.window, later);
        assert_eq!(d.tracked(), 1);
    }

    #[test]
    fn zero_disables_a_threshold_and_tracking_is_bounded() {
        let s = AutoblockSection {
            new_connections: 0,
            max_tracked_sources: 2,
            ..settings()
        };
        let (mut d, t0) = (Detector::new(), Instant::now());
        for _ in 0..100 {
            assert_eq!(
                d.observe(&s, &ev("192.0.2.1", SourceEventKind::Accepted), t0),
                None
            );
        }
        d.observe(&s, &ev("192.0.2.2", SourceEventKind::Accepted), t0);
        d.observe(&s, &ev("192.0.2.3", SourceEventKind::Accepted), t0);
        assert_eq!(d.tracked(), 2);
    }
}
