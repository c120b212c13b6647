//! Active health checks: a TCP connect to each backend every `interval`, with
//! `timeout`; results feed [`Backend::record`] together with the passive results of
//! real traffic (see `connection.rs`).

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, interval, timeout};

use super::balance::{Backend, Pool, Source};
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
            tasks.spawn(check_loop(backend.clone(), rules.clone()));
        }
    }
    HealthChecks { _tasks: tasks }
}

async fn check_loop(backend: Arc<Backend>, rules: config::Health) {
    let mut tick = interval(rules.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = match timeout(rules.timeout, TcpStream::connect(backend.address)).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", rules.timeout)),
        };
        match result {
            Ok(()) => backend.record(true, Source::Check, &rules, ""),
            Err(e) => backend.record(false, Source::Check, &rules, &e),
        }
    }
}
