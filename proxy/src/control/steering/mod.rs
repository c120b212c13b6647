//! Connection steering (VIPs with `steering = true`): every node of the fleet sends
//! each packet for a steered VIP to the node that owns its connection, so a node
//! drained, added or killed, or a router that rehashes, breaks no other node's
//! connections. The XDP program does the sending (`proxy-ebpf/src/steer.rs`); this
//! module keeps what it sends by:
//!
//! - membership: this node registers `{node, address, state}` in the fleet's etcd
//!   store under a lease (`store.rs`);
//! - the forwarding table: computed the same on every node from one record in the
//!   store (`table.rs`), changed one member at a time and switched to only once every
//!   member has installed it (`rollout.rs`, `session.rs`);
//! - probes: GUE control messages to every member, from which their XDP programs
//!   learn how to reach this node (`probe.rs`);
//! - the drain: SIGTERM marks this node draining and waits (up to
//!   `rollout_timeout`) until the fleet steers by a table where it owns no rows; then
//!   BGP withdraws, and its connections keep reaching it through the other nodes.
//! - the announce gate: a steered VIP is announced only once this node is an active
//!   member of the table in use (BGP asks [`Steering::serving`]).

pub mod probe;
pub mod rollout;
pub mod session;
pub mod store;
pub mod table;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::store::{MemberState, MemberValue, TableRecord};
use self::table::Table;
use super::policy::{SteeringKernel, SteeringSetup};
use super::subsystem::{Commit, DrainStep, Subsystem};
use crate::api::{SteeringMember, SteeringStatus};
use crate::config::Config;
use crate::config::fleet_policy::FleetPolicySection;
use crate::config::steering::SteeringSection;

/// `proxy_fleet_steering_*` series.
#[derive(Clone, Default)]
pub struct SteeringMetrics {
    pub generation: Gauge,
    pub members: Family<StateLabel, Gauge>,
    pub rows: Family<RoleLabel, Gauge>,
    pub switches: Counter,
    pub rows_moved: Counter,
    pub bad_entries: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RoleLabel {
    pub role: &'static str,
}

/// What the session and the callers share.
pub struct Shared {
    pub state: Mutex<State>,
    /// Wakes the session (a drain asked for, a probe learned).
    pub wake: Notify,
    /// Notified at every switch of the table in use.
    pub switched: Notify,
    /// Probe the members now (they changed).
    pub probe_now: Notify,
    pub kernel: Arc<dyn SteeringKernel>,
    pub metrics: SteeringMetrics,
}

/// This node's view of the fleet.
#[derive(Default)]
pub struct State {
    pub node: String,
    pub address: Option<IpAddr>,
    pub port: u16,
    pub connected: bool,
    pub last_error: Option<String>,
    /// The session holds a lease with this node's registration on it.
    pub registered: bool,
    /// What this node registers as (draining once SIGTERM arrived).
    pub want: Option<MemberState>,
    /// The members registered now (their leases live).
    pub live: BTreeMap<String, MemberValue>,
    /// The store's table record and its modification revision.
    pub table: Option<TableRecord>,
    pub table_revision: i64,
    /// The generation each member has installed.
    pub acks: BTreeMap<String, u64>,
    /// What this node acknowledged last.
    pub acked: Option<u64>,
    /// The table installed in the standby slot, and the one packets are steered by.
    pub installed: Option<Arc<Table>>,
    pub active: Option<Arc<Table>>,
    /// Rows whose primary changed at the last switch.
    pub rows_moved: Option<u64>,
    /// Why the rollout waits, while it does.
    pub waiting: Option<String>,
    pub bad_entries: u64,
}

impl State {
    /// This node's index in `table`.
    pub fn me_in(&self, table: &Table) -> Option<u16> {
        table.index_of(&self.node)
    }

    /// The members to probe and to accept GUE from: the installed and active
    /// tables' and the registered ones, without this node.
    pub fn peers(&self) -> Vec<(IpAddr, u16)> {
        let mut peers: Vec<(IpAddr, u16)> = Vec::new();
        let tables = self.installed.iter().chain(self.active.iter());
        let members = tables.flat_map(|t| t.members.iter().map(|m| (&m.node, m.address, m.port)));
        let live = self.live.values().map(|m| (&m.node, m.address, m.port));
        for (node, address, port) in members.chain(live) {
            if *node != self.node && !peers.contains(&(address, port)) {
                peers.push((address, port));
            }
        }
        peers
    }
}

/// Connection steering as a daemon subsystem (inert without a steered VIP).
pub struct Steering {
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

/// What a session runs with; a change starts a new one.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    node: String,
    store: FleetPolicySection,
    section: SteeringSection,
    setup: SteeringSetup,
}

struct Running {
    settings: Settings,
    stop: CancellationToken,
    session: JoinHandle<()>,
    probes: JoinHandle<()>,
}

impl Steering {
    pub fn new(kernel: Arc<dyn SteeringKernel>, metrics: SteeringMetrics) -> Steering {
        Steering {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                switched: Notify::new(),
                probe_now: Notify::new(),
                kernel,
                metrics,
            }),
            running: Mutex::new(None),
        }
    }

    /// May this node announce its steered VIPs? Once it is an active member of the
    /// table the fleet steers by (so the other nodes send it what is its own); always
    /// without steering.
    pub fn serving(&self) -> bool {
        if self.running.lock().expect("steering lock").is_none() {
            return true;
        }
        let state = self.shared.state.lock().expect("steering lock");
        state.active.as_ref().is_some_and(|t| {
            t.members
                .iter()
                .any(|m| m.node == state.node && m.state == MemberState::Active)
        })
    }

    /// Why this node does not serve its steered VIPs yet (for BGP's status).
    pub fn not_serving_reason(&self) -> String {
        let state = self.shared.state.lock().expect("steering lock");
        match (&state.active, state.connected) {
            (_, false) => "steering: the fleet store is not reachable yet".into(),
            (None, true) => "steering: no forwarding table installed yet".into(),
            (Some(t), true) => format!(
                "steering: not an active member of table generation {} yet{}",
                t.generation,
                state
                    .waiting
                    .as_ref()
                    .map_or(String::new(), |w| format!(" ({w})"))
            ),
        }
    }

    pub fn status(&self) -> Option<SteeringStatus> {
        let running = self.running.lock().expect("steering lock");
        let r = running.as_ref()?;
        let state = self.shared.state.lock().expect("steering lock");
        let reachable: BTreeMap<IpAddr, Option<Duration>> = self
            .shared
            .kernel
            .steering_reachable()
            .into_iter()
            .collect();
        let active = state.active.as_deref();
        let rows = active.map(|t| t.rows_per_member()).unwrap_or_default();
        let mut members: Vec<SteeringMember> = Vec::new();
        if let Some(t) = active {
            for (i, m) in t.members.iter().enumerate() {
                let (rows_primary, rows_secondary) = rows[i];
                let state_name = if state.live.contains_key(&m.node) {
                    m.state.name()
                } else {
                    "gone"
                };
                members.push(SteeringMember {
                    node: m.node.clone(),
                    address: m.address.to_string(),
                    port: m.port,
                    state: state_name.into(),
                    installed: state.acks.get(&m.node).copied(),
                    rows_primary: u64::from(rows_primary),
                    rows_secondary: u64::from(rows_secondary),
                    last_probe_ms: probe_age(&reachable, m.address, &m.node, &state.node),
                });
            }
        }
        for m in state.live.values() {
            if !members.iter().any(|s| s.node == m.node) {
                members.push(SteeringMember {
                    node: m.node.clone(),
                    address: m.address.to_string(),
                    port: m.port,
                    state: "joining".into(),
                    installed: state.acks.get(&m.node).copied(),
                    last_probe_ms: probe_age(&reachable, m.address, &m.node, &state.node),
                    ..SteeringMember::default()
                });
            }
        }
        let me = active.and_then(|t| state.me_in(t)).map(usize::from);
        let (rows_primary, rows_secondary) =
            me.and_then(|i| rows.get(i)).copied().unwrap_or((0, 0));
        Some(SteeringStatus {
            node: state.node.clone(),
            address: state.address.map(|a| a.to_string()).unwrap_or_default(),
            port: r.settings.setup.port,
            connected: state.connected,
            last_error: state.last_error.clone(),
            state: match (state.registered, state.want) {
                (true, Some(s)) => s.name().into(),
                _ => "unregistered".into(),
            },
            active_generation: active.map(|t| t.generation),
            installed_generation: state.installed.as_ref().map(|t| t.generation),
            table_generation: state.table.as_ref().map(|t| t.generation),
            last_change: state.table.as_ref().map(|t| t.change.clone()),
            rows_moved: state.rows_moved,
            rows: active.map_or(0, |t| t.rows.len() as u64),
            rows_primary: u64::from(rows_primary),
            rows_secondary: u64::from(rows_secondary),
            members,
            waiting: state.waiting.clone(),
            bad_entries: state.bad_entries,
        })
    }

    /// SIGTERM: register as draining and wait until the fleet steers by a table in
    /// which this node owns no rows (its connections keep their second chance here),
    /// at most `rollout_timeout`.
    async fn drain(&self) {
        let timeout = {
            let running = self.running.lock().expect("steering lock");
            let Some(r) = running.as_ref() else { return };
            r.settings.section.rollout_timeout
        };
        self.shared.state.lock().expect("steering lock").want = Some(MemberState::Draining);
        self.shared.wake.notify_one();
        let started = Instant::now();
        let moved = async {
            loop {
                let switched = self.shared.switched.notified();
                if self.rows_given_up() {
                    return;
                }
                switched.await;
            }
        };
        match tokio::time::timeout(timeout, moved).await {
            Ok(()) => info!(
                took_ms = started.elapsed().as_millis() as u64,
                "steering: the fleet steers by a table where this node owns no rows; its \
                 connections keep reaching it through the other nodes"
            ),
            Err(_) => warn!(
                ?timeout,
                waiting = self
                    .shared
                    .state
                    .lock()
                    .expect("steering lock")
                    .waiting
                    .clone(),
                "steering: the fleet did not switch to a table without this node's rows in \
                 time; withdrawing anyway (new connections of its rows may fail until it does)"
            ),
        }
    }

    /// Does the table in use give this node no rows as primary?
    fn rows_given_up(&self) -> bool {
        let state = self.shared.state.lock().expect("steering lock");
        match &state.active {
            None => true,
            Some(t) => t
                .members
                .iter()
                .find(|m| m.node == state.node)
                .is_none_or(|m| m.state == MemberState::Draining),
        }
    }
}

fn probe_age(
    reachable: &BTreeMap<IpAddr, Option<Duration>>,
    address: IpAddr,
    node: &str,
    me: &str,
) -> Option<u64> {
    if node == me {
        return None;
    }
    reachable
        .get(&address)
        .copied()
        .flatten()
        .map(|d| d.as_millis() as u64)
}

/// This node's steering settings for `config`, or `None` without a steered VIP.
fn settings(config: &Config) -> anyhow::Result<Option<Settings>> {
    let Some(section) = config.steering() else {
        return Ok(None);
    };
    let store = config
        .fleet_policy()
        .context("steering needs [fleet.policy] (validated)")?;
    let address = match section.address {
        Some(a) => a,
        None => default_address(config)?,
    };
    let vips = config
        .steered_vips()
        .map(|vip| {
            let mut ports: Vec<u16> = config
                .listeners
                .iter()
                .filter(|l| vip.listeners.contains(&l.name))
                .map(|l| l.bind.port())
                .collect();
            ports.sort_unstable();
            ports.dedup();
            (vip.address, ports)
        })
        .collect();
    Ok(Some(Settings {
        node: store.node_name(),
        store: store.clone(),
        setup: SteeringSetup {
            address,
            port: section.port,
            vips,
        },
        section,
    }))
}

/// The first address of the first XDP interface (IPv4 if it has one).
fn default_address(config: &Config) -> anyhow::Result<IpAddr> {
    let interface = config
        .xdp
        .as_ref()
        .and_then(|x| x.interfaces.first())
        .context("steering needs [xdp] (validated)")?;
    let addresses: Vec<IpAddr> = if_addrs::get_if_addrs()
        .context("reading the interfaces' addresses")?
        .into_iter()
        .filter(|i| &i.name == interface)
        .map(|i| i.ip())
        .filter(|a| !a.is_loopback() && !is_link_local(a))
        .collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .with_context(|| {
            format!(
                "steering needs this node's address on the fleet's segment, and {interface} \
                 (the first of xdp.interfaces) has none: set [fleet.steering] address"
            )
        })
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

impl Subsystem for Steering {
    fn name(&self) -> &str {
        "steering"
    }

    /// Works out this node's address and what the kernel steers.
    fn prepare<'a>(&'a self, config: &Arc<Config>) -> anyhow::Result<Commit<'a>> {
        let settings = settings(config)?;
        Ok(Box::new(move || self.apply(settings)))
    }

    fn begin_drain(&self) -> DrainStep<'_> {
        Box::pin(self.drain())
    }

    /// Leaves the fleet at once (the lease revoked: the others move this node's rows
    /// on) rather than after `member_ttl`.
    fn stop(&self) {
        let Some(r) = self.running.lock().expect("steering lock").take() else {
            return;
        };
        r.stop.cancel();
        r.probes.abort();
        let session = r.session;
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(2), session).await;
                })
            });
        } else {
            session.abort();
        }
    }
}

impl Steering {
    fn apply(&self, settings: Option<Settings>) -> anyhow::Result<()> {
        let mut running = self.running.lock().expect("steering lock");
        let Some(settings) = settings else {
            if let Some(r) = running.take() {
                info!("no VIP is steered any more: leaving the fleet's table");
                r.stop.cancel();
                r.probes.abort();
                self.shared.kernel.steering_configure(None)?;
            }
            return Ok(());
        };
        self.shared
            .kernel
            .steering_configure(Some(&settings.setup))?;
        if running
            .as_ref()
            .is_some_and(|r| r.settings == settings && !r.session.is_finished())
        {
            return Ok(());
        }
        if let Some(r) = running.take() {
            info!("steering settings changed: registering again");
            r.stop.cancel();
            r.probes.abort();
        }
        {
            let mut state = self.shared.state.lock().expect("steering lock");
            state.node = settings.node.clone();
            state.address = Some(settings.setup.address);
            state.port = settings.setup.port;
            state.want.get_or_insert(MemberState::Active);
        }
        info!(
            node = settings.node,
            address = %settings.setup.address,
            port = settings.setup.port,
            vips = ?settings.setup.vips,
            "connection steering: joining the fleet's table through etcd"
        );
        let stop = CancellationToken::new();
        let probe_socket = probe::bind(settings.setup.address, settings.setup.port)?;
        let probes = tokio::spawn(probe::run(self.shared.clone(), probe_socket));
        let session = tokio::spawn(session::run(
            self.shared.clone(),
            settings.store.clone(),
            settings.section.clone(),
            stop.clone(),
        ));
        *running = Some(Running {
            settings,
            stop,
            session,
            probes,
        });
        Ok(())
    }
}
