//! Benchmarks, not tests (root): measured figures next to HAProxy and NGINX in the
//! same run. Started by `cargo xtask bench ...`, which installs what they need and
//! builds this binary with `proxy` (release); `bench --help` lists them.
//!
//! # Layout
//! - one module per benchmark: [`tls`] (proxy vs HAProxy vs NGINX), [`xdp`],
//!   [`attack`], [`syn`] (+ [`syn_pair`]), [`fleet`] (+ [`fleet_policy`], [`fleet_steering`]), [`upgrade`],
//!   [`soak`], [`balance`] (the balancing algorithms, paired against Maglev);
//! - [`client`]: the load generator (`bench client ...`, run inside a namespace),
//!   [`results`]: what it reports, typed for both sides;
//!   [`idle_client`]: its idle mode as a handle;
//! - [`hosts`]: the benchmarks' shared lab; [`binaries`]: which binaries run;
//!   [`flood`]: softirq time and packet counts under a flood.
mod attack;
mod balance;
mod binaries;
mod client;
mod cpu;
mod fleet;
mod fleet_policy;
mod fleet_steering;
mod flood;
mod hosts;
mod idle_client;
mod results;
mod soak;
mod syn;
mod syn_pair;
mod tls;
mod upgrade;
mod xdp;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Benchmarks (root; start them with `cargo xtask bench ...`)"
)]
struct Cli {
    #[command(subcommand)]
    which: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// ns/packet of the XDP program per fixture class vs a bare XDP_DROP (BPF_PROG_TEST_RUN).
    Xdp(xdp::Args),
    /// proxy vs HAProxy vs NGINX: TLS handshakes, bulk, plain TCP, latency, memory.
    Tls(tls::Args),
    /// Legitimate TLS transactions/s: no flood, flood + XDP, flood without XDP.
    Attack(attack::Args),
    /// One daemon under long use: idle connections, reloads under load, mixed load.
    Soak(soak::Args),
    /// Spoofed SYN floods: XDP cookie costs per packet, softirq per SYN, legit TLS tx/s.
    Syn(syn::Args),
    /// Fleet routing (announce delay, drain and failover with a BIRD router doing ECMP),
    /// connection steering (broken connections per fleet event, on vs off; XDP costs;
    /// latency; rows moved) and fleet policy (etcd propagation, start, footprint).
    Fleet(fleet::Args),
    /// Binary upgrades (take-over) next to plain restarts: hand-over time and failed
    /// connections under a loop of new connections.
    Upgrade(upgrade::Args),
    /// What each balancing algorithm costs per new connection (ns per pick, LB CPU per
    /// proxied connection), paired against Maglev in the same run.
    Balance(balance::Args),
    /// The load generator (started by the benchmarks, inside their namespaces).
    #[command(hide = true)]
    Client(client::ClientArgs),
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().which {
        Bench::Xdp(args) => xdp::run(args),
        Bench::Tls(args) => tls::run(args),
        Bench::Attack(args) => attack::run(args),
        Bench::Soak(args) => soak::run(args),
        Bench::Syn(args) => syn::run(args, &root),
        Bench::Fleet(args) => fleet::run(args),
        Bench::Upgrade(args) => upgrade::run(args),
        Bench::Balance(args) => balance::run(args, &root),
        Bench::Client(args) => client::run(args),
    }
}
