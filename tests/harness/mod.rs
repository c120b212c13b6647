//! Test harness shared by the integration tests: network namespaces wired to a
//! bridge, processes that are stopped (by PID) when dropped, small waiting helpers.
//! Every test builds its own namespaces (names carry the test's PID and a counter)
//! and removes them on drop, even when the test fails.
#![allow(dead_code)]

pub mod attack;
pub mod certs;
pub mod inside;
pub mod lab;
pub mod netns;
pub mod nginx;
pub mod packets;
pub mod proxyd;

pub use netns::{Netns, Proc, Topology};

use std::time::{Duration, Instant};

/// A bpffs directory for a test's pinned maps, removed when dropped.
pub struct PinDir(pub std::path::PathBuf);

impl PinDir {
    pub fn new(tag: &str) -> PinDir {
        PinDir(std::path::PathBuf::from(format!(
            "/sys/fs/bpf/pxt-{}-{tag}",
            std::process::id()
        )))
    }

    pub fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// These tests create namespaces and load XDP programs: they need root.
pub fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test creates network namespaces and loads XDP programs: run it as root \
         (CI runs as root; locally: sudo -E cargo test)"
    );
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
