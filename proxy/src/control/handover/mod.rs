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
