//! `cargo xtask bench fleet` (policy part): fleet policy through a real etcd
//! (three members) with three nodes (lab::fleet_site).
//!
//! - Propagation: `proxy block add --fleet` on node 0 for a client address, then TCP
//!   probes from that address to nodes 1 and 2 (a closed port: refused while it
//!   passes, no answer once XDP drops it) until both drop. From the start of the CLI
//!   command to the first unanswered probe, per node and entry.
//! - Start: node 2 stopped, N entries written into etcd, node 2 started: from `proxy
//!   run` to all N in its kernel blocklist (and the daemon's own read+apply time).
//! - Footprint: the daemon's RSS and CPU over an idle minute with M fleet entries,
//!   next to the same with none.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context;
use lab::fleet_site::{FleetOptions, FleetSite, PolicyOptions};
use lab::stats::{median, min_max};
use proxy_schema::api::FleetPolicyStatus;

/// Client addresses probed (one entry each).
const FIRST_SOURCE: u8 = 100;

pub struct PolicyArgs {
    pub entries: usize,
    pub start_entries: usize,
    pub footprint_entries: usize,
    pub idle_seconds: u64,
}

pub fn run(args: &PolicyArgs, proxy_bin: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=127).contains(&args.entries),
        "--entries: 1 to 127 (one client address each)"
    );
    let mut site = FleetSite::build(FleetOptions {
        backends: 1,
        client_addresses: args.entries,
        proxy_bin: Some(proxy_bin.to_string()),
        policy: Some(PolicyOptions {
            etcd_members: 3,
            failed_handshakes: 1000,
            max_block_entries: Some(
                (args.footprint_entries.max(args.start_entries) as u32 + 1024).next_power_of_two(),
            ),
            secure: false,
        }),
        ..FleetOptions::default()
    })?;
    for i in 0..3 {
        wait_connected(&site, i)?;
    }
    eprintln!(
        "footprint: node 0 idle {} s with no entries",
        args.idle_seconds
    );
    let (rss_few, cpu_few) = footprint(&site, 0, args.idle_seconds)?;

    eprintln!("propagation: {} entries written on node 0", args.entries);
    let mut latency: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for k in 0..args.entries {
        let src = Ipv4Addr::new(10, 78, 0, FIRST_SOURCE + k as u8);
        anyhow::ensure!(
            probe(&site, src, 1)? && probe(&site, src, 2)?,
            "{src} is not answered before its block: the probe cannot tell"
        );
        let site_ref = &site;
        let t0 = Instant::now();
        site.node_cli(
            0,
            &format!("block add {src} --fleet --ttl 1h --reason bench --socket {{socket}}"),
        )?;
        // Both nodes probed at once, each by its own thread.
        let seen: Vec<anyhow::Result<Duration>> = std::thread::scope(|s| {
            let probes: Vec<_> = [1usize, 2]
                .into_iter()
                .map(|node| s.spawn(move || first_drop(site_ref, src, node, t0)))
                .collect();
            probes
                .into_iter()
                .map(|p| p.join().expect("probe thread"))
                .collect()
        });
        for (n, seen) in seen.into_iter().enumerate() {
            latency[n].push(seen?.as_secs_f64() * 1000.0);
        }
    }
    let apply_lag: Vec<f64> = (1..3)
        .filter_map(|i| status(&site, i)?.apply_lag_seconds)
        .map(|s| s * 1000.0)
        .collect();

    eprintln!(
        "start: {} entries in etcd, node 2 restarted",
        args.start_entries
    );
    site.stop_node(2);
    write_entries(&site, 0, args.start_entries)?;
    let started = Instant::now();
    site.start_node(2)?;
    wait_entries(
        &site,
        2,
        args.entries + args.start_entries,
        Duration::from_secs(120),
    )?;
    let start_total = started.elapsed();
    let read_apply_ms = last_log_number(&site, 2, "took_ms");

    eprintln!(
        "footprint: node 0 idle {} s with {} entries",
        args.idle_seconds, args.footprint_entries
    );
    site.stop_node(0);
    write_entries(
        &site,
        args.start_entries,
        args.footprint_entries - args.start_entries.min(args.footprint_entries),
    )?;
    site.start_node(0)?;
    let total = args.entries + args.start_entries.max(args.footprint_entries);
    wait_entries(&site, 0, total, Duration::from_secs(300))?;
    let (rss_many, cpu_many) = footprint(&site, 0, args.idle_seconds)?;
    let read_apply_many_ms = last_log_number(&site, 0, "took_ms");

    println!(
        "\nFleet policy: 3-member etcd 3.4 (Debian), 3 nodes; entries written on node 0 with `proxy block add --fleet`\n"
    );
    println!("| figure | median | p99 | min-max |");
    println!("|---|---|---|---|");
    for (n, v) in latency.iter().enumerate() {
        let (lo, hi) = min_max(v);
        println!(
            "| write on node 0 → dropped by node {}'s XDP ({} entries) | {:.1} ms | {:.1} ms | {lo:.1}-{hi:.1} ms |",
            n + 1,
            v.len(),
            median(v),
            p99(v)
        );
    }
    if !apply_lag.is_empty() {
        println!(
            "| daemon-reported apply lag of the last entry (nodes 1, 2) | {:.1} ms | | {:.1}-{:.1} ms |",
            median(&apply_lag),
            min_max(&apply_lag).0,
            min_max(&apply_lag).1
        );
    }
    println!(
        "\n| start with {} entries in etcd | value |",
        args.start_entries + args.entries
    );
    println!("|---|---|");
    println!(
        "| `proxy run` to all entries in the kernel | {:.2} s |",
        start_total.as_secs_f64()
    );
    if let Some(ms) = read_apply_ms {
        println!("| the daemon's full read + apply | {ms} ms |");
    }
    println!(
        "\n| daemon, idle {} s | none | {} entries |",
        args.idle_seconds, total
    );
    println!("|---|---|---|");
    println!(
        "| RSS | {:.1} MiB | {:.1} MiB |",
        rss_few / 1024.0,
        rss_many / 1024.0
    );
    println!(
        "| CPU | {:.2} % | {:.2} % |",
        cpu_few * 100.0,
        cpu_many * 100.0
    );
    if let Some(ms) = read_apply_many_ms {
        println!("| full read + apply at start | | {ms} ms |");
    }
    Ok(())
}

fn p99(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 * 0.99).ceil() as usize).clamp(1, s.len()) - 1]
}

/// Node `i`'s `proxy fleet status`, if it answers.
fn status(site: &FleetSite, i: usize) -> Option<FleetPolicyStatus> {
    let out = site
        .node_cli(i, "fleet status --json --socket {socket}")
        .ok()?;
    serde_json::from_str(&out).ok()
}

fn wait_connected(site: &FleetSite, i: usize) -> anyhow::Result<()> {
    lab::try_wait_for(
        "the node to connect to etcd",
        Duration::from_secs(20),
        || status(site, i)?.connected.then_some(()),
    )
}

fn wait_entries(site: &FleetSite, i: usize, n: usize, within: Duration) -> anyhow::Result<()> {
    lab::try_wait_for(&format!("{n} fleet entries on node {i}"), within, || {
        (status(site, i)?.block_entries >= n).then_some(())
    })
}

fn probe(site: &FleetSite, src: Ipv4Addr, i: usize) -> anyhow::Result<bool> {
    site.answered(src, i)
}

/// Probes until node `i` drops `src`; the time from `t0` to that probe's start.
fn first_drop(site: &FleetSite, src: Ipv4Addr, i: usize, t0: Instant) -> anyhow::Result<Duration> {
    loop {
        let at = t0.elapsed();
        if !probe(site, src, i)? {
            return Ok(at);
        }
        anyhow::ensure!(at < Duration::from_secs(10), "node {i} never dropped {src}");
    }
}

/// Puts `n` permanent entries (11.x.y.z/32 from index `from`) straight into etcd.
fn write_entries(site: &FleetSite, from: usize, n: usize) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let pairs: Vec<(String, String)> = (from..from + n)
        .map(|k| {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(11, 0, 0, 0)) + k as u32);
            (
                format!("/proxy/entries/block/{ip}_32"),
                format!(
                    r#"{{"cidr":"{ip}/32","reason":"bench","origin":"bench","source":"manual","created_unix_ms":{now}}}"#
                ),
            )
        })
        .collect();
    site.etcd.as_ref().context("no etcd")?.bulk_put(&pairs)
}

/// The last `key=<number>` of node `i`'s log (JSON lines, fields flattened).
fn last_log_number(site: &FleetSite, i: usize, key: &str) -> Option<u64> {
    let log = site.nodes[i].as_ref()?.log();
    log.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        v[key].as_u64()
    })
}

/// (RSS KiB at the end, CPU share) of node `i`'s daemon over `seconds` idle.
fn footprint(site: &FleetSite, i: usize, seconds: u64) -> anyhow::Result<(f64, f64)> {
    let pid = site.node_pid(i).context("node not running")?;
    // The daemon runs under `sh -c exec`: the pid is the daemon itself.
    let cpu0 = lab::process::cpu_seconds(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = (lab::process::cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    Ok((lab::process::rss_kib(pid), cpu))
}
