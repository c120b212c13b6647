//! Project tasks. `cargo xtask --help` lists them.
mod bench_attack;
mod bench_client;
mod bench_fleet;
mod bench_fleet_policy;
mod bench_hosts;
mod bench_soak;
mod bench_syn;
mod bench_tls;
mod bench_upgrade;
mod bench_xdp;
mod fuzz;
mod idle_client;
mod modcycles;
mod package;
mod release;
mod setup;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Project tasks: setup, build-ebpf, test, bench"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (apt packages, eBPF toolchain, bpf-linker).
    Setup,
    /// Build the XDP program for bpfel-unknown-none and print the object's path.
    BuildEbpf,
    /// Run the fuzz targets (fuzz/) for a bounded time or number of runs each.
    Fuzz(fuzz::Args),
    /// Build the .deb (binary, systemd unit, example config, README, maintainer
    /// scripts that upgrade a running service through the take-over path).
    Package(package::Args),
    /// Formatting and lints, as CI runs them: `cargo fmt --check` and `cargo clippy
    /// --all-targets -D warnings` on the workspace and on the eBPF crate (checked for
    /// the host target: clippy does not run for bpfel, the lints are the same).
    Lint,
    /// Run the whole test suite (unit, BPF_PROG_TEST_RUN fixtures, namespace tests),
    /// then 10 s of each fuzz target and the short soak. Root.
    Test {
        /// Skip `setup` (when it is known to be done).
        #[arg(long)]
        no_setup: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The product at work on a built-in default: namespaces, nginx backends, TLS
    /// traffic, an attack, and what the operator sees. Root.
    Demo {
        /// Leave the namespaces and the proxy running (prints how to clean up).
        #[arg(long)]
        keep: bool,
        /// The fleet demo: a router doing ECMP, three nodes announcing a VIP over BGP.
        #[arg(long)]
        fleet: bool,
    },
    /// Benchmarks (not tests; root): `xdp`, `tls`.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// The benchmarks' load generator (started by `bench`, inside its namespace).
    #[command(hide = true)]
    BenchClient(bench_client::ClientArgs),
}

#[derive(Subcommand)]
enum Bench {
    /// ns/packet of the XDP program per fixture class vs a bare XDP_DROP (BPF_PROG_TEST_RUN).
    Xdp(bench_xdp::Args),
    /// proxy vs HAProxy vs NGINX: TLS handshakes, bulk, plain TCP, latency, memory.
    Tls(bench_tls::Args),
    /// Legitimate TLS transactions/s: no flood, flood + XDP, flood without XDP.
    Attack(bench_attack::Args),
    /// One daemon under long use: idle connections, reloads under load, mixed load.
    Soak(bench_soak::Args),
    /// Spoofed SYN floods: XDP cookie costs per packet, softirq per SYN, legit TLS tx/s.
    Syn(bench_syn::Args),
    /// Fleet routing (announce delay, drain and failover with a BIRD router doing ECMP)
    /// and fleet policy (etcd propagation, start with many entries, footprint).
    Fleet(bench_fleet::Args),
    /// Binary upgrades (take-over) next to plain restarts: hand-over time and failed
    /// connections under a loop of new connections.
    Upgrade(bench_upgrade::Args),
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::BuildEbpf => {
            setup::run()?;
            let root = workspace_root();
            let route = ebpf_build::choose_route().map_err(anyhow::Error::msg)?;
            eprintln!("[build-ebpf] route: {}", route.name());
            let status = ebpf_build::build_command(&root, route).status()?;
            anyhow::ensure!(status.success(), "eBPF build failed (see above)");
            println!("{}", ebpf_build::object_path(&root).display());
            Ok(())
        }
        Task::Lint => lint(),
        Task::Package(args) => package::run(args, &workspace_root()),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Test { no_setup, args } => {
            if !no_setup {
                setup::run()?;
            }
            let status = Command::new(env!("CARGO"))
                .args(["test", "--workspace"])
                .args(&args)
                .current_dir(workspace_root())
                .status()
                .context("running cargo test")?;
            anyhow::ensure!(status.success(), "tests failed");
            if args.is_empty() {
                // The bounded versions of the fuzzing and soak evidence.
                fuzz::run(fuzz::Args::short())?;
                bench_soak::run(bench_soak::Args::short(), &workspace_root())?;
                let (debug_proxy, _) = release::build_debug(&workspace_root())?;
                package::check(&workspace_root(), &debug_proxy)?;
            }
            Ok(())
        }
        Task::Demo { keep, fleet } => demo(keep, fleet),
        Task::Bench {
            which: Bench::Xdp(args),
        } => bench_xdp::run(args),
        Task::Bench {
            which: Bench::Tls(args),
        } => {
            setup::run()?;
            bench_tls::run(args, &workspace_root())
        }
        Task::Bench {
            which: Bench::Attack(args),
        } => {
            setup::run()?;
            bench_attack::run(args, &workspace_root())
        }
        Task::Bench {
            which: Bench::Fleet(args),
        } => {
            setup::run()?;
            bench_fleet::run(args, &workspace_root())
        }
        Task::Bench {
            which: Bench::Upgrade(args),
        } => {
            setup::run()?;
            bench_upgrade::run(args, &workspace_root())
        }
        Task::Bench {
            which: Bench::Syn(args),
        } => {
            setup::run()?;
            bench_syn::run(args, &workspace_root())
        }
        Task::Bench {
            which: Bench::Soak(args),
        } => {
            setup::run()?;
            bench_soak::run(args, &workspace_root())
        }
        Task::BenchClient(args) => bench_client::run(args),
    }
}

fn lint() -> anyhow::Result<()> {
    let root = workspace_root();
    let ebpf = root.join("proxy-ebpf");
    let host = "x86_64-unknown-linux-gnu";
    let steps: [(&str, &[&str], &PathBuf); 4] = [
        ("fmt", &["fmt", "--all", "--check"], &root),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &root,
        ),
        ("fmt (proxy-ebpf)", &["fmt", "--check"], &ebpf),
        (
            "clippy (proxy-ebpf)",
            &["clippy", "--target", host, "--", "-D", "warnings"],
            &ebpf,
        ),
    ];
    for (name, args, dir) in steps {
        println!("[lint] {name}");
        let status = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(dir)
            .status()
            .with_context(|| format!("running cargo {}", args.join(" ")))?;
        anyhow::ensure!(
            status.success(),
            "{name} failed: run `cargo {}` in {} and fix what it reports",
            args.join(" "),
            dir.display()
        );
    }
    modcycles::check(&root).map_err(anyhow::Error::msg)?;
    Ok(())
}

fn demo(keep: bool, fleet: bool) -> anyhow::Result<()> {
    setup::run()?;
    let root = workspace_root();
    let example = if fleet { "fleet_demo" } else { "demo" };
    eprintln!("[demo] building proxy (release)");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "proxy",
            "--bins",
            "--example",
            example,
        ])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "build failed");
    let mut demo = Command::new(root.join("target/release/examples").join(example));
    if keep {
        demo.arg("--keep");
    }
    let status = demo
        .env("PROXY_BIN", root.join("target/release/proxy"))
        .status()
        .context("running the demo")?;
    anyhow::ensure!(status.success(), "the demo failed");
    Ok(())
}
