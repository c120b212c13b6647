//! Connection steering with real routers (`lab::fleet_site`: a BIRD router with ECMP
//! into Linux, `proxy` nodes with XDP steering, one etcd member, two nginx backends),
//! the short version of `cargo xtask bench fleet --part steering`: long-lived TLS
//! connections (a request every 200-300 ms each, from 32 client addresses) through
//! each fleet event once, and no connection may break:
//!
//! (a) a graceful drain (SIGTERM): not even the draining node's own connections,
//!     which keep reaching it through the other nodes until the test closes them;
//!     then it exits at once, long before its 60 s drain deadline;
//! (b) a node added: it announces only once it is in the table, and takes rows;
//! (c) the router rehashing (`fib_multipath_hash_seed`);
//! (d) a node killed (SIGKILL): only its own connections may break (its XDP program
//!     stays attached and steers what reaches it before the router drops its route).
//!
//! The same rehash without steering breaks connections (so the test can fail).
//! Needs root, bird2 and etcd.

use std::time::{Duration, Instant};

use lab::fleet_site::{FleetOptions, FleetSite, SteeringOptions};
use lab::keepalive::{Connection, KeepAlive, KeepAliveOptions};
use proxy::api::{FleetPolicyStatus, Stats};
use proxy_common::Reason;

/// Connections per event (the benchmark runs 300).
const CONNECTIONS: usize = 48;
const CLIENT_ADDRESSES: usize = 32;

fn options(steering: bool, nodes: usize, idle: usize) -> FleetOptions {
    FleetOptions {
        nodes,
        idle_nodes: idle,
        client_addresses: CLIENT_ADDRESSES,
        steering: Some(SteeringOptions {
            xdp_pass: concat!(env!("OUT_DIR"), "/xdp-bench.o").into(),
            member_ttl: "2s",
            drain: "60s",
            on: steering,
        }),
        ..FleetOptions::default()
    }
}

fn node_address(i: usize) -> String {
    format!("10.77.0.{}", i + 1)
}

fn connect(site: &FleetSite) -> KeepAlive {
    let sources = (0..CLIENT_ADDRESSES)
        .map(|a| format!("10.78.0.{}", 100 + a).parse().unwrap())
        .collect();
    KeepAlive::start(
        &site.fleet.clients.host(0).ns,
        KeepAliveOptions {
            target: format!("{}:443", site.vip()).parse().unwrap(),
            server_name: "vip.test".into(),
            ca: site.cert.cert.clone(),
            sources,
            connections: CONNECTIONS,
            interval: Duration::from_millis(200),
            jitter: Duration::from_millis(100),
            timeout: Duration::from_secs(3),
        },
    )
    .unwrap()
}

/// Broken connections of the changed node (by its address) and of the others.
fn broken(connections: &[Connection], changed: Option<usize>) -> (usize, usize, usize) {
    let own = |c: &Connection| changed.is_some_and(|i| c.node.as_deref() == Some(&node_address(i)));
    let count = |f: &dyn Fn(&Connection) -> bool| connections.iter().filter(|c| f(c)).count();
    let own_broken = count(&|c| own(c) && c.broken.is_some());
    let others_broken = count(&|c| !own(c) && c.broken.is_some());
    let own_total = count(&own);
    for c in connections.iter().filter(|c| c.broken.is_some()) {
        eprintln!(
            "  broken: {:?} via {:?} after {} requests: {:?}",
            c.source,
            c.node,
            c.requests,
            c.broken.as_ref().map(|b| &b.1)
        );
    }
    (others_broken, own_broken, own_total)
}

fn verdicts(site: &FleetSite, i: usize, reason: Reason) -> u64 {
    let stats: Stats = serde_json::from_str(&site.node_stats_json(i)).unwrap();
    let xdp = stats.xdp.expect("XDP stats");
    xdp.interfaces
        .iter()
        .map(|f| f.verdicts.get(reason).packets)
        .sum()
}

fn fleet_status(site: &FleetSite, i: usize) -> FleetPolicyStatus {
    serde_json::from_str(&site.node_fleet_status_json(i).unwrap()).unwrap()
}

/// Waits until node `i` steers by a table with exactly `members` (by name).
fn wait_table(site: &FleetSite, i: usize, members: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = fleet_status(site, i).steering.expect("steering status");
        let mut have: Vec<String> = s
            .members
            .iter()
            .filter(|m| m.state == "active" || m.state == "draining")
            .map(|m| m.node.clone())
            .collect();
        have.sort();
        if have == members {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {i} steers by {have:?}, not {members:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn steered_packets(site: &FleetSite, nodes: &[usize]) -> u64 {
    nodes
        .iter()
        .map(|i| verdicts(site, *i, Reason::Steered) + verdicts(site, *i, Reason::SecondChance))
        .sum()
}

#[test]
fn no_connection_breaks_when_the_fleet_changes() {
    let mut site = FleetSite::build(options(true, 4, 1)).unwrap();
    site.wait_next_hops(3, Duration::from_secs(30)).unwrap();
    for i in 0..3 {
        wait_table(&site, i, &["node0", "node1", "node2"]);
    }

    // (a) Graceful drain of node 0, with its own connections open.
    let clients = connect(&site);
    std::thread::sleep(Duration::from_secs(1));
    let drained = Instant::now();
    site.signal(0, "TERM");
    let gone = site.wait_next_hops(2, Duration::from_secs(15)).unwrap();
    eprintln!("(a) node 0's route gone {gone:?} after SIGTERM");
    // Its connections now reach it through nodes 1 and 2 only.
    std::thread::sleep(Duration::from_secs(3));
    let (others, own, own_total) = broken(&clients.snapshot(), Some(0));
    eprintln!(
        "(a) drain: {others} of the surviving nodes' and {own} of node 0's {own_total} connections broken"
    );
    assert!(own_total > 0, "node 0 held some of the connections");
    assert_eq!((others, own), (0, 0), "no connection breaks in a drain");
    let log = site.nodes[0].as_ref().unwrap().log();
    let moved = log.find("owns no rows").expect("rows moved away first");
    let withdrawn = log.find("VIP withdrawn").expect("then withdrawn");
    assert!(
        moved < withdrawn,
        "rows moved before the route was withdrawn"
    );
    // Its connections done, it exits at once (the deadline is 60 s).
    clients.close(|c| c.node.as_deref() == Some(&node_address(0)));
    let closed = Instant::now();
    let proc = site.nodes[0].as_mut().unwrap().proc.as_mut().unwrap();
    while proc.alive() {
        assert!(
            closed.elapsed() < Duration::from_secs(10),
            "node 0 still drains"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "(a) node 0 exited {:?} after its last connection closed ({:?} after SIGTERM)",
        closed.elapsed(),
        drained.elapsed()
    );
    let (others, _, _) = broken(&clients.stop(), Some(0));
    assert_eq!(others, 0);
    site.stop_node(0);
    wait_table(&site, 1, &["node1", "node2"]);

    // (b) Node 3 added under load: in the table first, then announced.
    let clients = connect(&site);
    let steered_before = steered_packets(&site, &[1, 2]);
    site.start_node(3).unwrap();
    let announced = site.wait_next_hops(3, Duration::from_secs(30)).unwrap();
    eprintln!("(b) node 3 announced {announced:?} after its start");
    wait_table(&site, 3, &["node1", "node2", "node3"]);
    std::thread::sleep(Duration::from_secs(3));
    let (others, _, _) = broken(&clients.snapshot(), Some(3));
    let on_new = steered_packets(&site, &[3]);
    eprintln!(
        "(b) node added: {others} connections broken; node 3 steered {on_new} packets of the others'"
    );
    assert_eq!(others, 0, "no connection breaks when a node is added");
    assert!(
        on_new > 0,
        "packets of old connections reached node 3 and were steered"
    );
    let status = fleet_status(&site, 3).steering.unwrap();
    assert!(status.rows_primary > 0, "node 3 took rows: {status:?}");
    assert_eq!(broken(&clients.stop(), None).0, 0);

    // (c) The router rehashes: the same next hops, every flow spread anew.
    let clients = connect(&site);
    std::thread::sleep(Duration::from_secs(1));
    let before = steered_packets(&site, &[1, 2, 3]);
    site.rehash(0x5eed).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let after = steered_packets(&site, &[1, 2, 3]);
    let (others, _, _) = broken(&clients.snapshot(), None);
    eprintln!(
        "(c) rehash: {others} connections broken; {} packets steered meanwhile",
        after - before
    );
    assert_eq!(others, 0, "no connection breaks when the router rehashes");
    assert!(after > before + steered_before.min(1));
    assert_eq!(broken(&clients.stop(), None).0, 0);

    // (d) Node 1 killed: only its own connections may break. Its XDP program stays
    // attached (its link pinned): what reaches it before the router drops its route
    // is still steered, not reset by its kernel.
    let clients = connect(&site);
    std::thread::sleep(Duration::from_secs(1));
    site.kill(1);
    site.wait_next_hops(2, Duration::from_secs(10)).unwrap();
    let link = site
        .fleet
        .nodes
        .host(1)
        .ns
        .exec("ip link show eth0")
        .unwrap();
    assert!(
        link.contains("xdp"),
        "the dead node's XDP program stays: {link}"
    );
    wait_table(&site, 2, &["node2", "node3"]);
    std::thread::sleep(Duration::from_secs(4));
    let (others, own, own_total) = broken(&clients.stop(), Some(1));
    eprintln!(
        "(d) kill: {others} of the surviving nodes' connections broken, {own} of node 1's {own_total}"
    );
    assert_eq!(others, 0, "a killed node breaks only its own connections");
}

#[test]
fn without_steering_a_rehash_breaks_connections() {
    let site = FleetSite::build(options(false, 3, 0)).unwrap();
    site.wait_next_hops(3, Duration::from_secs(30)).unwrap();
    let clients = connect(&site);
    std::thread::sleep(Duration::from_secs(1));
    site.rehash(0x5eed).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (others, _, _) = broken(&clients.stop(), None);
    eprintln!("rehash without steering: {others} of {CONNECTIONS} connections broken");
    assert!(
        others > 0,
        "plain ECMP moves flows to nodes that do not know them"
    );
}
