//! Small statistics for benchmark reports: medians, ranges, JSON numbers.

/// The median (NaN for no values).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The value at quantile `q` (0..1) of sorted `v`; `None` for no values.
pub fn quantile(v: &[u32], q: f64) -> Option<u32> {
    let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
    v.get(i).copied()
}

/// (min, max).
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)))
}

/// `--repeat N --rounds N` of the BPF_PROG_TEST_RUN benchmarks (cargo bench passes
/// `--bench` too), with defaults.
pub fn repeat_and_rounds(repeat: u32, rounds: usize) -> anyhow::Result<(u32, usize)> {
    let (mut repeat, mut rounds) = (repeat, rounds);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok());
        match a.as_str() {
            "--repeat" => repeat = value().ok_or_else(|| anyhow::anyhow!("--repeat N"))? as u32,
            "--rounds" => rounds = value().ok_or_else(|| anyhow::anyhow!("--rounds N"))? as usize,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other:?} (use --repeat N --rounds N)"),
        }
    }
    Ok((repeat, rounds))
}

/// One row of a BPF_PROG_TEST_RUN benchmark: the class, its costs (ns per packet, one
/// per round), its paired ratios to the bare drop, an optional target ratio.
pub type RatioRow = (String, Vec<f64>, Vec<f64>, Option<f64>);

/// Prints the table the BPF_PROG_TEST_RUN benchmarks report.
pub fn print_ratio_table(rows: &[RatioRow]) {
    println!(
        "| packet class | ns/packet, median (min-max) | × bare XDP_DROP, median of per-round ratios | target |"
    );
    println!("|---|---|---|---|");
    for (name, costs, ratios, target) in rows {
        let (lo, hi) = min_max(costs);
        let ratio = median(ratios);
        let target = target.map_or("-".to_string(), |t| {
            format!("≤ {t}× {}", if ratio <= t { "met" } else { "MISSED" })
        });
        println!(
            "| {name} | {:.0} ({lo:.0}-{hi:.0}) | {ratio:.2} | {target} |",
            median(costs)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[2.0, -1.0, 5.0]), (-1.0, 5.0));
    }
}
