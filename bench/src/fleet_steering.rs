//! `cargo xtask bench fleet` (steering part): connection steering with real routers
//! (`lab::fleet_site`: a BIRD router with ECMP, four nodes of which one starts later,
//! one etcd member, two nginx backends), with steering on and off side by side.
//!
//! Per round and mode (the order alternates), a fresh fleet, and for each event a
//! fresh set of long-lived TLS connections (a request every 200-300 ms each, from 32
//! client addresses; `lab::keepalive`): (a) a graceful drain of node 0 (its own
//! connections kept open through the event, then closed: how soon it exits), (b)
//! node 3 added, (c) the router's hash seed changed, (d) node 1 SIGKILLed. Broken
//! connections are split into the changed node's own and the others'. Also: request
//! latency (p50/p99) before the first event, rows moved per table change (steering
//! on), and, via BPF_PROG_TEST_RUN (`proxy/benches/steering.rs`), the XDP cost of a
//! steered and a decapsulated packet as a multiple of a bare drop.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use lab::fleet_site::{FleetOptions, FleetSite, SteeringOptions};
use lab::keepalive::{Connection, KeepAlive, KeepAliveOptions};
use lab::stats::{median, min_max};
use proxy_schema::api::{FleetPolicyStatus, SteeringStatus};

const CLIENT_ADDRESSES: usize = 32;
const EVENTS: [&str; 4] = [
    "(a) graceful drain of node 0",
    "(b) node 3 added",
    "(c) router rehash (hash seed)",
    "(d) node 1 killed (SIGKILL)",
];

pub struct SteeringArgs {
    pub rounds: usize,
    pub connections: usize,
    pub xdp_repeat: u32,
    pub xdp_rounds: usize,
}

/// Broken connections in one event.
#[derive(Default, Clone, Copy)]
struct Broken {
    others: usize,
    others_total: usize,
    own: usize,
    own_total: usize,
}

#[derive(Default)]
struct Round {
    events: [Broken; 4],
    /// Node 0's exit after its last connection closed (s).
    exit_after_close: f64,
    p50_us: f64,
    p99_us: f64,
    /// (what happened, rows moved, rows, N: members of the larger table) per change.
    changes: Vec<(&'static str, u64, u64, usize)>,
}

pub fn run(args: &SteeringArgs, proxy_bin: &str, xdp_pass: &Path) -> anyhow::Result<()> {
    xdp_costs(args)?;
    let mut on = Vec::new();
    let mut off = Vec::new();
    for r in 0..args.rounds {
        for steering in [r % 2 == 0, r % 2 == 1] {
            eprintln!(
                "round {}/{}: steering {}",
                r + 1,
                args.rounds,
                if steering { "on" } else { "off" }
            );
            let round = live_round(args, proxy_bin, xdp_pass, steering, r as u32)?;
            if steering {
                on.push(round)
            } else {
                off.push(round)
            }
        }
    }
    report(args, &on, &off);
    Ok(())
}

/// `proxy/benches/steering.rs`, on CPU 1 (BPF_PROG_TEST_RUN runs on the caller's CPU).
fn xdp_costs(args: &SteeringArgs) -> anyhow::Result<()> {
    eprintln!("[bench fleet steering] XDP costs: proxy/benches/steering.rs on CPU 1");
    let extra = [
        "--repeat".to_string(),
        args.xdp_repeat.to_string(),
        "--rounds".to_string(),
        args.xdp_rounds.to_string(),
    ];
    crate::binaries::proxy_cargo_bench_on_cpu1(&crate::workspace_root(), "steering", &extra)
}

fn node_address(i: usize) -> String {
    format!("10.77.0.{}", i + 1)
}

fn connect(site: &FleetSite, n: usize) -> anyhow::Result<KeepAlive> {
    let sources = (0..CLIENT_ADDRESSES)
        .map(|a| format!("10.78.0.{}", 100 + a).parse().expect("an address"))
        .collect();
    KeepAlive::start(
        &site.fleet.clients.host(0).ns,
        KeepAliveOptions {
            target: format!("{}:443", site.vip()).parse()?,
            server_name: "vip.test".into(),
            ca: site.cert.cert.clone(),
            sources,
            connections: n,
            interval: Duration::from_millis(200),
            jitter: Duration::from_millis(100),
            timeout: Duration::from_secs(3),
        },
    )
}

fn broken(connections: &[Connection], changed: Option<usize>) -> Broken {
    let own = |c: &Connection| {
        changed.is_some_and(|i| c.node.as_deref() == Some(node_address(i).as_str()))
    };
    let mut b = Broken::default();
    for c in connections {
        match (own(c), c.broken.is_some()) {
            (true, broke) => {
                b.own_total += 1;
                b.own += usize::from(broke);
            }
            (false, broke) => {
                b.others_total += 1;
                b.others += usize::from(broke);
            }
        }
    }
    b
}

fn steering_status(site: &FleetSite, i: usize) -> Option<SteeringStatus> {
    let text = site.node_fleet_status_json(i).ok()?;
    serde_json::from_str::<FleetPolicyStatus>(&text)
        .ok()?
        .steering
}

/// Waits (20 s at most) until node `i` steers by a table of `members` active or
/// draining; notes the change as `what` (`n`: members of the larger table).
fn wait_table(
    site: &FleetSite,
    i: usize,
    members: usize,
    (what, n): (&'static str, usize),
    round: &mut Round,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = steering_status(site, i) {
            let in_table = s
                .members
                .iter()
                .filter(|m| m.state == "active" || m.state == "draining")
                .count();
            if in_table == members && s.active_generation == s.table_generation {
                if let Some(moved) = s.rows_moved {
                    round.changes.push((what, moved, s.rows, n));
                }
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {i}: no table of {members} members"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn live_round(
    args: &SteeringArgs,
    proxy_bin: &str,
    xdp_pass: &Path,
    steering: bool,
    seed: u32,
) -> anyhow::Result<Round> {
    let mut site = FleetSite::build(FleetOptions {
        nodes: 4,
        idle_nodes: 1,
        client_addresses: CLIENT_ADDRESSES,
        proxy_bin: Some(proxy_bin.to_string()),
        steering: Some(SteeringOptions {
            xdp_pass: xdp_pass.to_owned(),
            member_ttl: "2s",
            drain: "60s",
            on: steering,
        }),
        ..FleetOptions::default()
    })?;
    site.wait_next_hops(3, Duration::from_secs(30))?;
    let mut round = Round::default();
    if steering {
        wait_table(&site, 0, 3, ("start", 3), &mut round)?;
        round.changes.clear();
    }
    let n = args.connections;

    // (a) Drain node 0; its own connections stay open through the event.
    let clients = connect(&site, n)?;
    std::thread::sleep(Duration::from_secs(5));
    let mut steady: Vec<u32> = clients
        .snapshot()
        .iter()
        .flat_map(|c| c.latencies_us.iter().skip(1).copied())
        .collect();
    steady.sort_unstable();
    round.p50_us = f64::from(lab::stats::quantile(&steady, 0.5).unwrap_or(0));
    round.p99_us = f64::from(lab::stats::quantile(&steady, 0.99).unwrap_or(0));
    site.signal(0, "TERM");
    site.wait_next_hops(2, Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(4));
    round.events[0] = broken(&clients.snapshot(), Some(0));
    if steering {
        wait_table(
            &site,
            1,
            3,
            ("node 0 draining (its rows move)", 3),
            &mut round,
        )?;
    }
    clients.close(|c| c.node.as_deref() == Some(node_address(0).as_str()));
    let closed = Instant::now();
    let proc = site.nodes[0]
        .as_mut()
        .and_then(|p| p.proc.as_mut())
        .context("node 0")?;
    while proc.alive() && closed.elapsed() < Duration::from_secs(70) {
        std::thread::sleep(Duration::from_millis(20));
    }
    round.exit_after_close = closed.elapsed().as_secs_f64();
    drop(clients.stop());
    site.stop_node(0);
    if steering {
        wait_table(
            &site,
            1,
            2,
            ("node 0 gone after its drain (it owned no rows)", 3),
            &mut round,
        )?;
    }

    // (b) Node 3 added.
    let clients = connect(&site, n)?;
    std::thread::sleep(Duration::from_secs(1));
    site.start_node(3)?;
    site.wait_next_hops(3, Duration::from_secs(30))?;
    if steering {
        wait_table(&site, 3, 3, ("node 3 joined", 3), &mut round)?;
    }
    std::thread::sleep(Duration::from_secs(4));
    round.events[1] = broken(&clients.stop(), Some(3));

    // (c) The router rehashes.
    let clients = connect(&site, n)?;
    std::thread::sleep(Duration::from_secs(1));
    site.rehash(0x5eed + seed)?;
    std::thread::sleep(Duration::from_secs(5));
    round.events[2] = broken(&clients.stop(), None);

    // (d) Node 1 killed.
    let clients = connect(&site, n)?;
    std::thread::sleep(Duration::from_secs(1));
    site.kill(1);
    site.wait_next_hops(2, Duration::from_secs(10))?;
    if steering {
        wait_table(
            &site,
            2,
            2,
            ("node 1 killed (its lease ran out)", 3),
            &mut round,
        )?;
    }
    std::thread::sleep(Duration::from_secs(4));
    let last = clients.stop();
    round.events[3] = broken(&last, Some(1));
    for c in last
        .iter()
        .filter(|c| c.broken.is_some() && c.node.as_deref() != Some("10.77.0.2"))
    {
        eprintln!(
            "  (d) a survivor's connection broke: {:?} via {:?} after {} requests: {:?}",
            c.source,
            c.node,
            c.requests,
            c.broken.as_ref().map(|b| &b.1)
        );
    }
    for (e, b) in EVENTS.iter().zip(&round.events) {
        eprintln!(
            "  {e}: {} of {} others' and {} of {} own broken",
            b.others, b.others_total, b.own, b.own_total
        );
    }
    Ok(round)
}

fn cell(v: Vec<f64>, of: Vec<f64>) -> String {
    let (lo, hi) = min_max(&v);
    format!("{:.0} ({lo:.0}-{hi:.0}) of {:.0}", median(&v), median(&of))
}

fn report(args: &SteeringArgs, on: &[Round], off: &[Round]) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            let line = c.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "\n{} rounds per mode, fresh fleet each: BIRD router with ECMP (5-tuple hash), 4 nodes (node 3 \
         started in (b)), 2 backends, 1 etcd member; {} TLS keep-alive connections per event from {CLIENT_ADDRESSES} \
         addresses, a request every 200-300 ms each; member_ttl 2 s. CPU: {}\n",
        args.rounds,
        args.connections,
        cpu.trim()
    );
    println!(
        "| event | steering | broken: surviving nodes' connections, median (min-max) | broken: the changed node's own |"
    );
    println!("|---|---|---|---|");
    for (e, name) in EVENTS.iter().enumerate() {
        for (mode, rounds) in [("on", on), ("off", off)] {
            let pick = |f: fn(&Broken) -> usize| -> Vec<f64> {
                rounds.iter().map(|r| f(&r.events[e]) as f64).collect()
            };
            let own = if e == 1 || e == 2 {
                "-".to_string()
            } else {
                cell(pick(|b| b.own), pick(|b| b.own_total))
            };
            println!(
                "| {name} | {mode} | {} | {own} |",
                cell(pick(|b| b.others), pick(|b| b.others_total))
            );
        }
    }
    let exits: Vec<f64> = on.iter().map(|r| r.exit_after_close).collect();
    let (lo, hi) = min_max(&exits);
    println!(
        "\nsteering on: the drained node exited {:.2} s ({lo:.2}-{hi:.2}) after its last connection closed (drain deadline 60 s)",
        median(&exits)
    );
    println!("\n| request latency before the events | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for (mode, rounds) in [("steering on", on), ("steering off", off)] {
        let p50: Vec<f64> = rounds.iter().map(|r| r.p50_us).collect();
        let p99: Vec<f64> = rounds.iter().map(|r| r.p99_us).collect();
        let (a, b) = min_max(&p50);
        let (c, d) = min_max(&p99);
        println!(
            "| {mode} | {:.0} ({a:.0}-{b:.0}) | {:.0} ({c:.0}-{d:.0}) |",
            median(&p50),
            median(&p99)
        );
    }
    let added = |f: fn(&Round) -> f64| -> Vec<f64> {
        on.iter().zip(off).map(|(a, b)| f(a) - f(b)).collect()
    };
    println!(
        "| added by steering (paired by round) | {:+.0} | {:+.0} |",
        median(&added(|r| r.p50_us)),
        median(&added(|r| r.p99_us))
    );
    println!(
        "\n| table change (steering on) | rows moved, median (min-max) | share of the rows | 1/N |"
    );
    println!("|---|---|---|---|");
    let mut kinds: Vec<&str> = Vec::new();
    for (what, ..) in on.iter().flat_map(|r| r.changes.iter()) {
        if !kinds.contains(what) {
            kinds.push(what);
        }
    }
    for kind in kinds {
        let seen: Vec<&(&str, u64, u64, usize)> = on
            .iter()
            .flat_map(|r| r.changes.iter())
            .filter(|c| c.0 == kind)
            .collect();
        let moved: Vec<f64> = seen.iter().map(|c| c.1 as f64).collect();
        let (lo, hi) = min_max(&moved);
        let (rows, n) = seen.first().map_or((65537, 1), |c| (c.2, c.3));
        println!(
            "| {kind} | {:.0} ({lo:.0}-{hi:.0}) | {:.3} | {:.3} |",
            median(&moved),
            median(&moved) / rows.max(1) as f64,
            1.0 / n.max(1) as f64
        );
    }
}
