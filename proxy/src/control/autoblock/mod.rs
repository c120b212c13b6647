//! Auto-blocking: the daemon watches what each source does (failed TLS handshakes,
//! handshake timeouts, connection rate) and, past a threshold within a window, puts
//! it on the kernel blocklist for a while. The allowlist always wins. Every block is
//! logged and counted; the kernel honours the expiry.

mod detector;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use self::detector::{Detector, Trigger};
use super::policy::{KernelPolicy, SharedPolicy};
use super::subsystem::{Commit, Subsystem};
use crate::config::Config;
use crate::config::autoblock::AutoblockSection;
use crate::datapath::events::{EventSwitch, SourceEvent};
use crate::metrics::AutoblockMetrics;

/// The auto-blocker as a daemon subsystem: follows `[autoblock]` across reloads and
/// consumes the data path's source events.
pub struct AutoBlocker {
    settings: Arc<ArcSwap<AutoblockSection>>,
    kernel: Arc<dyn KernelPolicy>,
    fleet: Arc<dyn SharedPolicy>,
    metrics: AutoblockMetrics,
    events: Mutex<Option<mpsc::Receiver<SourceEvent>>>,
    /// The data path sends events only while auto-blocking is on.
    events_switch: EventSwitch,
}

impl AutoBlocker {
    pub fn new(
        kernel: Arc<dyn KernelPolicy>,
        fleet: Arc<dyn SharedPolicy>,
        metrics: AutoblockMetrics,
        events: mpsc::Receiver<SourceEvent>,
        events_switch: EventSwitch,
    ) -> AutoBlocker {
        AutoBlocker {
            settings: Arc::new(ArcSwap::from_pointee(AutoblockSection::default())),
            kernel,
            fleet,
            metrics,
            events: Mutex::new(Some(events)),
            events_switch,
        }
    }
}

impl Subsystem for AutoBlocker {
    fn name(&self) -> &str {
        "autoblock"
    }

    fn prepare<'a>(&'a self, config: &Arc<Config>) -> anyhow::Result<Commit<'a>> {
        let config = config.clone();
        Ok(Box::new(move || {
            self.apply(&config);
            Ok(())
        }))
    }
}

impl AutoBlocker {
    /// Switches to `config`'s thresholds (the first time: starts counting).
    fn apply(&self, config: &Config) {
        let section = match &config.autoblock {
            None => {
                info!("auto-blocking: off (no [autoblock] section)");
                AutoblockSection {
                    enabled: false,
                    ..AutoblockSection::default()
                }
            }
            Some(section) => {
                if section.enabled && config.xdp.is_none() {
                    warn!(
                        "[autoblock] needs the [xdp] section to block in the kernel: sources are counted but not blocked"
                    );
                }
                info!("auto-blocking: {}", section.describe());
                section.clone()
            }
        };
        self.events_switch.set(section.enabled);
        self.settings.store(Arc::new(section));
        // First apply: start consuming events.
        if let Some(events) = self.events.lock().expect("events lock").take() {
            let blocker = Blocker {
                kernel: self.kernel.clone(),
                fleet: self.fleet.clone(),
                metrics: self.metrics.clone(),
                no_xdp_warned: None,
            };
            tokio::spawn(run(events, self.settings.clone(), blocker));
        }
    }
}

async fn run(
    mut events: mpsc::Receiver<SourceEvent>,
    settings: Arc<ArcSwap<AutoblockSection>>,
    mut blocker: Blocker,
) {
    let mut detector = Detector::new();
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
            blocker.block(&s, event.addr, trigger);
        }
    }
}

/// Acts on a trigger: checks the allowlist, blocks, counts and logs.
struct Blocker {
    kernel: Arc<dyn KernelPolicy>,
    fleet: Arc<dyn SharedPolicy>,
    metrics: AutoblockMetrics,
    no_xdp_warned: Option<Instant>,
}

impl Blocker {
    fn block(&mut self, s: &AutoblockSection, addr: IpAddr, trigger: Trigger) {
        if !self.kernel.enforcing() {
            self.metrics.skipped_no_xdp.inc();
            // Without XDP this could be a line per threshold: say it once a minute.
            if self
                .no_xdp_warned
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                self.no_xdp_warned = Some(Instant::now());
                warn!(
                    source = %addr,
                    trigger = trigger.label(),
                    so_far = self.metrics.skipped_no_xdp.get(),
                    "auto-block thresholds reached, but no XDP program runs to block with (add [xdp]); \
                     next such line in a minute at the earliest"
                );
            }
            return;
        }
        match self.kernel.allowlisted(addr) {
            Ok(Some(entry)) => {
                self.metrics.skipped_allowlisted.inc();
                info!(source = %addr, allowlist = %entry.cidr, trigger = trigger.label(), "not auto-blocking an allowlisted source");
                return;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "auto-block: cannot read the allowlist; not blocking"
                );
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
        match self.kernel.auto_block(net, s.block_for, &reason) {
            Ok(()) => {
                let counter = match trigger {
                    Trigger::FailedHandshakes(_) => &self.metrics.failed_handshakes,
                    Trigger::HandshakeTimeouts(_) => &self.metrics.handshake_timeouts,
                    Trigger::NewConnections(_) => &self.metrics.new_connections,
                };
                counter.inc();
                if s.share {
                    self.fleet.share_block(net, s.block_for, &reason);
                }
                warn!(
                    source = %addr,
                    blocked = %net,
                    trigger = trigger.label(),
                    for_ = %humantime::format_duration(s.block_for),
                    "{reason}: blocked in the kernel"
                );
            }
            Err(e) => warn!(source = %addr, error = format!("{e:#}"), "auto-block failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ListEntry, Origin};
    use crate::control::policy::NoKernel;

    /// A kernel that records blocks and allowlists one /24.
    #[derive(Default)]
    struct FakeKernel {
        blocks: Mutex<Vec<(IpNet, Duration, String)>>,
    }

    impl KernelPolicy for FakeKernel {
        fn enforcing(&self) -> bool {
            true
        }
        fn allowlisted(&self, addr: IpAddr) -> anyhow::Result<Option<ListEntry>> {
            let net: IpNet = "192.0.2.0/24".parse().unwrap();
            Ok(net.contains(&addr).then(|| ListEntry {
                cidr: net,
                expires_in: None,
                created_at_unix: 0,
                origin: Origin::Config,
                reason: "office".into(),
            }))
        }
        fn auto_block(&self, net: IpNet, ttl: Duration, reason: &str) -> anyhow::Result<()> {
            self.blocks.lock().unwrap().push((net, ttl, reason.into()));
            Ok(())
        }
    }

    /// A fleet that records what it was asked to share.
    #[derive(Default)]
    struct FakeFleet {
        shared: Mutex<Vec<IpNet>>,
    }

    impl SharedPolicy for FakeFleet {
        fn share_block(&self, net: IpNet, _: Duration, _: &str) {
            self.shared.lock().unwrap().push(net);
        }
    }

    fn blocker(kernel: Arc<dyn KernelPolicy>) -> Blocker {
        blocker_sharing_with(kernel, Arc::new(FakeFleet::default()))
    }

    fn blocker_sharing_with(
        kernel: Arc<dyn KernelPolicy>,
        fleet: Arc<dyn SharedPolicy>,
    ) -> Blocker {
        Blocker {
            kernel,
            fleet,
            metrics: AutoblockMetrics::default(),
            no_xdp_warned: None,
        }
    }

    #[test]
    fn blocks_are_shared_only_with_share_on() {
        let fleet = Arc::new(FakeFleet::default());
        let mut b = blocker_sharing_with(Arc::new(FakeKernel::default()), fleet.clone());
        let mut s = AutoblockSection::default();
        let addr: IpAddr = "198.51.100.7".parse().unwrap();
        b.block(&s, addr, Trigger::FailedHandshakes(20));
        assert!(fleet.shared.lock().unwrap().is_empty());
        s.share = true;
        b.block(&s, addr, Trigger::FailedHandshakes(20));
        assert_eq!(*fleet.shared.lock().unwrap(), vec![IpNet::from(addr)]);
    }

    #[test]
    fn blocks_the_source_or_its_ipv6_prefix_and_counts_the_trigger() {
        let kernel = Arc::new(FakeKernel::default());
        let mut b = blocker(kernel.clone());
        let s = AutoblockSection::default();
        b.block(
            &s,
            "198.51.100.7".parse().unwrap(),
            Trigger::FailedHandshakes(20),
        );
        b.block(
            &s,
            "2001:db8:1:2::9".parse().unwrap(),
            Trigger::NewConnections(300),
        );
        let blocks = kernel.blocks.lock().unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].0, "198.51.100.7/32".parse::<IpNet>().unwrap());
        assert_eq!(blocks[0].1, s.block_for);
        assert!(
            blocks[0].2.contains("20 failed TLS handshakes"),
            "{}",
            blocks[0].2
        );
        let v6 = IpNet::new("2001:db8:1:2::".parse().unwrap(), s.ipv6_prefix).unwrap();
        assert_eq!(blocks[1].0, v6.trunc());
        let stats = b.metrics.stats();
        assert_eq!(stats.by_trigger.failed_handshakes, 1);
        assert_eq!(stats.by_trigger.new_connections, 1);
        assert_eq!(stats.blocked_total, 2);
    }

    #[test]
    fn the_allowlist_wins_and_no_kernel_blocks_nothing() {
        let kernel = Arc::new(FakeKernel::default());
        let mut b = blocker(kernel.clone());
        let s = AutoblockSection::default();
        b.block(
            &s,
            "192.0.2.44".parse().unwrap(),
            Trigger::HandshakeTimeouts(5),
        );
        assert!(kernel.blocks.lock().unwrap().is_empty());
        assert_eq!(b.metrics.stats().skipped_allowlisted, 1);
        assert_eq!(b.metrics.stats().blocked_total, 0);

        let mut none = blocker(Arc::new(NoKernel));
        none.block(
            &s,
            "198.51.100.7".parse().unwrap(),
            Trigger::HandshakeTimeouts(5),
        );
        none.block(
            &s,
            "198.51.100.8".parse().unwrap(),
            Trigger::HandshakeTimeouts(5),
        );
        assert_eq!(none.metrics.stats().skipped_no_xdp, 2);
        assert_eq!(none.metrics.stats().blocked_total, 0);
    }
}
