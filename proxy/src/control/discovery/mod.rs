//! Backends found through DNS: `[[pool.backends]] name = "host:port"` (A and AAAA)
//! and `[pool.discovery] srv` (an SRV record's targets, ports and weights).
//!
//! One task per source of a running pool: look up, decide ([`state::Source`]: TTL
//! within `min_refresh`/`max_refresh`, the last good set kept through failures, an
//! empty answer applied only after `hold_empty`), and when the set changed, give the
//! pool its new backends ([`Pool::set_discovered`]: backends that stay keep their
//! health and connections, removed ones get no new connections while their open
//! ones finish, Maglev moves only their share). Level-based: a reload restarts the
//! tasks for the new pools, which carry the previous pools' DNS backends until the
//! first lookup.
//!
//! - [`state`]: the decision, pure; [`records`]: DNS data made backends;
//!   [`resolve`]: the lookups (hickory-resolver).

pub mod records;
pub mod resolve;
pub mod state;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use self::resolve::{Resolver, Spec};
use self::state::{Decision, Outcome, Source, Timing};
use crate::api::DnsSourceStatus;
use crate::config::discovery::{Discovery, name_and_port};
use crate::datapath::balance::Pool;
use crate::metrics::Metrics;

/// The lookups of one pool; dropping it stops them.
pub struct PoolDiscovery {
    _tasks: JoinSet<()>,
}

/// Starts looking up `pool`'s DNS sources (`None` without any).
pub fn start(pool: &Arc<Pool>, metrics: &Arc<Metrics>) -> Option<PoolDiscovery> {
    let settings = pool.settings.discovery.clone().unwrap_or_default();
    let sources = sources(&pool.settings, &settings);
    if sources.is_empty() {
        return None;
    }
    let name = pool.name().to_owned();
    let resolver = match Resolver::new(&settings) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::error!(
                pool = name,
                error = format!("{e:#}"),
                "DNS backends cannot be looked up"
            );
            return None;
        }
    };
    let (config, dns) = pool.origin_counts();
    tracing::info!(
        pool = name,
        sources = sources.len(),
        resolvers = resolve::describe(&settings),
        configured = config,
        from_dns = dns,
        "looking up DNS backends; until DNS answers, the pool has the backends it already had"
    );
    let timing = Timing {
        min_refresh: settings.min_refresh,
        max_refresh: settings.max_refresh,
        hold_empty: settings.hold_empty,
        max_backends: settings.max_backends,
    };
    let mut tasks = JoinSet::new();
    for (label, spec) in sources {
        let task = follow(
            pool.clone(),
            metrics.clone(),
            resolver.clone(),
            label,
            spec,
            timing,
        );
        tasks.spawn(task);
    }
    Some(PoolDiscovery { _tasks: tasks })
}

/// The pool's DNS sources: (label, what to look up).
fn sources(pool: &crate::config::Pool, settings: &Discovery) -> Vec<(String, Spec)> {
    let labels = crate::datapath::balance::pool_dns_sources(pool);
    let names = pool.backends.iter().filter_map(|b| {
        let (host, port) = name_and_port(b.name.as_deref()?).ok()?;
        let spec = Spec::Name {
            host: host.to_owned(),
            port,
            weight: b.weight,
        };
        Some(spec)
    });
    let srv = settings.srv.clone().map(Spec::Srv);
    labels.into_iter().zip(names.chain(srv)).collect()
}

/// Looks up one source for as long as the pool runs.
async fn follow(
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    resolver: Arc<Resolver>,
    label: String,
    spec: Spec,
    timing: Timing,
) {
    let mut source = Source::new(timing);
    // The backends this source gave the previous pool (a reload) count as its set.
    let carried: Vec<state::Found> = {
        let m = pool.members();
        m.backends
            .iter()
            .zip(&m.weights)
            .zip(&m.origins)
            .filter(|(_, o)| o.label() == format!("dns {label}"))
            .map(|((b, &w), _)| state::Found {
                address: b.address,
                weight: w,
                record: label.clone(),
                host: b.host().unwrap_or_default().to_owned(),
            })
            .collect()
    };
    if !carried.is_empty() {
        source.observe(
            Outcome::Records(carried, timing.min_refresh),
            Instant::now(),
        );
    }
    loop {
        let outcome = resolver.lookup(&spec, &label).await;
        let result = match &outcome {
            Outcome::Records(..) => "ok",
            Outcome::Empty(_) => "empty",
            Outcome::Failed(_) => "failed",
        };
        metrics.dns_resolved(pool.name(), result);
        let decision = source.observe(outcome, Instant::now());
        apply(&pool, &metrics, &label, &source, &decision);
        pool.set_dns_status(DnsSourceStatus {
            source: label.clone(),
            state: source.health().label().into(),
            last_resolution_unix: Some(unix_now()),
            last_result: Some(result.into()),
            last_error: source.last_error().map(str::to_owned),
            backends: source.set().iter().map(|f| f.address).collect(),
        });
        tokio::time::sleep(decision.next).await;
    }
}

/// Logs the decision's transition and gives the pool its new backends.
fn apply(pool: &Pool, metrics: &Metrics, label: &str, source: &Source, decision: &Decision) {
    let name = pool.name();
    if let Some((from, to)) = decision.transition {
        let (from, to) = (from.label(), to.label());
        match source.last_error() {
            Some(error) => tracing::warn!(
                pool = name,
                source = label,
                from,
                to,
                error,
                "DNS lookups fail; the last good backends keep serving"
            ),
            None => tracing::info!(pool = name, source = label, from, to, "DNS source state"),
        }
    }
    let Some(set) = &decision.changed else {
        return;
    };
    let found: Vec<_> = set
        .iter()
        .map(|f| (f.address, f.weight, f.host.as_str()))
        .collect();
    match pool.set_discovered(label, &found, metrics) {
        Ok(change) => {
            let moved = change.moved.map(|m| format!("{:.1} %", m.percent()));
            tracing::info!(
                pool = name,
                source = label,
                added = ?change.added,
                removed = ?change.removed,
                left_out = change.left_out,
                maglev_moved = moved.as_deref().unwrap_or("-"),
                "backends from DNS changed (removed ones take no new connections; \
                 their open connections finish)"
            );
            let (config, dns) = pool.origin_counts();
            metrics.pool_backends(name, config, dns);
        }
        Err(e) => {
            tracing::error!(pool = name, source = label, error = %e, "cannot apply the DNS backends")
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
