//! `cargo xtask demo --fleet`: a router (BIRD, ECMP), three `proxy` nodes announcing
//! one VIP over BGP and sharing block entries through etcd, two nginx backends, a
//! client with 16 addresses; then what an operator wants to see: the router's next
//! hops, clients spread over the nodes with their backends, an attacker auto-blocked
//! on one node and dropped by the others' XDP programs, a drain and a kill with the
//! routes moving. Root, bird2 and etcd-server needed.

use std::time::{Duration, Instant};

use lab::fleet_site::{FleetOptions, FleetSite, PolicyOptions, VIP4};
use proxy::api::Stats;
use proxy_common::Reason;

/// The attacker of step 4 (one of the client's addresses).
const ATTACKER: &str = "10.78.0.140";

fn step(n: usize, text: &str) {
    println!("\n\x1b[1m== {n}/7 {text}\x1b[0m");
}

fn main() {
    if let Err(e) = lab::ensure_root() {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
    let keep = std::env::args().any(|a| a == "--keep");
    step(
        1,
        "router 10.78.0.254/10.77.0.254 (BIRD, ECMP), nodes 10.77.0.1-3, backends 10.77.0.4-5, etcd 10.77.0.6, client 10.78.0.x",
    );
    let site = FleetSite::build(FleetOptions {
        client_addresses: 64,
        policy: Some(PolicyOptions {
            etcd_members: 1,
            failed_handshakes: 5,
            max_block_entries: None,
            secure: false,
        }),
        ..FleetOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    for (i, h) in site.fleet.nodes.hosts.iter().enumerate() {
        let role = match i {
            0..3 => "proxy node: XDP, auto-blocking shared through etcd",
            3..5 => "nginx backend",
            _ => "etcd",
        };
        println!("   {:<26} {} ({role})", h.ns.name, h.ipv4);
    }

    step(
        2,
        &format!("every node announces {VIP4}; the router's ECMP route"),
    );
    let took = site
        .wait_next_hops(3, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("   all three routes in {took:.1?} after start");
    show_route(&site);
    println!("\n   $ proxy stats (node 0, fleet part)");
    for line in site
        .node_stats_text(0)
        .lines()
        .filter(|l| l.starts_with("VIP") || l.starts_with("BGP"))
    {
        println!("   {line}");
    }

    step(3, "16 client addresses: which node, which backend");
    let before: Vec<u64> = (0..3).map(|i| connections(&site, i)).collect();
    let mut backends = Vec::new();
    for a in 0..16 {
        let backend = site.request(a).unwrap_or_else(|| "FAILED".into());
        println!("   10.78.0.{} → {backend}", 100 + a);
        backends.push(backend);
    }
    let after: Vec<u64> = (0..3).map(|i| connections(&site, i)).collect();
    let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    println!(
        "   connections per node: {per_node:?} (the router's hash decides the node; Maglev the backend)"
    );

    step(
        4,
        &format!(
            "attacker {ATTACKER} sends junk TLS to node 0: node 0 blocks it, nodes 1 and 2 drop it too"
        ),
    );
    let attacker = ATTACKER.parse().expect("address");
    let before: Vec<u64> = (0..3).map(|i| blocklisted(&site, i)).collect();
    site.junk_from(attacker, 0, 7)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let blocked = Instant::now();
    lab::wait_for(
        "the block on nodes 1 and 2",
        Duration::from_secs(10),
        || {
            (1..3)
                .all(|i| {
                    site.node_cli(i, "block list --pin-path {pins}")
                        .is_ok_and(|o| o.contains(ATTACKER))
                })
                .then_some(())
        },
    );
    println!(
        "   nodes 1 and 2 have it in their kernel blocklists {:.0?} after node 0's block",
        blocked.elapsed()
    );
    for i in 0..3 {
        site.udp_from(attacker, i, 1000)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    for (i, before) in before.iter().enumerate() {
        println!(
            "   node {i}: 1000 UDP packets from the attacker → {} dropped as blocklisted by XDP",
            blocklisted(&site, i) - before
        );
    }
    println!("\n   $ proxy block list (node 2)");
    for line in site
        .node_cli(2, "block list --pin-path {pins}")
        .unwrap_or_default()
        .lines()
    {
        println!("   {line}");
    }
    println!("\n   $ proxy fleet status (node 2)");
    for line in site
        .node_cli(2, "fleet status --socket {socket}")
        .unwrap_or_default()
        .lines()
    {
        println!("   {line}");
    }

    step(
        5,
        "drain node 0 (SIGTERM): route withdrawn first, then the drain",
    );
    site.signal(0, "TERM");
    let t0 = Instant::now();
    let gone = site
        .wait_next_hops(2, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!(
        "   node 0's route gone after {gone:.1?}; it keeps accepting for withdraw_delay (2s), then drains"
    );
    let ok = (0..16).filter(|a| site.request(*a).is_some()).count();
    println!(
        "   16 new requests: {ok} ok ({:.1?} after SIGTERM)",
        t0.elapsed()
    );

    step(
        6,
        "kill node 1 (SIGKILL): its BIRD dies with it, the route follows",
    );
    let t1 = Instant::now();
    site.kill(1);
    let gone = site
        .wait_next_hops(1, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!(
        "   node 1's route gone after {gone:.1?} ({:.1?} since the kill)",
        t1.elapsed()
    );
    let same = (0..16)
        .filter(|a| site.request(*a).as_ref() == Some(&backends[*a]))
        .count();
    println!(
        "   16 new requests, all through node 2: {same} of 16 answered by the same backend as in step 3"
    );
    show_route(&site);

    if keep {
        step(7, "leaving everything up (--keep): stop with Ctrl-C");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    step(
        7,
        "cleaning up: stopping the daemons, BIRD, etcd and nginx, removing namespaces and pins",
    );
    drop(site);
    println!("   done");
}

/// The router's route to the VIP (its ECMP next hops).
fn show_route(site: &FleetSite) {
    println!("   $ ip route show {VIP4} (router)");
    for line in site
        .fleet
        .router
        .sh(&format!("ip route show {VIP4}"))
        .lines()
    {
        println!("   {line}");
    }
}

fn connections(site: &FleetSite, i: usize) -> u64 {
    let Ok(j) = serde_json::from_str::<serde_json::Value>(&site.node_stats_json(i)) else {
        return 0;
    };
    j["listeners"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| l["connections_total"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Packets node `i`'s XDP program dropped as blocklisted.
fn blocklisted(site: &FleetSite, i: usize) -> u64 {
    serde_json::from_str::<Stats>(&site.node_stats_json(i))
        .ok()
        .and_then(|s| s.xdp)
        .map_or(0, |x| {
            x.interfaces
                .iter()
                .map(|i| i.verdicts.get(Reason::Blocklisted).packets)
                .sum()
        })
}
