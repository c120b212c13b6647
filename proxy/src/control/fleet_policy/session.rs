//! The connection to etcd. Each session: connect, read every entry at one revision
//! and make the kernel match it, then watch from the next revision (no event missed
//! between the read and the watch), publishing queued writes as they come. Any
//! failure ends the session; the next one starts with a full read again, so entries
//! deleted meanwhile leave the kernel. Between sessions the kernel keeps its policy.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, PutOptions, TlsOptions,
    WatchOptions, WatchResponse,
};
use tracing::{info, warn};

use super::store::{self, SharedEntry, Source, now_unix_ms};
use super::{Pending, Shared};
use crate::config::fleet_policy::FleetPolicySection;

/// HTTP/2 ping interval to etcd (over its 5 s minimum).
const KEEPALIVE: Duration = Duration::from_secs(6);
/// Between failed sessions.
const RETRY: Duration = Duration::from_secs(1);
/// Entries per read request (etcd's replies stay well under gRPC's 4 MiB).
const PAGE: i64 = 2000;
/// How often the kernel is checked for local edits that uncover fleet entries.
const CHECK: Duration = Duration::from_secs(1);
/// A full comparison with the kernel at least this often, whatever happened (a
/// safety net: other writers' edits trigger one within a second).
const FULL_RECONCILE: Duration = Duration::from_secs(300);

pub async fn run(shared: Arc<Shared>, section: FleetPolicySection, node: String) {
    let prefix = section.key_prefix();
    let mut kernel_check = KernelCheck::default();
    loop {
        let error = match connect(&section).await {
            Ok(mut client) => {
                session(
                    &shared,
                    &section,
                    &node,
                    &prefix,
                    &mut client,
                    &mut kernel_check,
                )
                .await
            }
            Err(e) => e,
        };
        shared.set_connected(false, Some(format!("{error:#}")));
        // While the store is away the kernel keeps its policy; local edits still
        // uncover hidden fleet entries.
        kernel_check.tick(&shared).await;
        tokio::time::sleep(RETRY).await;
    }
}

/// Connects to the store of `section` within its timeout.
pub async fn connect(section: &FleetPolicySection) -> anyhow::Result<Client> {
    let options = connect_options(section)?;
    tokio::time::timeout(
        section.timeout,
        Client::connect(&section.endpoints, Some(options)),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "no answer from {:?} within {:?}",
            section.endpoints,
            section.timeout
        )
    })?
    .with_context(|| format!("connecting to etcd at {:?}", section.endpoints))
}

/// The client options of `section`, with its password and TLS files read (an error
/// names the file that cannot be read).
pub fn connect_options(section: &FleetPolicySection) -> anyhow::Result<ConnectOptions> {
    // HTTP/2 pings find a silently dead member. etcd answers pings more often than
    // its --grpc-keepalive-min-time (5 s) with GOAWAY, so no more often than that;
    // the watch stream is always open, so pings run only with streams open.
    let mut options = ConnectOptions::new()
        .with_connect_timeout(section.timeout)
        .with_keep_alive(KEEPALIVE, section.timeout)
        .with_keep_alive_while_idle(false)
        .with_require_leader(true);
    if let (Some(user), Some(file)) = (&section.user, &section.password_file) {
        let password = std::fs::read_to_string(file)
            .with_context(|| format!("reading the etcd password from {}", file.display()))?;
        options = options.with_user(user, password.trim_end_matches(['\r', '\n']));
    }
    if let Some(tls) = &section.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        options = options.with_tls(config);
    }
    Ok(options)
}

/// One session; returns why it ended.
async fn session(
    shared: &Arc<Shared>,
    section: &FleetPolicySection,
    node: &str,
    prefix: &str,
    client: &mut Client,
    kernel_check: &mut KernelCheck,
) -> anyhow::Error {
    let result: anyhow::Result<()> = async {
        let revision = full_read(shared, client, prefix, section.timeout).await?;
        let members = tokio::time::timeout(section.timeout, members(client))
            .await
            .unwrap_or_default();
        shared.state.lock().expect("fleet policy lock").members = members;
        let watch = client.watch(
            store::entries_prefix(prefix),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        );
        let mut watch = tokio::time::timeout(section.timeout, watch)
            .await
            .map_err(|_| anyhow::anyhow!("starting the watch took over {:?}", section.timeout))?
            .context("starting the watch")?;
        shared.set_connected(true, None);
        let mut tick = tokio::time::interval(CHECK);
        loop {
            sync_config_entries(shared, node);
            publish_pending(shared, client, prefix, section.timeout).await?;
            tokio::select! {
                message = watch.message() => {
                    let response = message.context("the watch failed")?
                        .ok_or_else(|| anyhow::anyhow!("the store ended the watch"))?;
                    if response.canceled() {
                        anyhow::bail!(
                            "the store cancelled the watch (compacted at revision {}: {}); reading everything again",
                            response.compact_revision(),
                            response.cancel_reason()
                        );
                    }
                    apply_events(shared, prefix, &response);
                }
                _ = shared.wake.notified() => {}
                _ = tick.tick() => kernel_check.tick(shared).await,
            }
        }
    }
    .await;
    result
        .err()
        .unwrap_or_else(|| anyhow::anyhow!("session ended"))
}

/// Reads every entry at one revision, makes the view and the kernel match it; the
/// revision read at.
async fn full_read(
    shared: &Arc<Shared>,
    client: &mut Client,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<i64> {
    let began = std::time::Instant::now();
    let start = store::entries_prefix(prefix).into_bytes();
    let end = prefix_end(&start);
    let mut key = start;
    let mut revision = 0;
    let mut entries = Vec::new();
    let mut bad = 0u64;
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = tokio::time::timeout(timeout, client.get(key.clone(), Some(options)))
            .await
            .map_err(|_| anyhow::anyhow!("reading the entries took over {timeout:?}"))?
            .context("reading the entries")?;
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        for kv in page.kvs() {
            match store::parse_entry(prefix, kv.key(), kv.value()) {
                Ok(entry) => entries.push(entry),
                Err(why) => {
                    bad += 1;
                    skip_bad(kv.key(), &why);
                }
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                key = last.key().to_vec();
                key.push(0);
            }
            _ => break,
        }
    }
    let count = entries.len();
    let background = shared.clone();
    let changes = tokio::task::spawn_blocking(move || {
        let mut state = background.state.lock().expect("fleet policy lock");
        let now = now_unix_ms();
        let changes = state
            .applied
            .replace(background.kernel.as_ref(), entries, now);
        // What this node changed but the store does not have yet stays as it is
        // here (it is published next).
        let pending: Vec<Pending> = state.pending.iter().cloned().collect();
        for write in pending {
            let kernel = background.kernel.as_ref();
            let result = match write {
                Pending::Put(entry) => state.applied.put(kernel, entry, now),
                Pending::Delete(list, net) => state.applied.delete(kernel, list, net),
            };
            if let Err(e) = result {
                warn!(
                    error = format!("{e:#}"),
                    "cannot apply a queued fleet change"
                );
            }
        }
        background.wrote(&mut state);
        changes
    })
    .await
    .context("applying the entries")??;
    let mut state = shared.state.lock().expect("fleet policy lock");
    state.loaded = true;
    state.revision = revision;
    state.bad_entries += bad;
    state.config_dirty = true;
    shared.metrics.bad_entries.inc_by(bad);
    shared.metrics.revision.set(revision);
    info!(
        entries = count,
        revision,
        applied = changes.applied,
        removed = changes.removed,
        hidden_under_local = changes.hidden,
        skipped_malformed = bad,
        took_ms = began.elapsed().as_millis() as u64,
        "fleet entries read and applied"
    );
    Ok(revision)
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

async fn members(client: &mut Client) -> Vec<String> {
    match client.member_list().await {
        Ok(list) => list
            .members()
            .iter()
            .map(|m| format!("{} {}", m.name(), m.client_urls().join(",")))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot list the etcd members");
            Vec::new()
        }
    }
}

fn skip_bad(key: &[u8], why: &str) {
    warn!(
        key = %String::from_utf8_lossy(key),
        error = why,
        "skipped a malformed fleet entry"
    );
}

/// Applies a watch response's events to the view and the kernel.
fn apply_events(shared: &Shared, prefix: &str, response: &WatchResponse) {
    let now = now_unix_ms();
    let mut state = shared.state.lock().expect("fleet policy lock");
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        let result = match event.event_type() {
            EventType::Put => store::parse_entry(prefix, kv.key(), kv.value()).map(|entry| {
                let lag = now.saturating_sub(entry.value.created_unix_ms);
                state.last_lag = Some(Duration::from_millis(lag));
                shared.metrics.apply_lag_seconds.set(lag as f64 / 1000.0);
                state.applied.put(shared.kernel.as_ref(), entry, now)
            }),
            EventType::Delete => store::parse_key(prefix, kv.key())
                .map(|(list, net)| state.applied.delete(shared.kernel.as_ref(), list, net)),
        };
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(
                key = %String::from_utf8_lossy(kv.key()),
                error = format!("{e:#}"),
                "cannot apply a fleet entry to the kernel"
            ),
            Err(why) => {
                state.bad_entries += 1;
                shared.metrics.bad_entries.inc();
                skip_bad(kv.key(), &why);
            }
        }
    }
    if let Some(header) = response.header() {
        state.revision = header.revision();
        shared.metrics.revision.set(header.revision());
    }
    shared.wrote(&mut state);
}

/// Makes the store hold exactly the config's shared entries of this node: queues
/// puts for new or changed ones and deletes for ones the config dropped.
fn sync_config_entries(shared: &Shared, node: &str) {
    let mut state = shared.state.lock().expect("fleet policy lock");
    if !state.config_dirty {
        return;
    }
    state.config_dirty = false;
    let wanted = state.config_shared.clone();
    let dropped: Vec<_> = state
        .applied
        .published_by(node, Source::Config)
        .filter(|key| !wanted.iter().any(|w| (w.list, w.value.cidr) == *key))
        .collect();
    for (list, net) in dropped {
        if let Err(e) = state.applied.delete(shared.kernel.as_ref(), list, net) {
            warn!(
                error = format!("{e:#}"),
                "cannot remove a fleet entry from the kernel"
            );
        }
        shared.queue(&mut state, Pending::Delete(list, net));
    }
    for entry in wanted {
        let same = state
            .applied
            .get(entry.list, entry.value.cidr)
            .is_some_and(|v| {
                v.origin == entry.value.origin
                    && v.source == Source::Config
                    && v.reason == entry.value.reason
                    && v.ttl_ms == entry.value.ttl_ms
            });
        if same {
            continue;
        }
        if let Err(e) = state
            .applied
            .put(shared.kernel.as_ref(), entry.clone(), now_unix_ms())
        {
            warn!(
                error = format!("{e:#}"),
                "cannot apply a shared config entry"
            );
        }
        shared.queue(&mut state, Pending::Put(entry));
    }
    shared.wrote(&mut state);
}

/// Sends queued writes in order; a write stays queued until the store took it.
async fn publish_pending(
    shared: &Shared,
    client: &mut Client,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    loop {
        let Some(next) = shared
            .state
            .lock()
            .expect("fleet policy lock")
            .pending
            .front()
            .cloned()
        else {
            return Ok(());
        };
        let sent = tokio::time::timeout(timeout, send(client, prefix, &next)).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context("publishing to the store")),
            Err(_) => anyhow::bail!("publishing to the store took over {timeout:?}"),
        }
        let mut state = shared.state.lock().expect("fleet policy lock");
        state.pending.pop_front();
        shared.metrics.pending.set(state.pending.len() as i64);
    }
}

async fn send(client: &mut Client, prefix: &str, write: &Pending) -> anyhow::Result<()> {
    match write {
        Pending::Put(entry) => {
            let SharedEntry { list, value } = entry;
            let key = store::key(prefix, *list, value.cidr);
            let options = match value.remaining(now_unix_ms()) {
                // Ran out while queued: not published.
                None => return Ok(()),
                Some(None) => None,
                Some(Some(left)) => {
                    let seconds = left.as_millis().div_ceil(1000).max(1) as i64;
                    let lease = client.lease_grant(seconds, None).await?;
                    Some(PutOptions::new().with_lease(lease.id()))
                }
            };
            client.put(key, serde_json::to_vec(value)?, options).await?;
        }
        Pending::Delete(list, net) => {
            client.delete(store::key(prefix, *list, *net), None).await?;
        }
    }
    Ok(())
}

/// Notices local edits of the kernel lists (a local entry removed or expired may
/// uncover a fleet entry; a config reload may have replaced one) by the lists'
/// generation, and then compares the kernel with the view.
#[derive(Default)]
pub struct KernelCheck {
    generation: Option<u64>,
    last_full: Option<tokio::time::Instant>,
}

impl KernelCheck {
    async fn tick(&mut self, shared: &Arc<Shared>) {
        let (own, loaded) = {
            let state = shared.state.lock().expect("fleet policy lock");
            (state.own_generation, state.loaded)
        };
        // Until a first full read this node does not know the fleet's entries: the
        // ones in its pins (from before a restart) stay as they are.
        if !loaded {
            return;
        }
        let generation = shared.kernel.policy_generation();
        let due = self.last_full.is_none_or(|t| t.elapsed() >= FULL_RECONCILE);
        if (generation == self.generation || generation == own) && !due {
            return;
        }
        let background = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut state = background.state.lock().expect("fleet policy lock");
            let changes = state
                .applied
                .reconcile(background.kernel.as_ref(), now_unix_ms());
            background.wrote(&mut state);
            (changes, state.own_generation)
        })
        .await;
        self.last_full = Some(tokio::time::Instant::now());
        match done {
            Ok((Ok(changes), generation)) => {
                self.generation = generation;
                if changes.applied + changes.removed > 0 {
                    info!(
                        applied = changes.applied,
                        removed = changes.removed,
                        "fleet entries re-applied after local list changes"
                    );
                }
            }
            Ok((Err(e), _)) => warn!(
                error = format!("{e:#}"),
                "cannot compare the kernel lists with the fleet entries"
            ),
            Err(e) => warn!(error = %e, "fleet reconcile task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/p/entries/"), b"/p/entries0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }
}
