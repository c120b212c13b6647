//! `proxy`: a Layer-4 TCP/TLS edge load balancer with an XDP fast path.
//!
//! # Layout
//! - [`cli`]: command line (clap derive); [`commands`]: admin commands on the pinned
//!   maps (block/allow lists, kernel counters, XDP detach/unpin).
//! - [`config`]: the TOML configuration, validation with file/line/key errors.
//! - [`daemon`]: start, SIGHUP reload, SIGTERM/SIGINT drain; subsystems (XDP, ...)
//!   follow the configuration through it.
//! - [`server`]: listeners (accept loop, limits); [`connection`]: one connection
//!   (TLS handshake → pick backend → connect → splice); [`splice`]: byte copying
//!   both ways with half-close; [`proxy_protocol`]: PROXY v1/v2 headers.
//! - [`tls`]: certificates, SNI resolver, rustls server configuration.
//! - [`balance`]: Maglev table and backend pools; [`health`]: active health checks.
//! - [`events`]: per-source events for auto-blocking; [`metrics`]: Prometheus metrics.
//! - [`ebpf`]: the kernel half's loader (load, attach, pin, detach) and typed map
//!   handles; the only code that knows map names.
//! - [`logging`]: `tracing` set-up (text or JSON), aya-log bridge.
//! - [`admin`]: admin socket (stats, top) and Prometheus endpoint; [`autoblock`]:
//!   automatic kernel blocks; [`privileges`]: capabilities dropped after start.
pub mod admin;
pub mod autoblock;
pub mod balance;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod ebpf;
pub mod events;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod privileges;
pub mod proxy_protocol;
pub mod server;
pub mod splice;
pub mod tls;
