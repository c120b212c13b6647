//! `proxy upgrade`: starts the new binary in take-over mode next to the running
//! daemon and reports whether it took over (its first lines come here; once it
//! serves it logs where the old process logged).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

pub fn upgrade_command(config: &Path, binary: Option<PathBuf>) -> anyhow::Result<()> {
    let binary = match binary {
        Some(b) => b,
        None => std::env::current_exe().context("finding this binary")?,
    };
    let started = Instant::now();
    let mut child = Command::new(&binary)
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--takeover", "--adopt-stdio"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: it outlives this command and its terminal.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let forward = std::thread::spawn(move || {
        let mut last = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            last.push(line);
            if last.len() > 5 {
                last.remove(0);
            }
        }
        last
    });
    let stdout = child.stdout.take().expect("piped");
    let outcome: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    let last_log = forward.join().unwrap_or_default();
    if let Some(line) = outcome.iter().find(|l| l.starts_with("upgraded:")) {
        println!("{line} ({} ms after start)", started.elapsed().as_millis());
        return Ok(());
    }
    let status = child.wait()?;
    anyhow::bail!(
        "the new process ({}) exited with {status} before taking over; the running daemon \
         keeps serving. Its last lines: {}",
        binary.display(),
        last_log.join(" | ")
    )
}
