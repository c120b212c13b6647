//! Facts about this machine's CPUs: the model (printed beside every figure: machines
//! of the same kind gave different ratios on Intel and AMD) and one CPU's busy time.

use anyhow::Context;

/// This machine's CPU model (/proc/cpuinfo).
pub fn model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Seconds CPU `cpu` has been busy so far (/proc/stat: user, nice, system, irq and
/// softirq; not idle, iowait or steal): everything that ran on it, whoever for.
pub fn busy_seconds(cpu: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("/proc/stat has no {name} line"))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    anyhow::ensure!(ticks.len() >= 7, "short /proc/stat line: {line}");
    // user nice system idle iowait irq softirq
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(busy / hz)
}
