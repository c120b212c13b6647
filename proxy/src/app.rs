//! The composition root of `proxy run`: builds every part once and wires them
//! together. Nothing else constructs subsystems or knows the whole graph.
//!
//! metrics (+ the XDP collector) ─┐
//! source events channel ─────────┼─> Daemon (data path) ─> admin socket, /metrics
//! XdpSubsystem ─> AutoBlocker ───┘        subsystems: xdp, fleet policy, steering,
//!                                          autoblock, bgp, privileges

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::control::admin::{self, Admin};
use crate::control::autoblock::AutoBlocker;
use crate::control::daemon::{self, Daemon};
use crate::control::fleet::{self, Fleet, FleetMetrics};
use crate::control::fleet_policy::{FleetPolicy, FleetPolicyMetrics};
use crate::control::handover::Handover;
use crate::control::handover::takeover::Inherited;
use crate::control::memory;
use crate::control::privileges::DropCapabilities;
use crate::control::steering::{Steering, SteeringMetrics};
use crate::datapath::events::ChannelObserver;
use crate::ebpf::collector::XdpCollector;
use crate::ebpf::runtime::XdpSubsystem;
use crate::ebpf::tcp_sysctl;
use crate::metrics::Metrics;

/// Source events waiting for the auto-blocker; beyond it events are dropped (counted).
const SOURCE_EVENT_QUEUE: usize = 65536;

/// Serves `config` (read from `path`, which SIGHUP re-reads) until SIGTERM/SIGINT.
/// With `takeover`, on the sockets a running daemon handed over; it stops once this
/// one serves.
pub async fn run(
    path: &Path,
    config: Config,
    mut takeover: Option<Inherited>,
) -> anyhow::Result<()> {
    let xdp = Arc::new(XdpSubsystem::default());
    if let Some(t) = &takeover {
        xdp.take_over_attachments();
        tcp_sysctl::inherit(t.sysctls.clone());
    }
    let mut metrics = Metrics::new();
    metrics.register_collector(Box::new(XdpCollector::new(xdp.clone())));
    let fleet_metrics = FleetMetrics::default();
    metrics.register(
        "vip_announced",
        "1 while this node announces the VIP over BGP",
        fleet_metrics.announced.clone(),
    );
    metrics.register(
        "vip_transitions",
        "VIP announcements and withdrawals",
        fleet_metrics.transitions.clone(),
    );
    metrics.register(
        "bgp_peer_established",
        "1 while the BGP session with the peer is Established (BIRD, read every second)",
        fleet_metrics.peers.clone(),
    );
    let fleet = Arc::new(Fleet::new(fleet_metrics));
    let policy_metrics = register_fleet_policy_metrics(&mut metrics);
    let fleet_policy = Arc::new(FleetPolicy::new(xdp.clone(), policy_metrics));
    let steering_metrics = register_steering_metrics(&mut metrics);
    let steering = Arc::new(Steering::new(xdp.clone(), steering_metrics));
    let metrics = Arc::new(metrics);

    let (observer, events, events_switch) = ChannelObserver::new(
        SOURCE_EVENT_QUEUE,
        metrics.autoblock().events_dropped.clone(),
    );
    let autoblock = AutoBlocker::new(
        xdp.clone(),
        fleet_policy.clone(),
        metrics.autoblock().clone(),
        events,
        events_switch,
    );

    let mut daemon = Daemon::with(path, metrics, Arc::new(observer));
    daemon.add_subsystem(Box::new(xdp.clone()));
    daemon.add_subsystem(Box::new(fleet_policy.clone()));
    // After the XDP program (it writes its maps); before BGP, so a drain moves this
    // node's rows away before its routes are withdrawn.
    daemon.add_subsystem(Box::new(steering.clone()));
    daemon.add_subsystem(Box::new(autoblock));
    // Before privileges are dropped: it starts BIRD.
    daemon.add_subsystem(Box::new(fleet.clone()));
    // Last: once everything above has what it needs from the first configuration.
    daemon.add_subsystem(Box::new(DropCapabilities::default()));
    let handover = Arc::new(Handover::default());
    let mut sockets = admin::Sockets::default();
    if let Some(t) = takeover.as_mut() {
        daemon.inherit(std::mem::take(&mut t.listeners));
        daemon.inherit_backends(std::mem::take(&mut t.backends));
        *handover.predecessor.lock().expect("handover lock") = Some(t.predecessor);
        sockets = admin::Sockets {
            unix: t.admin.take(),
            metrics: t.metrics.take(),
        };
    }
    let daemon = Arc::new(daemon);

    // The admin section is read at start only.
    let admin_section = config.admin.clone();
    let admin = Arc::new(Admin {
        daemon: daemon.clone(),
        kernel: xdp.clone(),
        fleet: fleet.clone(),
        fleet_policy,
        steering: steering.clone(),
        handover: handover.clone(),
        config_path: path.to_owned(),
    });
    let handover_state = handover;
    let _socket = admin::start(&admin_section, admin, sockets).await?;
    tokio::spawn(memory::trim_after_waves(daemon.clone()));
    tokio::spawn(fleet::run(fleet, daemon.clone(), xdp, steering));
    let committed = || {
        let Some(t) = takeover.as_ref() else { return };
        match t.commit() {
            Ok(()) => {
                daemon.finish_takeover();
                handover_state
                    .owns_socket
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                if t.adopt_stdio {
                    // The one line for `proxy upgrade`, then log where the old one did.
                    println!(
                        "upgraded: pid {} serves; pid {} stopped accepting and drains",
                        std::process::id(),
                        t.predecessor
                    );
                    if let Err(e) = t.adopt_stdio() {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "cannot log where the previous process logged"
                        );
                    }
                }
                tracing::info!(
                    predecessor = t.predecessor,
                    "upgrade: took over; the previous process stopped accepting and drains"
                );
            }
            // It serves already: the old one, if still there, keeps serving too.
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "upgrade: the previous process did not confirm"
            ),
        }
    };
    daemon::serve(&daemon, config, committed).await
}

/// `proxy_fleet_steering_*`: connection steering's table as this node uses it.
fn register_steering_metrics(metrics: &mut Metrics) -> SteeringMetrics {
    let m = SteeringMetrics::default();
    metrics.register(
        "fleet_steering_generation",
        "The forwarding table generation this node steers packets by",
        m.generation.clone(),
    );
    metrics.register(
        "fleet_steering_members",
        "Members of the table in use, per state",
        m.members.clone(),
    );
    metrics.register(
        "fleet_steering_rows",
        "Rows of the table in use this node holds, as primary and as secondary",
        m.rows.clone(),
    );
    metrics.register(
        "fleet_steering_switches",
        "Switches to a new table generation",
        m.switches.clone(),
    );
    metrics.register(
        "fleet_steering_rows_moved",
        "Rows whose primary changed, summed over the switches",
        m.rows_moved.clone(),
    );
    metrics.register(
        "fleet_steering_bad_entries",
        "Malformed keys or values under the steering prefix of the store, skipped",
        m.bad_entries.clone(),
    );
    m
}

/// `proxy_fleet_*`: the shared policy store as this node sees it.
fn register_fleet_policy_metrics(metrics: &mut Metrics) -> FleetPolicyMetrics {
    let m = FleetPolicyMetrics::default();
    metrics.register(
        "fleet_info",
        "1 while [fleet.policy] is configured, with this node's name and the fleet's prefix",
        m.info.clone(),
    );
    metrics.register(
        "fleet_connected",
        "1 while the fleet policy store (etcd) is reachable",
        m.connected.clone(),
    );
    metrics.register(
        "fleet_entries",
        "Shared entries this node applies, per list",
        m.entries.clone(),
    );
    metrics.register(
        "fleet_apply_lag_seconds",
        "From a shared entry's creation on its node to its application here (last entry)",
        m.apply_lag_seconds.clone(),
    );
    metrics.register(
        "fleet_bad_entries",
        "Malformed keys or values in the store, skipped",
        m.bad_entries.clone(),
    );
    metrics.register(
        "fleet_pending_writes",
        "Writes waiting for the store",
        m.pending.clone(),
    );
    metrics.register(
        "fleet_dropped_writes",
        "Writes dropped because the queue was full while the store was unreachable",
        m.dropped_publishes.clone(),
    );
    metrics.register(
        "fleet_revision",
        "The store revision this node has applied",
        m.revision.clone(),
    );
    m
}
