//! `proxy`: a Layer-4 TCP/TLS edge load balancer with an XDP fast path.
//!
//! # Layout
//! - [`cli`]: command line (clap derive).
//! - [`config`]: the TOML configuration, validation with file/line/key errors.
//! - [`ebpf`]: the kernel half's loader (load, attach, pin, detach) and typed map
//!   handles; the only code that knows map names.
//! - [`logging`]: `tracing` set-up (text or JSON), aya-log bridge.
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
