//! A part of the product that follows the configuration besides the data path
//! (the XDP program, the auto-blocker, BGP, fleet policy, privilege dropping...).
//!
//! A configuration is applied in two steps, all parts together: every part
//! *prepares* (checks and builds what the configuration needs, with no effect
//! anyone can see), and only when every part prepared does each one *commit*. So a
//! configuration one part rejects changes nothing anywhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::Config;

/// Work a subsystem does before the drain goes on.
pub type DrainStep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a part prepared, made current by calling it. An error from a commit is a
/// failure that prepare could not foresee (the kernel or a child process refusing
/// after the checks passed); at start it stops the daemon.
pub type Commit<'a> = Box<dyn FnOnce() -> anyhow::Result<()> + Send + 'a>;

pub trait Subsystem: Send + Sync {
    fn name(&self) -> &str;
    /// Called at start and on each reload, after the data path is prepared: checks
    /// and builds what `config` needs without any visible effect. An error rejects
    /// the configuration (at start: the daemon exits; on reload: the old
    /// configuration keeps serving, here and in every other part).
    fn prepare<'a>(&'a self, config: &Arc<Config>) -> anyhow::Result<Commit<'a>>;
    /// Called once on SIGTERM/SIGINT, first, in the order subsystems were added:
    /// what must be done before anything else of the drain (connection steering moves
    /// this node's rows away before its routes are withdrawn).
    fn begin_drain(&self) -> DrainStep<'_> {
        Box::pin(async {})
    }
    /// Called once on SIGTERM/SIGINT, after `begin_drain`, before the daemon stops
    /// accepting: how long to wait before it does (fleet routing withdraws its routes
    /// here).
    fn before_drain(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Called once when the daemon stops.
    fn stop(&self) {}
    /// An upgrade starts: make what the successor takes over available (the XDP
    /// program pins its links). An error refuses the upgrade.
    fn prepare_handover(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The upgrade failed before the successor committed: serve as before.
    fn abort_handover(&self) {}
    /// The successor committed: on stop, leave what it took over (attachments,
    /// sysctls) as it is.
    fn hand_over(&self) {}
    /// Sysctls this part changed, with the values to restore (the successor restores
    /// them when it exits).
    fn handover_sysctls(&self) -> Vec<(std::path::PathBuf, String)> {
        Vec::new()
    }
    /// In the successor, after its commit.
    fn finish_takeover(&self) {}
}

impl<T: Subsystem> Subsystem for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn prepare<'a>(&'a self, config: &Arc<Config>) -> anyhow::Result<Commit<'a>> {
        (**self).prepare(config)
    }
    fn begin_drain(&self) -> DrainStep<'_> {
        (**self).begin_drain()
    }
    fn before_drain(&self) -> std::time::Duration {
        (**self).before_drain()
    }
    fn stop(&self) {
        (**self).stop()
    }
    fn prepare_handover(&self) -> anyhow::Result<()> {
        (**self).prepare_handover()
    }
    fn abort_handover(&self) {
        (**self).abort_handover()
    }
    fn hand_over(&self) {
        (**self).hand_over()
    }
    fn handover_sysctls(&self) -> Vec<(std::path::PathBuf, String)> {
        (**self).handover_sysctls()
    }
    fn finish_takeover(&self) {
        (**self).finish_takeover()
    }
}
