//! Active health checks: a TCP connect to each backend every `interval`, with
//! `timeout`; results feed [`Backend::record`] together with the passive results of
//! real traffic (see `connection.rs`). Pools that speak the PROXY protocol send a
//! LOCAL (v2) / UNKNOWN (v1) header on each check, so the backend logs no error.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, interval, timeout};

use super::balance::{Backend, Pool, Source};
use super::proxy_protocol;
use crate::config;

/// The running checks of one pool; dropping it stops them.
pub struct HealthChecks {
    _tasks: JoinSet<()>,
}

/// Starts one check loop per backend of `pool` (none if checks are disabled).
pub fn start(pool: &Arc<Pool>) -> HealthChecks {
    let mut tasks = JoinSet::new();
    let rules = &pool.settings.health;
    if rules.enabled {
        for backend in pool.backends() {
            let header = proxy_protocol::health_check(pool.settings.proxy_protocol);
            tasks.spawn(check_loop(backend.clone(), rules.clone(), header));
        }
    }
    HealthChecks { _tasks: tasks }
}

async fn check_loop(backend: Arc<Backend>, rules: config::Health, header: Option<Vec<u8>>) {
    let mut tick = interval(rules.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = match timeout(rules.timeout, check(&backend, header.as_deref())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", rules.timeout)),
        };
        match result {
            Ok(()) => backend.record(true, Source::Check, &rules, ""),
            Err(e) => backend.record(false, Source::Check, &rules, &e),
        }
    }
}

/// Connects, sends the PROXY header if the pool uses one, and closes.
async fn check(backend: &Backend, header: Option<&[u8]>) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(backend.address).await?;
    if let Some(header) = header {
        stream.write_all(header).await?;
        stream.shutdown().await?;
    }
    Ok(())
}
