//! The local admin interface: the admin socket answering the typed requests of
//! [`crate::api`] (`proxy stats`, `proxy top`), and the HTTP `/metrics` endpoint.
//!
//! - [`server`]: the Unix socket (bind, peer check, one request per connection).
//! - [`http`]: `/metrics` from the one registry, the `/status` page and its JSON.
//! - [`client`]: the CLI's side of the socket.

pub mod client;
pub mod http;
pub mod server;

use std::sync::Arc;

use super::daemon::Daemon;
use super::policy::KernelView;
use crate::api::{Request, Response, Stats};
use crate::config::admin::AdminSection;

const NO_XDP: &str = "no XDP program runs in this daemon: nothing is dropped in the kernel";

/// What the admin interface reads from.
pub struct Admin {
    pub daemon: Arc<Daemon>,
    pub kernel: Arc<dyn KernelView>,
    pub fleet: Arc<crate::control::fleet::Fleet>,
}

impl Admin {
    pub async fn answer(&self, request: Request) -> Response {
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
        }
    }

    async fn stats(&self) -> Stats {
        Stats {
            xdp: self.kernel.xdp_stats(),
            fleet: self.fleet.stats(),
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
) -> anyhow::Result<server::SocketGuard> {
    let guard = server::start(&section.socket, admin.clone()).await?;
    if let Some(addr) = section.metrics {
        http::start(addr, admin).await?;
    }
    Ok(guard)
}
