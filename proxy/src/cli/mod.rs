//! The command line: `proxy run`, `proxy check-config`, and admin commands.
//!
//! - this file: the clap definitions and the dispatch of admin commands;
//! - [`lists`]: block/allow list edits on the pins (`--fleet`: through the daemon);
//!   [`stats`]: `stats` and `top` through the admin socket; [`fleet`]: `fleet
//!   status`; [`backends`]: `backend list|set` (runtime control); [`xdp`]:
//!   detach/unpin.

pub mod backends;
pub mod docs;
pub mod fleet;
pub mod lists;
pub mod stats;
pub mod upgrade;
pub mod xdp;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::api::List;
use crate::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "proxy",
    version = crate::VERSION,
    about = "Layer-4 TCP/TLS edge load balancer with an XDP fast path"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PROXY_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Take over from the daemon running on this configuration's admin socket:
        /// its listening sockets and XDP attachments; it drains and exits once this
        /// process serves (see `proxy upgrade`).
        #[arg(long)]
        takeover: bool,
        /// With --takeover: once serving, print one line and write the log where the
        /// old process wrote it (`proxy upgrade` uses this).
        #[arg(long, requires = "takeover", hide = true)]
        adopt_stdio: bool,
    },
    /// Zero-downtime binary upgrade: starts this binary with `run --takeover` on the
    /// running daemon's configuration and reports when it serves (the old process
    /// then drains and exits). Needs the privileges `proxy run` needs (root, or
    /// systemd's `ExecReload`).
    Upgrade {
        /// The running daemon's configuration file.
        #[arg(long, short, default_value = "/etc/proxy/proxy.toml")]
        config: PathBuf,
        /// The binary to start (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (non-zero with the reason if invalid).
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Kernel blocklist: sources dropped by XDP before the stack sees them.
    Block {
        #[command(subcommand)]
        action: ListAction,
    },
    /// Kernel allowlist: sources that bypass the blocklist and rate limits.
    Allow {
        #[command(subcommand)]
        action: ListAction,
    },
    /// Everything at a glance: kernel verdicts per interface and reason, connections,
    /// TLS handshakes, backends and their health, auto-blocks. Without a reachable
    /// daemon, the kernel counters from the pinned maps.
    Stats {
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// The sources dropped most in the kernel (from the sampled drop events).
    Top {
        /// How many sources to show.
        #[arg(short, default_value_t = 20)]
        n: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Backends under the operator's hand: list them with their runtime state, drain
    /// one, put it in maintenance or back, change its weight (no reload needed).
    Backend {
        #[command(subcommand)]
        action: BackendAction,
    },
    /// The fleet policy store ([fleet.policy]) as this node sees it.
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Manage the XDP attachment left behind by `xdp.stay_attached`.
    Xdp {
        #[command(subcommand)]
        action: XdpAction,
    },
    /// Write the manual pages (proxy.1 and one per subcommand) into a directory.
    Man {
        /// Where the pages go (e.g. /usr/share/man/man1).
        dir: PathBuf,
    },
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Pin directory of the daemon's maps (xdp.pin_path).
    #[arg(long, default_value = "/sys/fs/bpf/proxy", env = "PROXY_PIN_PATH")]
    pub pin_path: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// The running daemon's admin socket (admin.socket).
    #[arg(
        long,
        default_value = "/run/proxy/admin.sock",
        env = "PROXY_ADMIN_SOCKET"
    )]
    pub socket: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ListAction {
    /// Add (or replace) an entry.
    Add {
        /// Address or CIDR: 192.0.2.7, 10.0.0.0/8, 2001:db8::/32.
        #[arg(value_parser = parse_cidr)]
        cidr: IpNet,
        /// Remove the entry after this long (e.g. 30s, 10m, 1h, 1day); default: permanent.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Note kept with the entry (shown by `list`).
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Share it with every node of the fleet through the daemon's [fleet.policy]
        /// store (the ttl then applies fleet-wide). Default: this node only.
        #[arg(long)]
        fleet: bool,
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Remove an entry (the exact CIDR that was added). Local entries and fleet
    /// entries are apart: without --fleet only a local one is removed.
    Del {
        #[arg(value_parser = parse_cidr)]
        cidr: IpNet,
        /// Remove the fleet entry, on every node.
        #[arg(long)]
        fleet: bool,
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// List the entries.
    List(OutputArgs),
}

#[derive(Subcommand, Debug)]
pub enum BackendAction {
    /// Every pool's backends: state and weight with their origin (config or
    /// runtime), health, open connections, slow start.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Change one backend at runtime; the change lasts across reloads (SIGHUP) and
    /// upgrades while the backend stays in the file. Logged with who made it.
    Set {
        /// The pool's name.
        pool: String,
        /// The backend's address as in the file (`10.0.0.1:8080`, `[fd00::1]:8080`).
        #[arg(value_parser = parse_backend_address)]
        address: std::net::SocketAddr,
        #[command(subcommand)]
        setting: BackendSetting,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackendSetting {
    /// `ready`: takes new connections; `drain`: none, open ones continue; `maint`:
    /// none, and no health checks.
    State {
        #[arg(value_enum)]
        state: StateArg,
        /// Also close its open connections (drain and maint only).
        #[arg(long)]
        close: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Its weight, 0 to 1000 as in the file (0: no new connections); the file's own
    /// value returns it to the file.
    Weight {
        #[arg(value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::config::MAX_WEIGHT)))]
        weight: u32,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// `proxy backend set ... state STATE`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateArg {
    Ready,
    Drain,
    Maint,
}

#[derive(Subcommand, Debug)]
pub enum FleetAction {
    /// Connection to etcd, entries by origin node, applied revision and lag.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum XdpAction {
    /// Detach pinned attachments (after a daemon ran with xdp.stay_attached).
    Detach(OutputArgs),
    /// Remove every pin (maps and links): the next start begins with empty lists.
    Unpin(OutputArgs),
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    crate::config::cidr::parse(s)
}

fn parse_backend_address(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s:?} is not a backend address: write it as in the file, ip:port (10.0.0.1:8080, [fd00::1]:8080)")
    })
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = crate::config::duration::parse(s)?;
    if d.is_zero() {
        return Err(
            "a ttl of 0 would expire at once; leave --ttl out for a permanent entry".into(),
        );
    }
    Ok(d)
}

/// Runs an admin command (every command but `run`).
pub fn run_admin(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { .. } => {
            anyhow::bail!("`proxy run` starts the daemon; it is not an admin command")
        }
        Command::Upgrade { config, binary } => upgrade::upgrade_command(&config, binary),
        Command::CheckConfig { file } => {
            let config = crate::control::daemon::check_config(&file)?;
            println!("{}: OK", file.display());
            let autoblock = config
                .autoblock
                .as_ref()
                .map_or_else(|| "off (no [autoblock] section)".into(), |a| a.describe());
            println!("auto-blocking: {autoblock}");
            if let Some(p) = config.fleet_policy() {
                println!(
                    "fleet policy: node {} shares entries under {} through etcd at {}",
                    p.node_name(),
                    p.key_prefix(),
                    p.endpoints.join(", ")
                );
            }
            Ok(())
        }
        Command::Block { action } => lists::list_command(List::Block, action),
        Command::Allow { action } => lists::list_command(List::Allow, action),
        Command::Stats { out, daemon } => stats::stats_command(&out, &daemon),
        Command::Top { n, json, daemon } => stats::top_command(n, json, &daemon),
        Command::Backend { action } => backends::backend_command(action),
        Command::Fleet { action } => match action {
            FleetAction::Status { json, daemon } => fleet::status_command(json, &daemon),
        },
        Command::Xdp { action } => xdp::xdp_command(action),
        Command::Man { dir } => {
            for page in docs::man(&dir)? {
                println!("{}", dir.join(page).display());
            }
            Ok(())
        }
        Command::Completions { shell } => {
            use std::io::Write;
            std::io::stdout().write_all(&docs::completions(shell))?;
            Ok(())
        }
    }
}
