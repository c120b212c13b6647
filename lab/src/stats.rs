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
    let args = test_run_args(repeat, rounds)?;
    anyhow::ensure!(args.only.is_none(), "this benchmark has no --only");
    Ok((args.repeat, args.rounds))
}

/// The arguments of a BPF_PROG_TEST_RUN benchmark.
pub struct TestRunArgs {
    pub repeat: u32,
    pub rounds: usize,
    /// `--only TEXT`: measure only the classes whose name contains TEXT (and the
    /// baselines), e.g. to profile one of them with `perf record`.
    pub only: Option<String>,
}

/// `--repeat N --rounds N --only TEXT` (cargo bench passes `--bench` too), with
/// defaults.
pub fn test_run_args(repeat: u32, rounds: usize) -> anyhow::Result<TestRunArgs> {
    let mut out = TestRunArgs {
        repeat,
        rounds,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--repeat" => out.repeat = value()?.parse()?,
            "--rounds" => out.rounds = value()?.parse()?,
            "--only" => out.only = Some(value()?),
            "--bench" => {}
            other => {
                anyhow::bail!("unknown argument {other:?} (use --repeat N --rounds N, --only TEXT)")
            }
        }
    }
    Ok(out)
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
