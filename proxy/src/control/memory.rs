//! Gives freed memory back to the system after a wave of connections ends. glibc's
//! allocator keeps freed pages in its arenas, so without this the RSS of a daemon
//! that once held 9,000 connections stays at its peak forever.

use std::sync::Arc;
use std::time::Duration;

use super::daemon::Daemon;

/// How often open connections are compared with their peak.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until the process ends: trims when open connections fell to under half of
/// their peak (the high-water mark of the data path, not a sample) since the last
/// trim, and by at least `MIN_DROP`.
pub async fn trim_after_waves(daemon: Arc<Daemon>) {
    const MIN_DROP: u32 = 100;
    let mut peak = 0u32;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        peak = peak.max(daemon.take_peak_connections());
        let open = daemon.open_connections();
        if peak >= MIN_DROP && open < peak / 2 && peak - open >= MIN_DROP {
            release_free_memory();
            tracing::debug!(peak, open, "returned freed memory to the system");
            peak = open;
        }
    }
}

fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; 0 = keep no pad.
    unsafe { libc::malloc_trim(0) };
}
