//! Fleet policy (`[fleet.policy]`): block and allow entries shared by every node
//! through etcd. Each node applies every shared entry to its own kernel lists (as
//! fleet entries, apart from its local ones), publishes what it shares (operator
//! `--fleet` edits, auto-blocks with `share = true`, config entries with
//! `shared = true`), and keeps enforcing and queueing while etcd is unreachable.
//!
//! - this file: the subsystem, what other parts call, status and metrics;
//! - [`store`]: keys and values in etcd; [`applied`]: this node's view → kernel;
//! - [`session`]: the etcd connection (full read, watch, publishing).

pub mod applied;
pub mod session;
pub mod store;

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use self::applied::Applied;
use self::store::{SharedEntry, SharedValue, Source, now_unix_ms};
use super::policy::{FleetKernel, SharedPolicy};
use super::subsystem::{Commit, Subsystem};
use crate::api::{FleetPolicyStatus, List, OriginCount};
use crate::config::Config;
use crate::config::fleet_policy::FleetPolicySection;
use crate::metrics::LabelText;

/// `proxy_fleet_*` series.
#[derive(Clone, Default)]
pub struct FleetPolicyMetrics {
    /// `proxy_fleet_info{node,prefix}`: only while `[fleet.policy]` is configured, so
    /// rules and panels can keep to the nodes that have a store (`and on (instance)`).
    pub info: Family<InfoLabels, Gauge>,
    pub connected: Gauge,
    pub entries: Family<ListLabel, Gauge>,
    pub apply_lag_seconds: Gauge<f64, AtomicU64>,
    pub bad_entries: Counter,
    pub pending: Gauge,
    pub dropped_publishes: Counter,
    pub revision: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ListLabel {
    pub list: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct InfoLabels {
    pub node: LabelText,
    pub prefix: LabelText,
}

/// A write waiting for the store.
#[derive(Debug, Clone)]
pub enum Pending {
    Put(SharedEntry),
    Delete(List, IpNet),
}

/// Everything the session and the callers share.
pub struct Shared {
    pub state: Mutex<State>,
    /// Wakes the session when something was queued.
    pub wake: Notify,
    pub kernel: Arc<dyn FleetKernel>,
    pub metrics: FleetPolicyMetrics,
}

#[derive(Default)]
pub struct State {
    pub applied: Applied,
    pub pending: VecDeque<Pending>,
    pub max_pending: usize,
    pub connected: bool,
    /// The state last logged (`None`: nothing logged yet).
    pub reported: Option<bool>,
    pub since_unix: u64,
    pub last_error: Option<String>,
    pub revision: i64,
    /// A full read has been applied since start.
    pub loaded: bool,
    pub last_lag: Option<Duration>,
    pub bad_entries: u64,
    pub members: Vec<String>,
    /// Config entries with `shared = true`, as the last configuration has them.
    pub config_shared: Vec<SharedEntry>,
    /// The config entries must be compared with the store again.
    pub config_dirty: bool,
    /// The lists' generation after this module's own last write (so only other
    /// writers' edits trigger a comparison with the kernel).
    pub own_generation: Option<u64>,
}

impl Shared {
    /// Queues a write; beyond `max_pending` the oldest is dropped (counted).
    pub fn queue(&self, state: &mut State, write: Pending) {
        if state.pending.len() >= state.max_pending.max(1) {
            state.pending.pop_front();
            self.metrics.dropped_publishes.inc();
        }
        state.pending.push_back(write);
        self.metrics.pending.set(state.pending.len() as i64);
        self.wake.notify_one();
    }

    /// After this module wrote to the kernel: counts, and notes the generation.
    pub fn wrote(&self, state: &mut State) {
        state.own_generation = self.kernel.policy_generation();
        self.count_entries(state);
    }

    /// Updates the entry-count series from the view.
    pub fn count_entries(&self, state: &State) {
        for (list, label) in [(List::Block, "block"), (List::Allow, "allow")] {
            self.metrics
                .entries
                .get_or_create(&ListLabel { list: label })
                .set(state.applied.len(list) as i64);
        }
    }

    /// Records the store's reachability; logs once per change (and the first state).
    pub fn set_connected(&self, connected: bool, error: Option<String>) {
        let mut state = self.state.lock().expect("fleet policy lock");
        if state.reported != Some(connected) {
            state.reported = Some(connected);
            state.since_unix = unix_now();
            match &error {
                None if connected => info!(revision = state.revision, "fleet store connected"),
                Some(e) => warn!(
                    error = %e,
                    "fleet store unreachable: keeping the kernel policy, queueing what to publish"
                ),
                None => warn!("fleet store unreachable"),
            }
        }
        state.connected = connected;
        state.last_error = error;
        self.metrics.connected.set(i64::from(connected));
    }
}

/// The fleet policy as a daemon subsystem.
pub struct FleetPolicy {
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

struct Running {
    section: FleetPolicySection,
    node: String,
    task: JoinHandle<()>,
}

impl FleetPolicy {
    pub fn new(kernel: Arc<dyn FleetKernel>, metrics: FleetPolicyMetrics) -> FleetPolicy {
        FleetPolicy {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                kernel,
                metrics,
            }),
            running: Mutex::new(None),
        }
    }

    fn node(&self) -> Option<String> {
        let running = self.running.lock().expect("fleet policy lock");
        running.as_ref().map(|r| r.node.clone())
    }

    /// Publishes an entry: applied here at once, sent to the store (now, or when it
    /// is reachable again).
    pub fn publish(
        &self,
        list: List,
        cidr: IpNet,
        ttl: Option<Duration>,
        reason: &str,
        source: Source,
    ) -> anyhow::Result<()> {
        let Some(node) = self.node() else {
            anyhow::bail!("no [fleet.policy] section: this node shares nothing");
        };
        let entry = SharedEntry {
            list,
            value: SharedValue {
                cidr: cidr.trunc(),
                reason: reason.chars().take(200).collect(),
                origin: node,
                source,
                created_unix_ms: now_unix_ms(),
                ttl_ms: ttl.map(|t| t.as_millis().max(1) as u64),
            },
        };
        let mut state = self.shared.state.lock().expect("fleet policy lock");
        state
            .applied
            .put(self.shared.kernel.as_ref(), entry.clone(), now_unix_ms())?;
        self.shared.wrote(&mut state);
        self.shared.queue(&mut state, Pending::Put(entry));
        Ok(())
    }

    /// Deletes a shared entry here and in the store.
    pub fn unpublish(&self, list: List, cidr: IpNet) -> anyhow::Result<()> {
        if self.node().is_none() {
            anyhow::bail!("no [fleet.policy] section: there are no fleet entries");
        }
        let cidr = cidr.trunc();
        let mut state = self.shared.state.lock().expect("fleet policy lock");
        state
            .applied
            .delete(self.shared.kernel.as_ref(), list, cidr)?;
        self.shared.wrote(&mut state);
        self.shared.queue(&mut state, Pending::Delete(list, cidr));
        Ok(())
    }

    pub fn status(&self) -> Option<FleetPolicyStatus> {
        let running = self.running.lock().expect("fleet policy lock");
        let r = running.as_ref()?;
        let state = self.shared.state.lock().expect("fleet policy lock");
        Some(FleetPolicyStatus {
            node: r.node.clone(),
            prefix: r.section.key_prefix(),
            endpoints: r.section.endpoints.clone(),
            connected: state.connected,
            since_unix: state.since_unix,
            last_error: state.last_error.clone(),
            revision: state.revision,
            apply_lag_seconds: state.last_lag.map(|d| d.as_secs_f64()),
            block_entries: state.applied.len(List::Block),
            allow_entries: state.applied.len(List::Allow),
            hidden_entries: state.applied.hidden(),
            by_origin: state
                .applied
                .by_origin()
                .into_iter()
                .map(|(origin, (block, allow))| OriginCount {
                    origin,
                    block,
                    allow,
                })
                .collect(),
            pending: state.pending.len(),
            bad_entries: state.bad_entries,
            members: state.members.clone(),
            steering: None,
        })
    }
}

impl SharedPolicy for FleetPolicy {
    fn share_block(&self, net: IpNet, ttl: Duration, reason: &str) {
        if let Err(e) = self.publish(List::Block, net, Some(ttl), reason, Source::Auto) {
            warn!(blocked = %net, error = format!("{e:#}"), "cannot share the auto-block with the fleet");
        }
    }
}

/// The config's `shared = true` entries as this node publishes them.
fn config_shared(config: &Config, node: &str) -> Vec<SharedEntry> {
    let Some(xdp) = &config.xdp else {
        return Vec::new();
    };
    let now = now_unix_ms();
    [(List::Allow, &xdp.allowlist), (List::Block, &xdp.blocklist)]
        .into_iter()
        .flat_map(|(list, entries)| {
            entries
                .iter()
                .filter(|e| e.shared())
                .map(move |e| SharedEntry {
                    list,
                    value: SharedValue {
                        cidr: e.cidr().trunc(),
                        reason: e.reason().to_string(),
                        origin: node.to_string(),
                        source: Source::Config,
                        created_unix_ms: now,
                        ttl_ms: e.ttl().map(|t| t.as_millis() as u64),
                    },
                })
        })
        .collect()
}

impl Subsystem for FleetPolicy {
    fn name(&self) -> &str {
        "fleet policy"
    }

    /// Checks that the store's password and TLS files can be read.
    fn prepare<'a>(&'a self, config: &Arc<Config>) -> anyhow::Result<Commit<'a>> {
        if let Some(section) = config.fleet_policy() {
            session::connect_options(section)?;
        }
        let config = config.clone();
        Ok(Box::new(move || {
            self.apply(&config);
            Ok(())
        }))
    }

    fn stop(&self) {
        if let Some(r) = self.running.lock().expect("fleet policy lock").take() {
            r.task.abort();
        }
    }
}

impl FleetPolicy {
    /// Shares `config`'s entries; (re)connects when `[fleet.policy]` changed.
    fn apply(&self, config: &Config) {
        let mut running = self.running.lock().expect("fleet policy lock");
        let Some(section) = config.fleet_policy() else {
            if let Some(r) = running.take() {
                r.task.abort();
                self.shared.metrics.info.clear();
                self.shared.set_connected(false, None);
                warn!(
                    "[fleet.policy] was removed: fleet entries stay in the kernel until they expire or a restart"
                );
            }
            return;
        };
        let node = section.node_name();
        {
            let mut state = self.shared.state.lock().expect("fleet policy lock");
            state.max_pending = section.max_pending;
            state.config_shared = config_shared(config, &node);
            state.config_dirty = true;
        }
        self.shared.wake.notify_one();
        if running
            .as_ref()
            .is_some_and(|r| r.section == *section && !r.task.is_finished())
        {
            return;
        }
        if let Some(r) = running.take() {
            info!("[fleet.policy] changed: reconnecting to the store");
            r.task.abort();
        }
        self.shared.metrics.info.clear();
        self.shared
            .metrics
            .info
            .get_or_create(&InfoLabels {
                node: LabelText(node.clone()),
                prefix: LabelText(section.key_prefix()),
            })
            .set(1);
        info!(
            node,
            prefix = section.key_prefix(),
            endpoints = ?section.endpoints,
            "fleet policy: sharing block and allow entries through etcd"
        );
        let task = tokio::spawn(session::run(
            self.shared.clone(),
            section.clone(),
            node.clone(),
        ));
        *running = Some(Running {
            section: section.clone(),
            node,
            task,
        });
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
