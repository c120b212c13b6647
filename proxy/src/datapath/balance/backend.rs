//! One backend server: its health (active checks and real connects feed one streak
//! of results; `rise` successes mark it up, `fall` failures mark it down), the
//! operator's runtime settings ([`Control`]), its open connections ([`Connection`])
//! and when it last came up (for slow start).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::slow_start;
use crate::api::{BackendState, RuntimeChange, SettingOrigin};
use crate::config;
use crate::metrics::{BackendMetrics, Metrics};

/// One backend server.
#[derive(Debug)]
pub struct Backend {
    pub address: SocketAddr,
    /// The DNS name it was found under (DNS backends only).
    host: Option<Arc<str>>,
    pool: Arc<str>,
    up: AtomicBool,
    streak: Mutex<Streak>,
    control: Mutex<Control>,
    /// When it last came up ([`slow_start::now_ms`]); 0: it has not ramped since start.
    came_up_ms: AtomicU64,
    /// Cancelled to close its open connections (`--close`), then replaced.
    cut: Mutex<CancellationToken>,
    pub metrics: BackendMetrics,
}

/// The operator's runtime settings of a backend (`proxy backend set`). They live on
/// the backend, so a reload that keeps the backend keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    pub state: BackendState,
    /// A weight in force instead of the file's.
    pub weight: Option<u32>,
    /// The last change still in force.
    pub changed: Option<RuntimeChange>,
}

impl Control {
    /// Anything set at runtime?
    pub fn is_runtime(&self) -> bool {
        self.state != BackendState::Ready || self.weight.is_some()
    }

    /// The weight in force, given the file's.
    pub fn weight(&self, config_weight: u32) -> u32 {
        self.weight.unwrap_or(config_weight)
    }

    /// The weight it takes new connections with: none while drained or in maintenance.
    pub fn serving_weight(&self, config_weight: u32) -> u32 {
        match self.state {
            BackendState::Ready => self.weight(config_weight),
            BackendState::Drain | BackendState::Maint => 0,
        }
    }

    pub fn origins(&self) -> (SettingOrigin, SettingOrigin) {
        let origin = |runtime: bool| match runtime {
            true => SettingOrigin::Runtime,
            false => SettingOrigin::Config,
        };
        (
            origin(self.state != BackendState::Ready),
            origin(self.weight.is_some()),
        )
    }
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
    /// A backend of `pool`, up. `ramping`: it counts as just come up (slow start), as
    /// a backend a reload adds does; at start every backend begins at full weight.
    pub(super) fn new(
        pool: &Arc<str>,
        address: SocketAddr,
        metrics: &Metrics,
        ramping: bool,
    ) -> Backend {
        let metrics = metrics.backend(pool, &address.to_string());
        metrics.up.set(1);
        Backend {
            address,
            host: None,
            pool: pool.clone(),
            up: AtomicBool::new(true),
            streak: Mutex::new(Streak::default()),
            control: Mutex::new(Control::default()),
            came_up_ms: AtomicU64::new(if ramping { slow_start::now_ms() } else { 0 }),
            cut: Mutex::new(CancellationToken::new()),
            metrics,
        }
    }

    /// The backend as found under DNS name `host`.
    pub fn with_host(mut self, host: Option<&str>) -> Backend {
        self.host = host.map(Arc::from);
        self
    }

    /// The DNS name it was found under, if it came from DNS.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Connections currently open (or being opened) to this backend.
    pub fn active_connections(&self) -> i64 {
        self.metrics.active.get()
    }

    /// Why the last check or connect failed, if one ever did.
    pub fn last_failure(&self) -> Option<String> {
        let streak = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        streak.last_failure.clone()
    }

    /// The operator's settings.
    pub fn control(&self) -> Control {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the operator's settings; the previous ones. A backend that returns to
    /// `ready` starts its slow start again.
    pub fn set_control(&self, control: Control) -> Control {
        let mut current = self.control.lock().unwrap_or_else(|p| p.into_inner());
        if current.state != BackendState::Ready && control.state == BackendState::Ready {
            self.came_up_ms
                .store(slow_start::now_ms(), Ordering::Relaxed);
        }
        std::mem::replace(&mut *current, control)
    }

    /// In maintenance: no health checks.
    pub fn in_maintenance(&self) -> bool {
        self.control().state == BackendState::Maint
    }

    /// Thousandths of its weight slow start gives it at `now_ms` with `ramp`.
    pub fn ramp_permille(&self, now_ms: u64, ramp: std::time::Duration) -> u64 {
        slow_start::permille(self.came_up_ms.load(Ordering::Relaxed), now_ms, ramp)
    }

    /// Counts a connection being opened to this backend (from the moment it is
    /// picked, so concurrent picks see it); dropping the guard counts it closed.
    pub fn connection(self: &Arc<Self>) -> Connection {
        self.metrics.active.inc();
        let cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        Connection {
            cut: cut.child_token(),
            backend: self.clone(),
        }
    }

    /// Closes every open connection to this backend (`--close`); later ones are not
    /// affected.
    pub fn cut_connections(&self) {
        let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *cut, CancellationToken::new()).cancel();
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
            self.came_up_ms
                .store(slow_start::now_ms(), Ordering::Relaxed);
            self.up.store(true, Ordering::Relaxed);
            self.metrics.up.set(1);
            tracing::info!(
                pool = %self.pool, backend = %self.address, ?source, successes = streak.successes,
                "backend marked UP"
            );
        }
    }
}

/// One connection to a backend, counted in its active connections while it lives.
pub struct Connection {
    backend: Arc<Backend>,
    cut: CancellationToken,
}

impl Connection {
    /// Resolves when the operator closes the backend's connections.
    pub async fn cut(&self) {
        self.cut.cancelled().await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.backend.metrics.active.dec();
    }
}
