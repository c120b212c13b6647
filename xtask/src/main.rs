//! Project tasks. `cargo xtask --help` lists them.
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
