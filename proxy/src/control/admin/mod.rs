//! The local admin interface: the admin socket answering the typed requests of
//! [`crate::api`] (`proxy stats`, `proxy top`, `proxy backend ...`), and the HTTP
//! `/metrics` endpoint.
//!
//! - [`server`]: the Unix socket (bind, peer check, one request per connection).
//! - [`http`]: `/metrics` from the one registry, the `/status` page and its JSON.
//! - [`client`]: the CLI's side of the socket.

pub mod client;
pub mod http;
pub mod server;

use std::sync::Arc;

use super::backends::Caller;
use super::daemon::Daemon;
use super::fleet_policy::FleetPolicy;
use super::fleet_policy::store::Source;
use super::handover::Handover;
use super::policy::KernelView;
use super::steering::Steering;
use crate::api::{Request, Response, Stats};
use crate::config::admin::AdminSection;

const NO_XDP: &str = "no XDP program runs in this daemon: nothing is dropped in the kernel";
const NO_FLEET: &str =
    "no [fleet.policy] section in this daemon's configuration: nothing is shared";

/// What the admin interface reads from.
pub struct Admin {
    pub daemon: Arc<Daemon>,
    pub kernel: Arc<dyn KernelView>,
    pub fleet: Arc<crate::control::fleet::Fleet>,
    pub fleet_policy: Arc<FleetPolicy>,
    pub steering: Arc<Steering>,
    pub handover: Arc<Handover>,
    pub config_path: std::path::PathBuf,
}

/// Admin sockets handed over by a predecessor (used instead of binding).
#[derive(Default)]
pub struct Sockets {
    pub unix: Option<std::os::unix::net::UnixListener>,
    pub metrics: Option<(std::net::SocketAddr, std::net::TcpListener)>,
}

impl Admin {
    /// Answers `request`; `caller`: the admin socket's peer (`None` over HTTP, which
    /// is read-only).
    pub async fn answer(&self, request: Request, caller: Option<Caller>) -> Response {
        match request {
            Request::Stats => Response::Stats(Box::new(self.stats().await)),
            Request::Top { n } => match self.kernel.top_sources(n.clamp(1, 1000)) {
                Some(top) => Response::Top(top),
                None => Response::Error(NO_XDP.into()),
            },
            Request::Blocklist => match self.kernel.blocklist() {
                Some(entries) => Response::Blocklist(entries),
                None => Response::Error(NO_XDP.into()),
            },
            Request::FleetAdd {
                list,
                cidr,
                ttl_ms,
                reason,
            } => {
                let ttl = ttl_ms.map(std::time::Duration::from_millis);
                match self
                    .fleet_policy
                    .publish(list, cidr, ttl, &reason, Source::Manual)
                {
                    Ok(()) => Response::Done(format!("shared {cidr} on the fleet {}", list.noun())),
                    Err(e) => Response::Error(format!("{e:#}")),
                }
            }
            Request::FleetDel { list, cidr } => match self.fleet_policy.unpublish(list, cidr) {
                Ok(()) => Response::Done(format!("removed {cidr} from the fleet {}", list.noun())),
                Err(e) => Response::Error(format!("{e:#}")),
            },
            Request::FleetStatus => match self.fleet_status() {
                Some(status) => Response::FleetStatus(Box::new(status)),
                None => Response::Error(NO_FLEET.into()),
            },
            Request::Handover { .. } => {
                Response::Error("a hand-over goes over the admin socket only".into())
            }
            Request::Backends => Response::Backends(self.daemon.pools().await),
            Request::SetBackend {
                pool,
                address,
                change,
            } => {
                let Some(caller) = caller else {
                    return Response::Error(
                        "runtime changes go through the admin socket (proxy backend set)".into(),
                    );
                };
                match self
                    .daemon
                    .set_backend(&pool, address, change, &caller)
                    .await
                {
                    Ok(done) => Response::Done(done),
                    Err(e) => Response::Error(e),
                }
            }
        }
    }

    /// The fleet store's status, with connection steering's.
    fn fleet_status(&self) -> Option<crate::api::FleetPolicyStatus> {
        let mut status = self.fleet_policy.status()?;
        status.steering = self.steering.status();
        Some(status)
    }

    async fn stats(&self) -> Stats {
        Stats {
            xdp: self.kernel.xdp_stats(),
            fleet: self.fleet.stats(),
            fleet_policy: self.fleet_status(),
            autoblock: self.daemon.metrics().autoblock().stats(),
            ..self.daemon.stats().await
        }
    }
}

/// Starts the socket and, if configured, the metrics endpoint. Drop the guard to
/// remove the socket file.
pub async fn start(
    section: &AdminSection,
    admin: Arc<Admin>,
    sockets: Sockets,
) -> anyhow::Result<server::SocketGuard> {
    let guard = server::start(&section.socket, admin.clone(), sockets.unix).await?;
    if let Some(addr) = section.metrics {
        let inherited = sockets.metrics.filter(|(a, _)| *a == addr).map(|(_, s)| s);
        http::start(addr, admin, inherited).await?;
    }
    Ok(guard)
}
