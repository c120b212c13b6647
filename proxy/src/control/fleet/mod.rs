//! Fleet routing: the VIPs of `[bgp]` announced through the node's BIRD only while
//! this node can serve them: the VIP is configured on the node, its listeners are
//! bound, every pool behind them has `min_healthy_backends` up, and the XDP program is
//! attached when `[xdp]` is configured, and, for a VIP with connection steering, this
//! node is an active member of the fleet's table in use. Withdrawn as soon as one fails; announced
//! again after `announce_hold_down` of holding. On SIGTERM every VIP is withdrawn
//! first (the daemon then waits `withdraw_delay` before it drains).
//!
//! - [`bird`]: the BIRD child and `birdc`; [`metrics`]: the VIP and session series.

pub mod bird;
pub mod metrics;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::bird::Bird;
pub use self::metrics::FleetMetrics;
use super::daemon::Daemon;
use super::policy::KernelView;
use super::steering::Steering;
use super::subsystem::{Commit, Subsystem};
use crate::api::{FleetStats, PeerStatus, VipStatus};
use crate::config::Config;
use crate::config::bgp::{BgpSection, Vip};

/// How often the conditions are checked.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// How often the BGP sessions' series are read from BIRD (a `birdc` run).
const SESSIONS_INTERVAL: Duration = Duration::from_secs(1);

struct VipState {
    vip: Vip,
    announced: bool,
    /// Why it is withdrawn (or "serving").
    reason: String,
    /// Since when the conditions hold (while withdrawn).
    holding_since: Option<Instant>,
    /// Never announced yet: the first announcement skips the hold-down.
    first: bool,
}

struct Running {
    bird: Bird,
    section: BgpSection,
    vips: Vec<VipState>,
    /// SIGTERM arrived: stay withdrawn.
    draining: bool,
}

/// The fleet subsystem (inert without `[bgp]`).
pub struct Fleet {
    running: Mutex<Option<Running>>,
    metrics: FleetMetrics,
}

impl Fleet {
    pub fn new(metrics: FleetMetrics) -> Fleet {
        Fleet {
            running: Mutex::new(None),
            metrics,
        }
    }

    /// VIPs and BGP sessions for `proxy stats`; None without `[bgp]`.
    pub fn stats(&self) -> Option<FleetStats> {
        let running = self.running.lock().expect("fleet lock");
        let r = running.as_ref()?;
        let peers = r
            .bird
            .sessions()
            .into_iter()
            .map(|(protocol, state, info)| {
                let index: usize = protocol.trim_start_matches("peer_").parse().unwrap_or(0);
                PeerStatus {
                    address: r
                        .section
                        .peers
                        .get(index)
                        .map(|p| p.address.to_string())
                        .unwrap_or_default(),
                    state,
                    info,
                }
            })
            .collect();
        let vips = r
            .vips
            .iter()
            .map(|v| VipStatus {
                vip: v.vip.address.to_string(),
                announced: v.announced,
                reason: v.reason.clone(),
                steering: v.vip.steering,
            })
            .collect();
        Some(FleetStats { vips, peers })
    }

    /// Reads the BGP sessions from BIRD into `proxy_bgp_peer_established` (blocking:
    /// runs `birdc`, without holding the lock the announce loop takes).
    pub fn refresh_sessions(&self) {
        let (socket, peers) = {
            let running = self.running.lock().expect("fleet lock");
            let Some(r) = running.as_ref() else { return };
            (r.bird.socket().to_owned(), r.section.peers.clone())
        };
        let sessions = bird::sessions(&socket);
        // A reload may have replaced the peers meanwhile: its series are set anew.
        let running = self.running.lock().expect("fleet lock");
        if running.as_ref().is_some_and(|r| r.section.peers == peers) {
            self.metrics.sessions(&peers, &sessions);
        }
    }

    /// Withdraws every VIP for good (SIGTERM); how long to wait before draining.
    pub fn withdraw_all(&self) -> Duration {
        let mut running = self.running.lock().expect("fleet lock");
        let Some(r) = running.as_mut() else {
            return Duration::ZERO;
        };
        r.draining = true;
        for v in &mut r.vips {
            if v.announced {
                set(
                    &r.bird,
                    &self.metrics,
                    v,
                    false,
                    "draining (SIGTERM)".into(),
                );
            }
        }
        r.section.withdraw_delay
    }

    /// One check of every VIP against what `daemon` serves now. Without `[bgp]` it
    /// returns at once: the check reads every interface's addresses (a netlink dump,
    /// 0.1-0.4 ms, more on a host with many addresses), which would otherwise stall a
    /// worker of the data path five times a second for nothing.
    pub async fn check(&self, daemon: &Daemon, xdp_attached: bool, steering: &Steering) {
        if self.running.lock().expect("fleet lock").is_none() {
            return;
        }
        let listeners = daemon.listener_names().await;
        let pools = daemon.pools().await;
        let config = daemon.config();
        // Off the data path's workers.
        let local = tokio::task::spawn_blocking(local_addresses)
            .await
            .unwrap_or_default();
        let mut running = self.running.lock().expect("fleet lock");
        let Some(r) = running.as_mut() else { return };
        if r.draining {
            return;
        }
        let hold_down = r.section.announce_hold_down;
        for v in &mut r.vips {
            let problem = problem(&v.vip, &config, &listeners, &pools, &local, xdp_attached)
                .or_else(|| {
                    // Announced only once the other nodes send this node its own.
                    (v.vip.steering && !steering.serving()).then(|| steering.not_serving_reason())
                });
            match (problem, v.announced) {
                (Some(why), true) => {
                    v.holding_since = None;
                    set(&r.bird, &self.metrics, v, false, why);
                }
                (Some(why), false) => {
                    v.holding_since = None;
                    v.reason = why;
                }
                (None, false) => {
                    let since = *v.holding_since.get_or_insert_with(Instant::now);
                    if v.first || since.elapsed() >= hold_down {
                        set(&r.bird, &self.metrics, v, true, "serving".into());
                    } else {
                        v.reason = format!(
                            "conditions hold; announcing after the {hold_down:?} hold-down"
                        );
                    }
                }
                (None, true) => {}
            }
        }
    }
}

/// Announces or withdraws `v` through BIRD; logs and counts the transition.
fn set(bird: &Bird, metrics: &FleetMetrics, v: &mut VipState, on: bool, reason: String) {
    if let Err(e) = bird.announce(&v.vip, on) {
        tracing::error!(vip = %v.vip.address, error = format!("{e:#}"), "BIRD refused the change");
        return;
    }
    v.announced = on;
    v.first = false;
    metrics.transition(&v.vip, on);
    if on {
        tracing::info!(vip = %v.vip.address, "VIP announced");
    } else {
        tracing::warn!(vip = %v.vip.address, reason, "VIP withdrawn");
    }
    v.reason = reason;
}

/// Why this node cannot serve `vip` now, if it cannot.
fn problem(
    vip: &Vip,
    config: &Config,
    bound: &[String],
    pools: &[crate::api::PoolStats],
    local: &[IpAddr],
    xdp_attached: bool,
) -> Option<String> {
    if !local.contains(&vip.address) {
        return Some(format!(
            "{} is not configured on this node (ip addr add {}/{} dev lo)",
            vip.address,
            vip.address,
            if vip.address.is_ipv4() { 32 } else { 128 }
        ));
    }
    if config.xdp.is_some() && !xdp_attached {
        return Some("the XDP program is not attached".into());
    }
    for name in &vip.listeners {
        if !bound.contains(name) {
            return Some(format!("listener {name} is not bound"));
        }
        let Some(listener) = config.listeners.iter().find(|l| &l.name == name) else {
            return Some(format!("listener {name} is not configured"));
        };
        let Some(pool) = pools.iter().find(|p| p.name == listener.pool) else {
            return Some(format!("pool {} is missing", listener.pool));
        };
        let up = pool
            .backends
            .iter()
            .filter(|b| b.takes_new_connections())
            .count();
        if (up as u32) < vip.min_healthy_backends {
            return Some(format!(
                "pool {}: {up} of {} backends up",
                pool.name,
                pool.backends.len()
            ));
        }
    }
    None
}

fn local_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|all| all.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

impl Subsystem for Fleet {
    fn prepare_handover(&self) -> anyhow::Result<()> {
        if self.running.lock().expect("fleet lock").is_some() {
            anyhow::bail!(
                "this node announces VIPs over BGP ([bgp]): upgrade it by a restart instead \
                 (SIGTERM withdraws its routes first, the other nodes take its flows)"
            );
        }
        Ok(())
    }

    fn name(&self) -> &str {
        "bgp"
    }

    /// Has BIRD check the configuration it would get.
    fn prepare<'a>(&'a self, config: &Arc<Config>) -> anyhow::Result<Commit<'a>> {
        let changed = {
            let running = self.running.lock().expect("fleet lock");
            match (running.as_ref(), &config.bgp) {
                (Some(r), Some(section)) => r.section != *section,
                (None, Some(_)) => true,
                (_, None) => false,
            }
        };
        if let (true, Some(section)) = (changed, &config.bgp) {
            bird::check_config(section)?;
        }
        let config = config.clone();
        Ok(Box::new(move || self.apply(&config)))
    }

    fn before_drain(&self) -> Duration {
        self.withdraw_all()
    }

    fn stop(&self) {
        if let Some(r) = self.running.lock().expect("fleet lock").take() {
            r.bird.stop();
        }
    }
}

impl Fleet {
    /// Starts BIRD, or has it apply a changed `[bgp]`.
    fn apply(&self, config: &Config) -> anyhow::Result<()> {
        let mut running = self.running.lock().expect("fleet lock");
        match (running.as_mut(), &config.bgp) {
            (None, Some(section)) => {
                let bird = Bird::start(section)?;
                tracing::info!(
                    peers = section.peers.len(),
                    vips = section.vips.len(),
                    "BIRD started for [bgp]; VIPs are announced while this node can serve them"
                );
                self.metrics.configured(section);
                *running = Some(Running {
                    bird,
                    section: section.clone(),
                    vips: states(section),
                    draining: false,
                });
            }
            (Some(r), Some(section)) => {
                if r.section != *section {
                    r.bird.reconfigure(section)?;
                    // Start from "not announced": the loop enables every VIP that can
                    // be served within one check (first announcements skip the hold-down).
                    r.vips = states(section);
                    r.section = section.clone();
                    self.metrics.configured(section);
                }
            }
            (Some(_), None) => {
                tracing::warn!("the [bgp] section was removed: BIRD stays until restart")
            }
            (None, None) => {}
        }
        Ok(())
    }
}

fn states(section: &BgpSection) -> Vec<VipState> {
    section
        .vips
        .iter()
        .map(|vip| VipState {
            vip: vip.clone(),
            announced: false,
            reason: "not checked yet".into(),
            holding_since: None,
            first: true,
        })
        .collect()
}

/// Checks every VIP every CHECK_INTERVAL until the daemon stops.
pub async fn run(
    fleet: Arc<Fleet>,
    daemon: Arc<Daemon>,
    kernel: Arc<dyn KernelView>,
    steering: Arc<Steering>,
) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    let mut sessions_read = Instant::now();
    loop {
        tick.tick().await;
        fleet.check(&daemon, kernel.attached(), &steering).await;
        if sessions_read.elapsed() >= SESSIONS_INTERVAL {
            sessions_read = Instant::now();
            let fleet = fleet.clone();
            // Off the data path's workers: it waits for birdc.
            let _ = tokio::task::spawn_blocking(move || fleet.refresh_sessions()).await;
        }
    }
}
