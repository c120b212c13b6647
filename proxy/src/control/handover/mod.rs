//! Zero-downtime binary upgrade. A new process started with `proxy run --takeover`
//! asks the running daemon over its admin socket for its listening sockets; the
//! daemon answers with an [`Offer`] (with the backends' runtime settings) and the
//! sockets themselves (SCM_RIGHTS: the same sockets, so nothing waiting in an accept
//! backlog is lost), its admin and metrics sockets, and its stdout/stderr. The new process validates and starts on them (the
//! XDP program replaces the old one in the same bpf_link: no packet sees none), then
//! says `commit`; only then the old process stops accepting, drains and exits. If
//! the new process fails or dies before `commit`, the old one takes its XDP
//! attachment back and keeps serving.
//!
//! - this file: the protocol and the state both sides share;
//! - [`offer`]: the running daemon's side; [`takeover`]: the new process's side;
//! - [`fds`]: descriptors over the socket.

pub mod fds;
pub mod offer;
pub mod takeover;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// What the running daemon hands over; the descriptors follow in this order:
/// the listeners, the admin socket, the metrics socket (if any), stdout, stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    pub pid: u32,
    pub listeners: Vec<OfferedListener>,
    pub metrics: Option<SocketAddr>,
    /// Sysctls the old process changed, with the values to restore on exit.
    pub sysctls: Vec<(PathBuf, String)>,
    /// Backends' runtime settings (`proxy backend set`), kept by the new process for
    /// the backends its configuration has.
    #[serde(default)]
    pub backends: Vec<crate::api::BackendRuntime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferedListener {
    pub name: String,
    pub bind: SocketAddr,
}

/// The new process's line once it serves: the old one may stop.
pub const COMMIT: &str = "commit";
/// The old process's answer to it.
pub const STOPPING: &str = "stopping";

/// The daemon's own sockets and where it stands in a hand-over.
#[derive(Default)]
pub struct Handover {
    pub admin: Mutex<Option<OwnedFd>>,
    pub metrics: Mutex<Option<(SocketAddr, OwnedFd)>>,
    /// The process this one took over from (refuses an upgrade while it drains).
    pub predecessor: Mutex<Option<u32>>,
    /// A hand-over is being offered (a second request is refused).
    pub offering: std::sync::atomic::AtomicBool,
    /// Cancelled once the successor committed: the admin endpoints stop accepting
    /// (the successor answers from now on) and the socket file stays.
    pub handed_over: CancellationToken,
    /// This process may remove the admin socket file when it stops: it bound the
    /// socket, or took it over and committed.
    pub owns_socket: std::sync::atomic::AtomicBool,
}

impl Handover {
    pub fn is_handed_over(&self) -> bool {
        self.handed_over.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackendRuntime, BackendState, RuntimeChange};

    /// docs/known-limits.md promises that an upgrade carries the runtime settings of at least
    /// 300 backends (long names and IPv6 addresses) in its one message.
    #[test]
    fn three_hundred_runtime_settings_fit_in_one_offer() {
        let backend = |i: u16| BackendRuntime {
            pool: "a-pool-name-of-24-chars".into(),
            address: SocketAddr::new(format!("2001:db8:ffff:ffff::{i:x}").parse().unwrap(), 65000),
            state: BackendState::Maint,
            weight: Some(1000),
            changed: Some(RuntimeChange {
                by: "uid 4294967295 pid 4194304".into(),
                at_unix: 1_800_000_000,
            }),
        };
        let offer = Offer {
            pid: 4_194_304,
            listeners: Vec::new(),
            metrics: None,
            sysctls: Vec::new(),
            backends: (0..300).map(backend).collect(),
        };
        let bytes = serde_json::to_vec(&offer::Reply::Offer(offer)).unwrap();
        assert!(bytes.len() <= fds::MAX_MESSAGE, "{} bytes", bytes.len());
    }
}
