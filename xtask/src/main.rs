//! Project tasks. `cargo xtask --help` lists them.
//!
//! Thin on purpose: no async runtime, no TLS stack, so `cargo xtask setup` (the
//! first command on a fresh machine) builds in seconds and starts installing. The
//! benchmarks and their load generator are the `bench` crate; `cargo xtask bench`
//! builds it with `proxy` (release) and runs it.
mod fuzz;
mod modcycles;
mod package;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Project tasks: setup, build-ebpf, lint, test, fuzz, package, demo, bench"
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
    /// then 10 s of each fuzz target, the short soak and the package check. Root.
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
    /// Benchmarks (root): builds `proxy` and `bench` (release) and runs
    /// `bench ARGS...`; `cargo xtask bench --help` lists them (tls, xdp, attack,
    /// syn, fleet, upgrade, soak, balance).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::BuildEbpf => {
            setup::run()?;
            let route = ebpf_build::choose_route().map_err(anyhow::Error::msg)?;
            eprintln!("[build-ebpf] route: {}", route.name());
            let status = ebpf_build::build_command(&root, route).status()?;
            anyhow::ensure!(status.success(), "eBPF build failed (see above)");
            println!("{}", ebpf_build::object_path(&root).display());
            Ok(())
        }
        Task::Lint => lint(),
        Task::Package(args) => package::run(args, &root),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Test { no_setup, args } => test(no_setup, &args, &root),
        Task::Demo { keep, fleet } => demo(keep, fleet),
        Task::Bench { args } => bench(&args, &root),
    }
}

/// `cargo test` on the workspace; with no extra arguments also the bounded fuzzing,
/// the short soak and the package check.
fn test(no_setup: bool, args: &[String], root: &Path) -> anyhow::Result<()> {
    if !no_setup {
        setup::run()?;
    }
    cargo(root, &["test", "--workspace"], args).context("tests failed")?;
    if args.is_empty() {
        fuzz::run(fuzz::Args::short())?;
        // The soak's bounded version, on the debug builds the tests already made.
        cargo(
            root,
            &["build", "--quiet", "-p", "proxy", "-p", "bench"],
            &[],
        )?;
        run(root.join("target/debug/bench"), &["soak", "--short"])
            .context("the short soak failed")?;
        package::check(root, &root.join("target/debug/proxy"))?;
    }
    Ok(())
}

/// `cargo xtask bench ARGS`: setup, a release build of `proxy` and `bench`, then
/// `bench ARGS` (help needs no build of the product).
fn bench(args: &[String], root: &Path) -> anyhow::Result<()> {
    let help = args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h");
    if !help {
        setup::run()?;
    }
    eprintln!("[bench] building proxy and bench (release)...");
    let packages = if help {
        &["-p", "bench"][..]
    } else {
        &["-p", "proxy", "-p", "bench"]
    };
    let build = [&["build", "--release", "--quiet"][..], packages].concat();
    cargo(root, &build, &[])?;
    let args: Vec<&str> = match args.is_empty() {
        true => vec!["--help"],
        false => args.iter().map(String::as_str).collect(),
    };
    run(root.join("target/release/bench"), &args)
}

/// Runs `cargo FIXED EXTRA` in `root`; an error when it fails.
fn cargo(root: &Path, fixed: &[&str], extra: &[String]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(fixed)
        .args(extra)
        .current_dir(root)
        .status()
        .with_context(|| format!("running cargo {}", fixed.join(" ")))?;
    anyhow::ensure!(status.success(), "cargo {} failed", fixed.join(" "));
    Ok(())
}

/// Runs `program ARGS`; an error when it fails.
fn run(program: PathBuf, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(&program)
        .args(args)
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    anyhow::ensure!(status.success(), "{} failed", program.display());
    Ok(())
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
