//! `cargo xtask bench fleet`: fleet routing timings with real BGP (this file), fleet
//! policy through etcd (`fleet_policy.rs`), connection steering (`fleet_steering.rs`). Routing: (lab::fleet_site:
//! a BIRD router with ECMP, three nodes, two nginx backends). Per round, a fresh
//! fleet: the announce delay after start (all daemons running → three next hops on
//! the router), a drain (SIGTERM on node 0 during a loop of new TLS connections:
//! failed connections, time until its route is gone) and a failover (SIGKILL on node
//! 1 during the loop: time until its route is gone, failed connections, time until
//! the loop succeeded again). Timers: hold 3 s, withdraw_delay 2 s, hold-down 1 s.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lab::fleet_site::{FleetOptions, FleetSite};
use lab::stats::{median, min_max};

use crate::binaries::proxy_and_generator;
use crate::fleet_policy::PolicyArgs;
use crate::fleet_steering::SteeringArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Routing rounds (a fresh fleet each).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// What to measure: routing (BGP), policy (etcd), steering, or all three.
    #[arg(long, value_enum, default_value_t = Part::All)]
    pub part: Part,
    /// Steering: rounds per mode (on, off; a fresh fleet each).
    #[arg(long, default_value_t = 3)]
    pub steering_rounds: usize,
    /// Steering: long-lived connections per event.
    #[arg(long, default_value_t = 300)]
    pub connections: usize,
    /// Steering: BPF_PROG_TEST_RUN runs per XDP cost measurement.
    #[arg(long, default_value_t = 200_000)]
    pub xdp_repeat: u32,
    /// Steering: XDP cost measurements per packet class.
    #[arg(long, default_value_t = 11)]
    pub xdp_rounds: usize,
    /// Policy: entries whose propagation is timed (one client address each, ≤ 127).
    #[arg(long, default_value_t = 100)]
    pub entries: usize,
    /// Policy: entries in etcd when a node starts.
    #[arg(long, default_value_t = 10_000)]
    pub start_entries: usize,
    /// Policy: entries for the memory and CPU figures.
    #[arg(long, default_value_t = 100_000)]
    pub footprint_entries: usize,
    /// Policy: idle time over which the daemon's CPU is measured.
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Routing,
    Policy,
    Steering,
    All,
}

#[derive(Default)]
struct Round {
    announce: f64,
    drain_route_gone: f64,
    drain_failed: f64,
    kill_route_gone: f64,
    kill_failed: f64,
    kill_recovered: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    lab::ensure_root()?;
    let (proxy_bin, _) = proxy_and_generator()?;
    if matches!(args.part, Part::Routing | Part::All) {
        routing(&args, &proxy_bin.display().to_string())?;
    }
    if matches!(args.part, Part::Steering | Part::All) {
        let steering = SteeringArgs {
            rounds: args.steering_rounds,
            connections: args.connections,
            xdp_repeat: args.xdp_repeat,
            xdp_rounds: args.xdp_rounds,
        };
        let xdp_pass = ebpf_build::bench_object_path(&crate::workspace_root());
        crate::fleet_steering::run(&steering, &proxy_bin.display().to_string(), &xdp_pass)?;
    }
    if matches!(args.part, Part::Policy | Part::All) {
        let policy = PolicyArgs {
            entries: args.entries,
            start_entries: args.start_entries,
            footprint_entries: args.footprint_entries,
            idle_seconds: args.idle_seconds,
        };
        crate::fleet_policy::run(&policy, &proxy_bin.display().to_string())?;
    }
    Ok(())
}

fn routing(args: &Args, proxy_bin: &str) -> anyhow::Result<()> {
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        eprintln!("round {}/{}", r + 1, args.rounds);
        let site = FleetSite::build(FleetOptions {
            client_addresses: 16,
            proxy_bin: Some(proxy_bin.to_string()),
            ..FleetOptions::default()
        })?;
        let mut round = Round {
            announce: site
                .wait_next_hops(3, Duration::from_secs(30))?
                .as_secs_f64(),
            ..Round::default()
        };
        // A loop of new TLS connections (one at a time) with the time of each result.
        let results: Mutex<Vec<(Instant, bool)>> = Mutex::new(Vec::new());
        let done = AtomicBool::new(false);
        std::thread::scope(|s| -> anyhow::Result<()> {
            s.spawn(|| {
                let mut a = 0;
                while !done.load(Ordering::Relaxed) {
                    let ok = site.request(a % 16).is_some();
                    results.lock().unwrap().push((Instant::now(), ok));
                    a += 1;
                }
            });
            std::thread::sleep(Duration::from_secs(1));
            let term = Instant::now();
            site.signal(0, "TERM");
            round.drain_route_gone = site
                .wait_next_hops(2, Duration::from_secs(10))?
                .as_secs_f64();
            std::thread::sleep(Duration::from_secs(3));
            let kill = Instant::now();
            round.drain_failed = failed_between(&results, term, kill);
            site.kill(1);
            round.kill_route_gone = site
                .wait_next_hops(1, Duration::from_secs(10))?
                .as_secs_f64();
            std::thread::sleep(Duration::from_secs(2));
            done.store(true, Ordering::Relaxed);
            let results = results.lock().unwrap();
            round.kill_failed = results.iter().filter(|(t, ok)| *t >= kill && !ok).count() as f64;
            let last_failure = results
                .iter()
                .filter(|(t, ok)| *t >= kill && !ok)
                .map(|(t, _)| *t)
                .max();
            round.kill_recovered = last_failure.map_or(0.0, |t| (t - kill).as_secs_f64());
            Ok(())
        })?;
        eprintln!(
            "  announce {:.2}s; drain: route gone {:.3}s, {} failed; kill: route gone {:.3}s, {} failed, loop ok again after {:.3}s",
            round.announce,
            round.drain_route_gone,
            round.drain_failed,
            round.kill_route_gone,
            round.kill_failed,
            round.kill_recovered
        );
        rounds.push(round);
        drop(site);
    }
    println!(
        "\n{} rounds, fresh fleet each: BIRD router with ECMP, 3 nodes, 2 backends; hold time 3 s, withdraw_delay 2 s, hold-down 1 s\n",
        args.rounds
    );
    println!("| figure | median | min-max |");
    println!("|---|---|---|");
    let row = |name: &str, unit: &str, v: Vec<f64>| {
        let (lo, hi) = min_max(&v);
        println!(
            "| {name} | {:.3}{unit} | {lo:.3}-{hi:.3}{unit} |",
            median(&v)
        );
    };
    row(
        "announce delay after start (3 next hops)",
        " s",
        rounds.iter().map(|r| r.announce).collect(),
    );
    row(
        "drain: route gone after SIGTERM",
        " s",
        rounds.iter().map(|r| r.drain_route_gone).collect(),
    );
    row(
        "drain: failed connections",
        "",
        rounds.iter().map(|r| r.drain_failed).collect(),
    );
    row(
        "SIGKILL: route gone",
        " s",
        rounds.iter().map(|r| r.kill_route_gone).collect(),
    );
    row(
        "SIGKILL: failed connections",
        "",
        rounds.iter().map(|r| r.kill_failed).collect(),
    );
    row(
        "SIGKILL: loop succeeding again after",
        " s",
        rounds.iter().map(|r| r.kill_recovered).collect(),
    );
    Ok(())
}

fn failed_between(results: &Mutex<Vec<(Instant, bool)>>, from: Instant, to: Instant) -> f64 {
    results
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, ok)| *t >= from && *t < to && !ok)
        .count() as f64
}
