//! One backend server and its health: active checks and real connects feed one
//! streak of results; `rise` successes mark it up, `fall` failures mark it down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config;
use crate::metrics::{BackendMetrics, Metrics};

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    pub address: SocketAddr,
    pool: Arc<str>,
    up: AtomicBool,
    streak: Mutex<Streak>,
    pub metrics: BackendMetrics,
}

/// Consecutive results of the same kind (checks and real connects together), and
/// the last failure's cause.
#[derive(Debug, Default)]
struct Streak {
    successes: u32,
    failures: u32,
    last_failure: Option<String>,
}

/// Where a health result came from (for the log line).
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// An active health check.
    Check,
    /// A client connection's connect attempt.
    Traffic,
}

impl Backend {
    pub(super) fn new(pool: &Arc<str>, address: SocketAddr, metrics: &Metrics) -> Backend {
        let metrics = metrics.backend(pool, &address.to_string());
        metrics.up.set(1);
        Backend {
            address,
            pool: pool.clone(),
            up: AtomicBool::new(true),
            streak: Mutex::new(Streak::default()),
            metrics,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Connections currently open to this backend.
    pub fn active_connections(&self) -> i64 {
        self.metrics.active.get()
    }

    /// Why the last check or connect failed, if one ever did.
    pub fn last_failure(&self) -> Option<String> {
        let streak = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        streak.last_failure.clone()
    }

    /// Records a connect result; `rise` successes in a row mark a down backend up,
    /// `fall` failures in a row mark an up backend down. Logs the transitions.
    pub fn record(&self, ok: bool, source: Source, rules: &config::Health, detail: &str) {
        let mut streak = match self.streak.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if ok {
            streak.successes = streak.successes.saturating_add(1);
            streak.failures = 0;
        } else {
            streak.failures = streak.failures.saturating_add(1);
            streak.successes = 0;
            streak.last_failure = Some(detail.to_owned());
        }
        let up = self.is_up();
        if up && streak.failures >= rules.fall {
            self.up.store(false, Ordering::Relaxed);
            self.metrics.up.set(0);
            tracing::warn!(
                pool = %self.pool, backend = %self.address, ?source, failures = streak.failures,
                error = detail, "backend marked DOWN"
            );
        } else if !up && streak.successes >= rules.rise {
            self.up.store(true, Ordering::Relaxed);
            self.metrics.up.set(1);
            tracing::info!(
                pool = %self.pool, backend = %self.address, ?source, successes = streak.successes,
                "backend marked UP"
            );
        }
    }
}
