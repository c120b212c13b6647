//! A part of the product that follows the configuration besides the data path
//! (the XDP program, the auto-blocker, privilege dropping...).

use std::sync::Arc;

use crate::config::Config;

pub trait Subsystem: Send + Sync {
    fn name(&self) -> &str;
    /// Called at start and on each reload, after the data path is prepared and before
    /// it switches over. An error rejects the new configuration (at start: the daemon
    /// exits; on reload: the old configuration keeps serving).
    fn apply(&self, config: &Arc<Config>) -> anyhow::Result<()>;
    /// Called once on SIGTERM/SIGINT, before the daemon stops accepting: how long to
    /// wait before it does (fleet routing withdraws its routes here).
    fn before_drain(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Called once when the daemon stops.
    fn stop(&self) {}
}

impl<T: Subsystem> Subsystem for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn apply(&self, config: &Arc<Config>) -> anyhow::Result<()> {
        (**self).apply(config)
    }
    fn before_drain(&self) -> std::time::Duration {
        (**self).before_drain()
    }
    fn stop(&self) {
        (**self).stop()
    }
}
