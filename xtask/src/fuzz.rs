//! `cargo xtask fuzz`: every fuzz target in `fuzz/` (cargo fuzz, libFuzzer) for a
//! bounded time or number of runs each, from the committed corpora. Stable Rust:
//! coverage instrumentation without a sanitizer (`-s none`); a panic or a failed
//! assertion in a target is a crash, and fails the task with the input saved.

use std::process::Command;

use anyhow::{Context, ensure};

/// The targets, in `fuzz/fuzz_targets/` (`xdp` loads the XDP program: root).
const TARGETS: [&str; 8] = [
    "config",
    "client_hello",
    "dns_records",
    "values",
    "admin_request",
    "proxy_protocol",
    "fleet_entry",
    "xdp",
];

/// The cargo-fuzz release this project runs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds per target (libFuzzer -max_total_time); 0 = no time limit.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Executions per target (libFuzzer -runs); 0 = no limit.
    #[arg(long, default_value_t = 0)]
    runs: u64,
    /// Targets to run (default: all).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Read the committed corpora but write new inputs to a scratch directory (what
    /// `cargo xtask test` does, so a test run leaves the checkout unchanged).
    #[arg(long)]
    read_only_corpus: bool,
}

impl Args {
    /// What `cargo xtask test` runs: 10 s of every target.
    pub fn short() -> Args {
        Args {
            seconds: 10,
            runs: 0,
            targets: Vec::new(),
            read_only_corpus: true,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    ensure_cargo_fuzz()?;
    let dir = crate::workspace_root().join("fuzz");
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets
    };
    for target in &targets {
        ensure!(
            TARGETS.contains(&target.as_str()),
            "no fuzz target {target:?} (targets: {})",
            TARGETS.join(", ")
        );
        eprintln!(
            "[fuzz] {target}: {} s, {} runs (0 = unbounded)",
            args.seconds, args.runs
        );
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        // libFuzzer writes new inputs into the first corpus directory it is given.
        let scratch = tempfile::tempdir()?;
        let mut corpora = vec![corpus];
        if args.read_only_corpus {
            corpora.insert(0, scratch.path().to_owned());
        }
        let status = Command::new(env!("CARGO"))
            .args(["fuzz", "run", "--sanitizer", "none", target])
            .args(&corpora)
            .arg("--")
            .args(max_len(target).map(|n| format!("-max_len={n}")))
            .args([
                &format!("-max_total_time={}", args.seconds),
                &format!(
                    "-runs={}",
                    if args.runs == 0 { -1 } else { args.runs as i64 }
                ),
                "-print_final_stats=1",
            ])
            .current_dir(&dir)
            .status()
            .context("running cargo fuzz")?;
        ensure!(
            status.success(),
            "fuzz target {target} failed: the input is under fuzz/artifacts/{target}/ \
             (reproduce: cd fuzz && cargo fuzz run -s none {target} <file>)"
        );
    }
    Ok(())
}

/// The longest input libFuzzer makes, where its default (from the corpus, else
/// 4096) is too short: past the ClientHello reader's 16 KiB bound.
fn max_len(target: &str) -> Option<usize> {
    (target == "client_hello").then_some(20 * 1024)
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = Command::new(env!("CARGO"))
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION));
    if installed {
        return Ok(());
    }
    eprintln!("[fuzz] installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io (about a minute)");
    let status = Command::new(env!("CARGO"))
        .args([
            "install",
            &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
            "--locked",
        ])
        .status()
        .context("running cargo install cargo-fuzz")?;
    ensure!(
        status.success(),
        "cargo install cargo-fuzz failed (see above)"
    );
    Ok(())
}
