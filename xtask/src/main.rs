//! Project tasks. `cargo xtask --help` lists them.
mod bench_client;
mod bench_tls;
mod ebpf_build;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the XDP program for bpfel-unknown-none.
    BuildEbpf,
    /// Benchmarks (root; see docs/DATAPATH.md).
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// The benchmarks' load generator (started by `bench`, inside its namespace).
    #[command(hide = true)]
    BenchClient(bench_client::ClientArgs),
}

#[derive(Subcommand)]
enum Bench {
    /// proxy vs HAProxy vs NGINX: TLS handshakes, bulk, plain TCP, latency, memory.
    Tls(bench_tls::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Bench {
            what: Bench::Tls(args),
        } => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_path_buf();
            bench_tls::run(args, &root)
        }
        Task::BenchClient(args) => bench_client::run(args),
        Task::BuildEbpf => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_path_buf();
            let route = ebpf_build::choose_route().map_err(anyhow::Error::msg)?;
            let status = ebpf_build::build_command(&root, route).status()?;
            anyhow::ensure!(status.success(), "eBPF build failed");
            println!("{}", ebpf_build::object_path(&root).display());
            Ok(())
        }
    }
}
