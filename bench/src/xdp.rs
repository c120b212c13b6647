//! `cargo xtask bench xdp`: the XDP program's cost per packet class next to a bare
//! XDP_DROP, via BPF_PROG_TEST_RUN (proxy/benches/xdp.rs does the measuring).

use std::process::Command;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Runs per measurement (the kernel reports the mean ns per run).
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Measurements per packet class (medians are reported).
    #[arg(long, default_value_t = 15)]
    rounds: u32,
    /// CPU to run on (BPF_PROG_TEST_RUN runs on the calling CPU).
    #[arg(long, default_value_t = 1)]
    cpu: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    eprintln!(
        "[bench xdp] building and running proxy/benches/xdp.rs on CPU {}",
        args.cpu
    );
    let status = Command::new("taskset")
        .args([
            "-c",
            &args.cpu.to_string(),
            env!("CARGO"),
            "bench",
            "-p",
            "proxy",
            "--bench",
            "xdp",
            "--",
        ])
        .args([
            "--repeat",
            &args.repeat.to_string(),
            "--rounds",
            &args.rounds.to_string(),
        ])
        .current_dir(crate::workspace_root())
        .status()
        .context("running cargo bench")?;
    anyhow::ensure!(status.success(), "the XDP benchmark failed");
    Ok(())
}
