//! `proxy`: a Layer-4 TCP/TLS edge load balancer with an XDP fast path.
//!
//! # Layout
//! - [`cli`]: command line (clap derive).
//! - [`config`]: the TOML configuration, validation with file/line/key errors.
//! - [`ebpf`]: the kernel half's loader (load, attach, pin, detach) and typed map
//!   handles; the only code that knows map names.
//! - [`logging`]: `tracing` set-up (text or JSON), aya-log bridge.
//!
//! The userspace data path (docs/DATAPATH.md):
//! - [`daemon`]: start, SIGHUP reload, SIGTERM/SIGINT drain; the `Subsystem` hook.
//! - [`server`]: listening sockets, accept loop, connection limits.
//! - [`connection`]: one connection: TLS handshake → backend → PROXY header → forward.
//! - [`splice`]: moving bytes both ways (copy, splice(2)), half-close, idle timeout.
//! - [`tls`]: certificates, SNI resolver, rustls `ServerConfig`.
//! - [`balance`]: the Maglev table and the backend pools; [`health`]: active checks.
//! - [`proxy_protocol`]: PROXY v1/v2 headers.
//! - [`metrics`]: every metric, one Prometheus registry.
//! - [`events`]: per-source events for automatic blocking.
pub mod balance;
pub mod cli;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod ebpf;
pub mod events;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod proxy_protocol;
pub mod server;
pub mod splice;
pub mod tls;
