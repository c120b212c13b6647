//! `proxy`: a Layer-4 TCP/TLS edge load balancer with an XDP fast path.
//!
//! # Layout
//! - [`app`]: the composition root of `proxy run` (builds and wires every part).
//! - [`config`]: the TOML configuration, validation with file/line/key errors.
//! - [`datapath`]: listeners, connections, TLS, forwarding, backends and balancing.
//! - [`control`]: daemon lifecycle (start, reload, drain), subsystems, auto-blocking,
//!   the admin socket and `/metrics`, privilege dropping. Talks to the kernel half
//!   only through the traits in [`control::policy`].
//! - [`ebpf`]: the kernel half's loader (load, attach, pin, detach), typed map
//!   handles, and the XDP subsystem; the only code that knows map names.
//! - [`api`]: the typed admin API shared by the daemon and the CLI.
//! - [`metrics`]: the one Prometheus registry.
//! - [`cli`]: the command line and the admin commands.
//! - [`logging`]: `tracing` set-up (text or JSON), aya-log bridge, rate-limited logs.
pub mod app;
pub mod cli;
pub mod control;
pub mod datapath;
pub mod ebpf;
pub mod logging;
pub mod metrics;

/// The configuration schema and the admin API live in `proxy-schema`, shared with the
/// lab, the benchmarks and xtask; the daemon uses them under these names.
pub use proxy_schema::{api, config};

/// `proxy --version`: the version, the commit it was built from and how its XDP
/// program was built.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PROXY_GIT_COMMIT"),
    "; XDP program: ",
    env!("PROXY_EBPF_BUILT_ROUTE"),
    " route, ",
    env!("PROXY_EBPF_BUILT_COMPILER"),
    ")"
);
