//! Syscall counts of the LB under `strace -c` (every thread of its processes),
//! for the syscalls-per-connection figure.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use lab::Proc;

use super::GEN_CPU;

/// `strace -c -f` attached to `pid` and its descendants, writing its summary to `out`.
pub struct Strace {
    proc: Proc,
    out: std::path::PathBuf,
}

impl Strace {
    pub fn attach(pid: u32, out: &Path) -> anyhow::Result<Strace> {
        let mut c = Command::new("taskset");
        // strace itself runs on the generator's core; its cost to the traced
        // process does not matter for counts.
        c.args(["-c", GEN_CPU, "strace", "-c", "-f", "-o"]).arg(out);
        for p in lab::process::process_tree(pid) {
            c.args(["-p", &p.to_string()]);
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let proc = Proc::spawn(c, "strace")?;
        std::thread::sleep(Duration::from_millis(500)); // attached to every thread
        Ok(Strace {
            proc,
            out: out.to_owned(),
        })
    }

    /// Detaches (SIGINT) and returns the summary table.
    pub fn finish(self) -> anyhow::Result<String> {
        self.proc.signal("INT");
        let (_, stderr, _) = self.proc.wait_output(Duration::from_secs(10));
        let text = std::fs::read_to_string(&self.out)
            .with_context(|| format!("strace wrote no summary: {stderr}"))?;
        ensure!(
            text.contains("total"),
            "strace summary without a total: {text}"
        );
        Ok(text)
    }
}

/// (syscall, calls) rows of a `strace -c` table, most calls first, without the total.
pub fn rows(table: &str) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = table
        .lines()
        .filter_map(|l| {
            // % time, seconds, usecs/call, calls, [errors], syscall
            let cols: Vec<&str> = l.split_whitespace().collect();
            let name = *cols.last()?;
            let calls = cols.get(3)?.parse::<f64>().ok()?;
            (cols.len() >= 5 && name != "syscall").then(|| (name.to_string(), calls))
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.retain(|(name, _)| name != "total");
    rows
}

/// The `calls` column of `syscall` ("total" for the sum) in a `strace -c` table;
/// 0 when it does not appear.
pub fn calls(table: &str, syscall: &str) -> f64 {
    if syscall == "total" {
        return rows(table).iter().map(|(_, c)| c).sum();
    }
    rows(table)
        .into_iter()
        .find(|(name, _)| name == syscall)
        .map_or(0.0, |(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_calls_column() {
        let table = "% time     seconds  usecs/call     calls    errors syscall\n\
             ------ ----------- ----------- --------- --------- ----------------\n \
             40.00    0.004000           2      2000           setsockopt\n \
             30.00    0.003000           1      4001      2000 accept4\n\
             ------ ----------- ----------- --------- --------- ----------------\n\
             100.00    0.007000           1      6001      2000 total\n";
        assert_eq!(super::calls(table, "setsockopt"), 2000.0);
        assert_eq!(super::calls(table, "accept4"), 4001.0);
        assert_eq!(super::calls(table, "total"), 6001.0);
        assert_eq!(super::rows(table)[0].0, "accept4");
        assert_eq!(super::calls(table, "shutdown"), 0.0);
    }
}
