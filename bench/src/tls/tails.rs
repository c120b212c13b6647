//! The interleaved latency figure (`--figures tails`). Every product runs at once,
//! each on its own address of the `lb` namespace (all pinned to the LB core, idle
//! while not measured), and the generator alternates between them in short slices,
//! the backend without a load balancer ("no LB") first in each cycle. Machine noise
//! that lasts seconds then falls on neighbouring slices of every product alike,
//! which rounds of one product after another (minutes apart) cannot separate.
//! Reported per product: percentiles of all samples pooled, each slice's p99 and
//! the per-cycle paired ratios.
//!
//! Each slice also records the steal time of both CPUs (/proc/stat: time the
//! hypervisor ran something else while this VM's CPU had work). Stalls of that kind
//! last milliseconds and hit whatever runs on the CPU at the time, so the report also
//! gives the percentiles over the slices in which neither CPU lost any time.

use std::collections::BTreeMap;

use anyhow::Context;
use lab::stats::{median, min_max};

use super::lineup::{Lineup, peers};
use super::{Args, BACKEND_HTTP, Bench, GEN_IP, LATENCY_RATE, PORT_EC, PORT_PLAIN, Product};
use crate::results::{Latency, us};

/// What a slice sends its requests to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    NoLb,
    Lb(Product),
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::NoLb => "no LB (plain)",
            Target::Lb(p) => p.label(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Tls,
}

/// One slice: its p99, its samples and the steal time during it (ms, both CPUs).
struct Slice {
    p99: f64,
    samples: Vec<u32>,
    steal_ms: u64,
}

/// The slices of one kind of load, per target in cycle order.
#[derive(Default)]
struct Slices(BTreeMap<Target, Vec<Slice>>);

impl Slices {
    fn add(&mut self, target: Target, j: Latency, steal_ms: u64) {
        self.0.entry(target).or_default().push(Slice {
            p99: us(j.p99_us),
            samples: j.samples_us.unwrap_or_default(),
            steal_ms,
        });
    }

    fn of(&self, target: Target) -> &[Slice] {
        self.0.get(&target).map_or(&[], Vec::as_slice)
    }

    /// All samples of `target` (of the slices `keep` accepts), sorted.
    fn pooled(&self, target: Target, keep: impl Fn(&Slice) -> bool) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .of(target)
            .iter()
            .filter(|s| keep(s))
            .flat_map(|s| s.samples.iter().copied())
            .collect();
        v.sort_unstable();
        v
    }
}

/// Steal time of the LB's and the generator's CPUs so far, in ms (/proc/stat
/// counts it in USER_HZ ticks, 10 ms each).
fn steal_ms() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let mut total = 0;
    for cpu in [super::LB_CPU, super::GEN_CPU] {
        let line = stat
            .lines()
            .find(|l| l.starts_with(&format!("cpu{cpu} ")))
            .with_context(|| format!("/proc/stat has no cpu{cpu} line"))?;
        // cpuN user nice system idle iowait irq softirq steal ...
        let steal: u64 = line
            .split_whitespace()
            .nth(8)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no steal field in {line:?}"))?;
        total += steal * 10;
    }
    Ok(total)
}

/// Measures plain, then TLS, small GETs in `args.cycles` cycles; returns the report.
pub fn run(bench: &Bench, ifname: &str, args: &Args) -> anyhow::Result<String> {
    let products = &args.products;
    let lineup = Lineup::start(bench, ifname, products)?;
    let mut out = format!(
        "\ninterleaved latency: {} cycles; each cycle runs the backend without LB, then every \
         product (order rotating), {} s each at {LATENCY_RATE} requests/s, all products running \
         at once on CPU {}\n",
        args.cycles,
        args.slice_seconds,
        super::LB_CPU
    );
    for kind in [Kind::Plain, Kind::Tls] {
        let name = match kind {
            Kind::Plain => "plain",
            Kind::Tls => "TLS",
        };
        let mut slices = Slices::default();
        for cycle in 0..args.cycles {
            eprintln!(
                "interleaved latency, {name}: cycle {}/{}",
                cycle + 1,
                args.cycles
            );
            let mut order = products.clone();
            let shift = cycle % order.len().max(1);
            order.rotate_left(shift);
            let targets = std::iter::once(Target::NoLb).chain(order.into_iter().map(Target::Lb));
            for target in targets {
                let before = steal_ms()?;
                let j = slice(bench, target, kind, &lineup, args.slice_seconds)?;
                slices.add(target, j, steal_ms()? - before);
            }
        }
        out += &table(name, products, &slices, args);
    }
    Ok(out)
}

fn slice(
    bench: &Bench,
    target: Target,
    kind: Kind,
    lineup: &Lineup,
    seconds: f64,
) -> anyhow::Result<Latency> {
    let (ip, port) = match target {
        Target::NoLb => {
            return bench.latency_for(
                &format!("{GEN_IP}:{BACKEND_HTTP}"),
                None,
                seconds,
                "--samples",
            );
        }
        Target::Lb(p) => (
            lineup.addr(p),
            if kind == Kind::Tls {
                PORT_EC
            } else {
                PORT_PLAIN
            },
        ),
    };
    let addr = format!("{ip}:{port}");
    let tls = (kind == Kind::Tls).then(|| bench.tls_args_at(ip, PORT_EC, "ec.pem"));
    bench.latency_for(&addr, tls.as_deref(), seconds, "--samples")
}

/// The sample at quantile `q` of sorted `v` (NaN for none).
fn quantile(v: &[u32], q: f64) -> f64 {
    lab::stats::quantile(v, q).map_or(f64::NAN, f64::from)
}

fn table(name: &str, products: &[Product], slices: &Slices, args: &Args) -> String {
    let targets: Vec<Target> = std::iter::once(Target::NoLb)
        .chain(products.iter().copied().map(Target::Lb))
        .collect();
    let peers = peers(products);
    let proxy = Target::Lb(Product::Proxy);
    let mut out = format!("\n| {name} small GETs, interleaved (µs) |");
    for t in &targets {
        out += &format!(" {} |", t.label());
    }
    for p in &peers {
        out += &format!(" proxy/{} |", p.label());
    }
    out += &format!("\n|---|{}\n", "---|".repeat(targets.len() + peers.len()));

    let all = |_: &Slice| true;
    let calm = |s: &Slice| s.steal_ms == 0;
    for (label, keep) in [
        ("all slices", &all as &dyn Fn(&Slice) -> bool),
        ("slices without steal", &calm),
    ] {
        let pooled: BTreeMap<Target, Vec<u32>> = targets
            .iter()
            .map(|t| (*t, slices.pooled(*t, keep)))
            .collect();
        for (q_label, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            out += &format!("| {q_label}, {label} pooled |");
            for t in &targets {
                out += &format!(" {:.0} |", quantile(&pooled[t], q));
            }
            for p in &peers {
                let ratio = quantile(&pooled[&proxy], q) / quantile(&pooled[&Target::Lb(*p)], q);
                out += &format!(" {ratio:.2} |");
            }
            out += "\n";
        }
        out += &format!("| samples, {label} |");
        for t in &targets {
            out += &format!(" {} |", pooled[t].len());
        }
        out += &" - |".repeat(peers.len());
        out += "\n";
    }

    let p99 = |t: Target| -> Vec<f64> { slices.of(t).iter().map(|s| s.p99).collect() };
    out += "| p99 per slice, median (min-max); median of per-cycle ratios |";
    for t in &targets {
        let v = p99(*t);
        let (lo, hi) = min_max(&v);
        out += &format!(" {:.0} ({lo:.0}-{hi:.0}) |", median(&v));
    }
    let ours = p99(proxy);
    for p in &peers {
        let ratios: Vec<f64> = ours
            .iter()
            .zip(p99(Target::Lb(*p)))
            .map(|(a, b)| a / b)
            .collect();
        out += &format!(" {:.2} |", median(&ratios));
    }
    out += "\n| cycles where the proxy's p99 ≤ the peer's |";
    out += &" - |".repeat(targets.len());
    for p in &peers {
        let theirs = p99(Target::Lb(*p));
        let wins = ours.iter().zip(&theirs).filter(|(a, b)| a <= b).count();
        out += &format!(" {wins} of {} |", ours.len().min(theirs.len()));
    }
    out += "\n| cycles where neither slice had steal: median p99 ratio, proxy ≤ peer |";
    out += &" - |".repeat(targets.len());
    for p in &peers {
        let pairs: Vec<(f64, f64)> = slices
            .of(proxy)
            .iter()
            .zip(slices.of(Target::Lb(*p)))
            .filter(|(a, b)| calm(a) && calm(b))
            .map(|(a, b)| (a.p99, b.p99))
            .collect();
        let ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
        let wins = pairs.iter().filter(|(a, b)| a <= b).count();
        out += &format!(" {:.2}, {wins} of {} |", median(&ratios), pairs.len());
    }
    out += "\n| slices with steal time (both CPUs) |";
    for t in &targets {
        let n = slices.of(*t).iter().filter(|s| !calm(s)).count();
        out += &format!(" {n} of {} |", slices.of(*t).len());
    }
    out += &" - |".repeat(peers.len());
    out += "\n";
    if args.histograms {
        out += "\np99 of each slice in cycle order (µs), with the steal time during it (ms):\n";
        for t in &targets {
            let values: Vec<String> = slices
                .of(*t)
                .iter()
                .map(|s| format!("{:.0} ({})", s.p99, s.steal_ms))
                .collect();
            out += &format!("  {}: {}\n", t.label(), values.join(", "));
        }
    }
    out
}
