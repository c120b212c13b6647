//! The command line: `proxy run`, `proxy check-config`, and admin commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "proxy",
    version,
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
    },
    /// Validate a configuration file and exit (non-zero with the reason if invalid).
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
}
