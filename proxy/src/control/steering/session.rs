//! The steering session with etcd. Each session: a lease with this node's
//! registration (and its acknowledgements) on it; everything under
//! `<prefix>steering/` read at one revision, then watched from the next; after every
//! change the rollout's steps (`rollout.rs`): install, acknowledge, switch, propose.
//! Any failure ends the session and the next starts over with a new lease; meanwhile
//! the kernel keeps steering by the table it has. On stop the lease is revoked, so
//! the other nodes drop this one at once rather than after `member_ttl`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::rollout::{everywhere, next_record, waiting_for};
use super::store::{self, AckValue, Entry, MemberState, MemberValue};
use super::table::{self, Table};
use super::{Shared, State};
use crate::config::fleet_policy::FleetPolicySection;
use crate::config::steering::SteeringSection;
use crate::control::fleet_policy::session::connect;

/// Between failed sessions.
const RETRY: Duration = Duration::from_secs(1);
/// How often the steps run without an event (a member's first probe arrives
/// without one).
const TICK: Duration = Duration::from_millis(250);

pub async fn run(
    shared: Arc<Shared>,
    store: FleetPolicySection,
    section: SteeringSection,
    stop: CancellationToken,
) {
    let prefix = store.key_prefix();
    loop {
        let error = session(&shared, &store, &section, &prefix, &stop).await;
        if stop.is_cancelled() {
            return;
        }
        set_connected(&shared, false, Some(format!("{error:#}")));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

fn set_connected(shared: &Shared, connected: bool, error: Option<String>) {
    let mut state = shared.state.lock().expect("steering lock");
    if state.connected != connected || (error.is_some() && state.last_error != error) {
        match &error {
            None => info!("steering: fleet store connected"),
            Some(e) => warn!(
                error = %e,
                "steering: fleet store unreachable; steering by the table installed"
            ),
        }
    }
    state.connected = connected;
    if !connected {
        state.registered = false;
    }
    state.last_error = error;
}

/// One session; returns why it ended.
async fn session(
    shared: &Arc<Shared>,
    store: &FleetPolicySection,
    section: &SteeringSection,
    prefix: &str,
    stop: &CancellationToken,
) -> anyhow::Error {
    let timeout = store.timeout;
    let result: anyhow::Result<()> = async {
        let mut client = connect(store).await?;
        let ttl = section.member_ttl.as_secs() as i64;
        let lease = within(timeout, client.lease_grant(ttl, None))
            .await
            .context("granting this node's lease")?
            .id();
        let (mut keeper, mut alive) = within(timeout, client.lease_keep_alive(lease))
            .await
            .context("keeping the lease alive")?;
        let revision = read_all(shared, &mut client, prefix, timeout).await?;
        let watch = client.watch(
            store::steering_prefix(prefix),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        );
        let mut watch = within(timeout, watch).await.context("starting the watch")?;
        set_connected(shared, true, None);
        let mut session = Session {
            shared,
            client: &mut client,
            prefix,
            lease,
            timeout,
            registered_as: None,
        };
        let mut keepalive = tokio::time::interval(Duration::from_millis(
            (section.member_ttl.as_millis() as u64 / 3).max(500),
        ));
        let mut tick = tokio::time::interval(TICK);
        let ended = loop {
            if let Err(e) = session.steps().await {
                break Err(e);
            }
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                message = watch.message() => {
                    let response = message.context("the watch failed")?
                        .ok_or_else(|| anyhow::anyhow!("the store ended the watch"))?;
                    if response.canceled() {
                        anyhow::bail!("the store cancelled the watch ({})", response.cancel_reason());
                    }
                    apply_events(shared, prefix, &response);
                }
                answer = alive.message() => match answer.context("the lease keep-alive failed")? {
                    Some(a) if a.ttl() > 0 => {}
                    _ => anyhow::bail!("the store let this node's lease lapse"),
                },
                _ = keepalive.tick() => within(timeout, keeper.keep_alive())
                    .await
                    .context("renewing the lease")?,
                _ = shared.wake.notified() => {}
                _ = tick.tick() => {}
            }
        };
        if stop.is_cancelled() {
            // Leave at once: the registration and acknowledgements go with the lease.
            let _ = tokio::time::timeout(Duration::from_secs(1), session.client.lease_revoke(lease)).await;
            shared.state.lock().expect("steering lock").registered = false;
            info!("steering: left the fleet (lease revoked)");
        }
        ended
    }
    .await;
    result
        .err()
        .unwrap_or_else(|| anyhow::anyhow!("session ended"))
}

async fn within<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| anyhow::anyhow!("the store did not answer within {timeout:?}"))?
        .map_err(anyhow::Error::from)
}

/// Reads every key under `<prefix>steering/` at one revision into the state; the
/// revision read at.
async fn read_all(
    shared: &Shared,
    client: &mut Client,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<i64> {
    let all = within(
        timeout,
        client.get(
            store::steering_prefix(prefix),
            Some(GetOptions::new().with_prefix()),
        ),
    )
    .await
    .context("reading the fleet's members and table")?;
    let revision = all.header().map_or(0, |h| h.revision());
    let mut state = shared.state.lock().expect("steering lock");
    state.live.clear();
    state.acks.clear();
    state.table = None;
    for kv in all.kvs() {
        apply_put(
            shared,
            &mut state,
            prefix,
            kv.key(),
            kv.value(),
            kv.mod_revision(),
        );
    }
    shared.probe_now.notify_one();
    Ok(revision)
}

fn apply_events(shared: &Shared, prefix: &str, response: &etcd_client::WatchResponse) {
    let mut state = shared.state.lock().expect("steering lock");
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        match event.event_type() {
            EventType::Put => apply_put(
                shared,
                &mut state,
                prefix,
                kv.key(),
                kv.value(),
                kv.mod_revision(),
            ),
            EventType::Delete => match store::deleted(prefix, kv.key()) {
                Some((true, node)) => {
                    state.live.remove(&node);
                }
                Some((false, node)) => {
                    state.acks.remove(&node);
                }
                None if kv.key() == store::table_key(prefix).as_bytes() => {
                    warn!(
                        "steering: the table record was deleted from the store; starting again from generation 1"
                    );
                    state.table = None;
                }
                None => {}
            },
        }
    }
    shared.probe_now.notify_one();
}

fn apply_put(
    shared: &Shared,
    state: &mut State,
    prefix: &str,
    key: &[u8],
    value: &[u8],
    mod_revision: i64,
) {
    match store::parse(prefix, key, value) {
        Ok(Some(Entry::Member(m))) => {
            state.live.insert(m.node.clone(), m);
        }
        Ok(Some(Entry::Ack(node, ack))) => {
            state.acks.insert(node, ack.generation);
        }
        Ok(Some(Entry::Table(record))) => {
            state.table = Some(record);
            state.table_revision = mod_revision;
        }
        Ok(None) => {}
        Err(why) => {
            state.bad_entries += 1;
            shared.metrics.bad_entries.inc();
            warn!(
                key = %String::from_utf8_lossy(key),
                error = why,
                "steering: skipped a malformed key in the store"
            );
        }
    }
}

/// The steps, with what they need of the session.
struct Session<'a> {
    shared: &'a Arc<Shared>,
    client: &'a mut Client,
    prefix: &'a str,
    lease: i64,
    timeout: Duration,
    /// What this node registered as in this session.
    registered_as: Option<MemberState>,
}

impl Session<'_> {
    /// Registers, installs, acknowledges, switches and proposes, as far as the view
    /// allows now.
    async fn steps(&mut self) -> anyhow::Result<()> {
        self.register().await?;
        let kernel = self.shared.kernel.clone();
        kernel.steering_peers(&self.shared.state.lock().expect("steering lock").peers())?;
        self.install().await?;
        self.acknowledge().await?;
        self.switch()?;
        self.propose().await
    }

    async fn register(&mut self) -> anyhow::Result<()> {
        let value = {
            let state = self.shared.state.lock().expect("steering lock");
            let want = state.want.unwrap_or(MemberState::Active);
            if self.registered_as == Some(want) {
                return Ok(());
            }
            MemberValue {
                node: state.node.clone(),
                address: state.address.context("no steering address")?,
                port: state.port,
                state: want,
                since_unix_ms: crate::control::fleet_policy::store::now_unix_ms(),
            }
        };
        let key = store::member_key(self.prefix, &value.node);
        let put = self.client.put(
            key,
            serde_json::to_vec(&value)?,
            Some(PutOptions::new().with_lease(self.lease)),
        );
        within(self.timeout, put)
            .await
            .context("registering this node")?;
        info!(
            state = value.state.name(),
            "steering: registered in the fleet"
        );
        self.registered_as = Some(value.state);
        self.shared.state.lock().expect("steering lock").registered = true;
        Ok(())
    }

    /// Installs the store's table generation in the standby slot.
    async fn install(&mut self) -> anyhow::Result<()> {
        let (record, installed, active, node) = {
            let state = self.shared.state.lock().expect("steering lock");
            let Some(record) = state.table.clone() else {
                return Ok(());
            };
            (
                record,
                state.installed.clone(),
                state.active.clone(),
                state.node.clone(),
            )
        };
        if installed
            .as_ref()
            .is_some_and(|t| t.generation == record.generation)
        {
            return Ok(());
        }
        // The standby slot holds the generation before, not switched to yet: a newer
        // record exists only once every member had it, so steer by it first (the
        // new one goes where the old one steers from).
        if let Some(previous) = installed.filter(|t| {
            t.generation + 1 == record.generation
                && active.as_ref().is_none_or(|a| a.generation != t.generation)
        }) {
            self.activate(previous)?;
        }
        let computed = tokio::task::spawn_blocking(move || table::compute(&record))
            .await
            .context("computing the table")?;
        let me = computed.index_of(&node);
        self.shared.kernel.steering_install(&computed, me)?;
        info!(
            generation = computed.generation,
            members = computed.members.len(),
            "steering: table installed beside the one in use"
        );
        self.shared.state.lock().expect("steering lock").installed = Some(Arc::new(computed));
        Ok(())
    }

    /// Acknowledges the installed generation once every member of it can be reached.
    async fn acknowledge(&mut self) -> anyhow::Result<()> {
        let (generation, node) = {
            let mut state = self.shared.state.lock().expect("steering lock");
            let Some(installed) = state.installed.clone() else {
                return Ok(());
            };
            if state.table.as_ref().map(|t| t.generation) != Some(installed.generation)
                || state.acked == Some(installed.generation)
            {
                return Ok(());
            }
            let reachable = self.shared.kernel.steering_reachable();
            let silent: Vec<&str> = installed
                .members
                .iter()
                .filter(|m| m.node != state.node)
                .filter(|m| {
                    !reachable
                        .iter()
                        .any(|(a, age)| *a == m.address && age.is_some())
                })
                .map(|m| m.node.as_str())
                .collect();
            if !silent.is_empty() {
                state.waiting = Some(format!(
                    "no probe from {} yet: generation {} cannot be sent to it",
                    silent.join(", "),
                    installed.generation
                ));
                return Ok(());
            }
            (installed.generation, state.node.clone())
        };
        let put = self.client.put(
            store::ack_key(self.prefix, &node),
            serde_json::to_vec(&AckValue { generation })?,
            Some(PutOptions::new().with_lease(self.lease)),
        );
        within(self.timeout, put)
            .await
            .context("acknowledging the table")?;
        let mut state = self.shared.state.lock().expect("steering lock");
        state.acked = Some(generation);
        state.acks.insert(node, generation);
        Ok(())
    }

    /// Steers by the installed generation once every live member has it.
    fn switch(&mut self) -> anyhow::Result<()> {
        let installed = {
            let mut state = self.shared.state.lock().expect("steering lock");
            let Some(installed) = state.installed.clone() else {
                return Ok(());
            };
            if state.active.as_ref().map(|t| t.generation) == Some(installed.generation) {
                return Ok(());
            }
            let generation = installed.generation;
            if !everywhere(&state.live, &state.acks, generation) {
                let missing = waiting_for(&state.live, &state.acks, generation);
                state.waiting = Some(format!(
                    "generation {generation} is not installed on {} yet",
                    missing.join(", ")
                ));
                return Ok(());
            }
            installed
        };
        self.activate(installed)
    }

    fn activate(&mut self, table: Arc<Table>) -> anyhow::Result<()> {
        self.shared.kernel.steering_activate(table.generation)?;
        let mut state = self.shared.state.lock().expect("steering lock");
        let moved = state
            .active
            .as_ref()
            .map(|before| table::rows_moved(before, &table) as u64);
        let change = state
            .table
            .as_ref()
            .filter(|r| r.generation == table.generation)
            .map(|r| r.change.clone())
            .unwrap_or_default();
        let me = state.me_in(&table);
        let rows = table.rows_per_member();
        let (primary, secondary) = me
            .and_then(|i| rows.get(usize::from(i)))
            .copied()
            .unwrap_or((0, 0));
        info!(
            generation = table.generation,
            change,
            rows_moved = moved,
            rows_primary = primary,
            rows_secondary = secondary,
            "steering: packets are steered by the new table"
        );
        let metrics = &self.shared.metrics;
        metrics.generation.set(table.generation as i64);
        metrics.switches.inc();
        metrics.rows_moved.inc_by(moved.unwrap_or(0));
        for (role, n) in [("primary", primary), ("secondary", secondary)] {
            metrics
                .rows
                .get_or_create(&super::RoleLabel { role })
                .set(i64::from(n));
        }
        for name in ["active", "draining"] {
            let n = table
                .members
                .iter()
                .filter(|m| m.state.name() == name)
                .count();
            metrics
                .members
                .get_or_create(&super::StateLabel { state: name })
                .set(n as i64);
        }
        state.rows_moved = moved;
        state.active = Some(table);
        state.waiting = None;
        drop(state);
        self.shared.switched.notify_waiters();
        Ok(())
    }

    /// Proposes the next record once the current one is in use everywhere.
    async fn propose(&mut self) -> anyhow::Result<()> {
        let (next, revision) = {
            let state = self.shared.state.lock().expect("steering lock");
            if !state.registered {
                return Ok(());
            }
            if let Some(current) = &state.table {
                let in_use_here =
                    state.active.as_ref().map(|t| t.generation) == Some(current.generation);
                if !in_use_here || !everywhere(&state.live, &state.acks, current.generation) {
                    return Ok(());
                }
            }
            let Some(next) = next_record(state.table.as_ref(), &state.live) else {
                return Ok(());
            };
            (next, state.table.as_ref().map(|_| state.table_revision))
        };
        let key = store::table_key(self.prefix);
        let unchanged = match revision {
            Some(r) => Compare::mod_revision(key.clone(), CompareOp::Equal, r),
            None => Compare::version(key.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new().when([unchanged]).and_then([TxnOp::put(
            key,
            serde_json::to_vec(&next)?,
            None,
        )]);
        let answer = within(self.timeout, self.client.txn(txn))
            .await
            .context("proposing the next table")?;
        if answer.succeeded() {
            info!(
                generation = next.generation,
                change = next.change,
                "steering: proposed the next table"
            );
        }
        Ok(())
    }
}
