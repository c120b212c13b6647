//! `cargo xtask demo --fleet`: a router (BIRD, ECMP), three `proxy` nodes announcing
//! one VIP over BGP, two nginx backends, a client with 16 addresses; then what an
//! operator wants to see: the router's next hops, clients spread over the nodes with
//! their backends, a drain and a kill with the routes moving. Root and bird2 needed.

use std::time::{Duration, Instant};

use lab::fleet_site::{FleetOptions, FleetSite, VIP4};

fn step(n: usize, text: &str) {
    println!("\n\x1b[1m== {n}/6 {text}\x1b[0m");
}

fn main() {
    if let Err(e) = lab::ensure_root() {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
    let keep = std::env::args().any(|a| a == "--keep");
    step(
        1,
        "router 10.78.0.254/10.77.0.254 (BIRD, ECMP), nodes 10.77.0.1-3, backends 10.77.0.4-5, client 10.78.0.x",
    );
    let site = FleetSite::build(FleetOptions {
        client_addresses: 16,
        ..FleetOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    for (i, h) in site.fleet.nodes.hosts.iter().enumerate() {
        let role = if i < 3 { "proxy node" } else { "nginx backend" };
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
        5,
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
        step(6, "leaving everything up (--keep): stop with Ctrl-C");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    step(
        6,
        "cleaning up: stopping the daemons, BIRD and nginx, removing namespaces",
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
