//! `proxy`: a Layer-4 TCP/TLS edge load balancer with an XDP fast path.
//!
//! # Layout
//! - [`cli`]: command line (clap derive).
//! - [`config`]: the TOML configuration, validation with file/line/key errors.
//! - [`ebpf`]: the kernel half's loader (load, attach, pin, detach) and typed map
//!   handles; the only code that knows map names.
//! - [`logging`]: `tracing` set-up (text or JSON), aya-log bridge.
//! - [`commands`]: admin commands on the pinned maps (block/allow lists, stats).
//! - [`daemon`]: start-up, reload on SIGHUP, shutdown on SIGTERM/SIGINT.
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod ebpf;
pub mod logging;
