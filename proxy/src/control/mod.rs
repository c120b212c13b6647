//! The control plane: everything that follows the configuration and answers the
//! operator, but moves no client bytes.
//!
//! - [`daemon`]: start, SIGHUP reload, SIGTERM/SIGINT drain of the data path.
//! - [`backends`]: runtime control of backends (`proxy backend set`), and what
//!   reloads and upgrades do with it.
//! - [`subsystem`]: the trait other parts implement to follow the configuration.
//! - [`policy`]: what the control plane needs from the kernel half, as traits (so
//!   this module never imports `ebpf`, and tests can fake the kernel).
//! - [`autoblock`]: blocks abusive sources in the kernel.
//! - [`admin`]: the admin socket (typed [`crate::api`]) and the `/metrics` endpoint.
//! - [`privileges`]: drops capabilities after start; [`memory`]: returns freed
//!   memory after a wave of connections.
//! - [`fleet`]: VIPs over BGP; [`fleet_policy`]: shared lists through etcd;
//!   [`steering`]: fleet membership and the forwarding table connection steering
//!   uses (etcd too).

pub mod admin;
pub mod autoblock;
pub mod backends;
pub mod daemon;
pub mod discovery;
pub mod fleet;
pub mod fleet_policy;
pub mod handover;
pub mod memory;
pub mod policy;
pub mod privileges;
pub mod steering;
pub mod subsystem;
pub mod tls_files;
