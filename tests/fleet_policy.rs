//! Fleet policy with a real etcd (Debian's etcd-server, three members) and three
//! `proxy` nodes in namespaces (`lab::fleet_site`), each with its own XDP program,
//! pins and interface. An attacker on the client side sends junk TLS and UDP to the
//! nodes' own addresses; drops are read from each node's XDP counters. Needs root.

use std::time::{Duration, Instant};

use lab::fleet_site::{FleetOptions, FleetSite, PolicyOptions};
use proxy::api::{FleetPolicyStatus, ListEntry, Origin, Stats};
use proxy_common::Reason;

const NODES: usize = 3;
/// Failed handshakes that make a node auto-block (and share) a source.
const THRESHOLD: u32 = 5;
/// Attackers on the client side (addresses the fleet site gives the client).
const ATTACKER_A: &str = "10.78.0.150";
const ATTACKER_B: &str = "10.78.0.151";
const VICTIM_OF_TTL: &str = "10.78.0.152";
const DELETED_WHILE_AWAY: &str = "10.78.0.153";
const OPERATOR_BLOCK: &str = "10.78.0.154";

fn stats(site: &FleetSite, i: usize) -> Stats {
    serde_json::from_str(&site.node_stats_json(i)).unwrap()
}

fn blocklisted(site: &FleetSite, i: usize) -> u64 {
    stats(site, i)
        .xdp
        .expect("xdp stats")
        .interfaces
        .iter()
        .map(|x| x.verdicts.get(Reason::Blocklisted).packets)
        .sum()
}

fn status(site: &FleetSite, i: usize) -> FleetPolicyStatus {
    let out = site
        .node_cli(i, "fleet status --json --socket {socket}")
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

fn kernel_blocklist(site: &FleetSite, i: usize) -> Vec<ListEntry> {
    let out = site
        .node_cli(i, "block list --json --pin-path {pins}")
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

fn kernel_entry(site: &FleetSite, i: usize, addr: &str) -> Option<ListEntry> {
    let net = format!("{addr}/32");
    kernel_blocklist(site, i)
        .into_iter()
        .find(|e| e.cidr.to_string() == net)
}

/// Does node `i`'s XDP program drop every one of 20 datagrams from `src` as
/// blocklisted? XDP counts on receipt, so 300 ms are enough to tell. A burst that
/// straddles a change (some dropped) counts as "not all".
fn drops(site: &FleetSite, src: &str, i: usize) -> bool {
    let before = blocklisted(site, i);
    site.udp_from(src.parse().unwrap(), i, 20).unwrap();
    let sent = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let delta = blocklisted(site, i) - before;
        if delta >= 20 {
            return true;
        }
        if sent.elapsed() > Duration::from_millis(300) {
            if delta > 0 {
                eprintln!("node {i}: {delta} of {src}'s 20 datagrams dropped (a change mid-burst)");
            }
            return false;
        }
    }
}

/// Junk (not TLS) connections from `src` to node `i`'s own listener.
fn junk_from(site: &FleetSite, src: &str, i: usize, n: u32) {
    site.junk_from(src.parse().unwrap(), i, n).unwrap();
}

/// Waits until `check` holds; how long that took.
fn within(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    lab::wait_for(what, limit, || check().then_some(()));
    start.elapsed()
}

/// A request to node `i`'s own TLS listener answers.
fn serves(site: &FleetSite, i: usize) -> bool {
    let out = site.fleet.clients.host(0).ns.try_sh(&format!(
        "curl -sf --max-time 3 --cacert {} --resolve vip.test:443:{} https://vip.test/name",
        site.cert.cert.display(),
        site.node_ip(i)
    ));
    out.status.success()
}

#[test]
fn a_block_on_one_node_is_enforced_by_every_node() {
    let mut site = FleetSite::build(FleetOptions {
        backends: 1,
        policy: Some(PolicyOptions {
            etcd_members: 3,
            failed_handshakes: THRESHOLD,
            max_block_entries: None,
            secure: false,
        }),
        ..FleetOptions::default()
    })
    .unwrap();
    for i in 0..NODES {
        within(
            "the node to connect to etcd",
            Duration::from_secs(15),
            || status(&site, i).connected,
        );
    }
    let s = status(&site, 0);
    assert_eq!(s.members.len(), 3, "{s:?}");
    let connected_at: Vec<u64> = (0..NODES).map(|i| status(&site, i).since_unix).collect();
    let sessions_began = Instant::now();

    // 1. Node 0 auto-blocks an attacker (junk TLS); nodes 1 and 2 drop it too.
    for i in 0..NODES {
        assert!(
            !drops(&site, ATTACKER_A, i),
            "node {i} dropped before any block"
        );
    }
    junk_from(&site, ATTACKER_A, 0, THRESHOLD + 2);
    let local = kernel_entry(&site, 0, ATTACKER_A).expect("node 0 auto-blocked the attacker");
    assert_eq!(local.origin, Origin::Auto);
    for i in 1..NODES {
        let took = within("the shared block", Duration::from_secs(10), || {
            drops(&site, ATTACKER_A, i)
        });
        eprintln!("node {i}: attacker dropped as blocklisted {took:?} after node 0's block");
        let entry = kernel_entry(&site, i, ATTACKER_A).unwrap();
        assert_eq!(entry.origin, Origin::Fleet, "{entry:?}");
        assert!(entry.reason.starts_with("node0: "), "{entry:?}");
        let lag = status(&site, i).apply_lag_seconds.unwrap();
        eprintln!("node {i}: apply lag {lag:.3}s");
    }

    // A local delete does not remove a fleet entry; a local entry is kept apart.
    let refused = site.node_cli(1, &format!("block del {ATTACKER_A} --pin-path {{pins}}"));
    let message = format!("{:#}", refused.unwrap_err());
    assert!(message.contains("del --fleet"), "{message}");
    assert!(drops(&site, ATTACKER_A, 1));

    // 2. A TTL'd fleet block from node 1: all drop, then all pass after it,
    // without anything done on nodes 0 and 2.
    site.node_cli(
        1,
        &format!(
            "block add {VICTIM_OF_TTL} --fleet --ttl 3s --reason ttl-test --socket {{socket}}"
        ),
    )
    .unwrap();
    let added = Instant::now();
    for i in 0..NODES {
        within("the TTL block everywhere", Duration::from_secs(5), || {
            drops(&site, VICTIM_OF_TTL, i)
        });
    }
    std::thread::sleep(Duration::from_secs(3).saturating_sub(added.elapsed()));
    for i in 0..NODES {
        within(
            "the TTL block to end everywhere",
            Duration::from_secs(5),
            || !drops(&site, VICTIM_OF_TTL, i),
        );
    }

    // 4. Malformed data written straight into etcd is skipped and counted; the next
    // valid entry still applies.
    let etcd = site.etcd.as_ref().unwrap();
    etcd.ctl("put /proxy/entries/block/10.9.9.0_24 '{not json'")
        .unwrap();
    etcd.ctl("put /proxy/entries/block/banana '{}'").unwrap();
    site.node_cli(
        2,
        &format!("block add {DELETED_WHILE_AWAY} --fleet --socket {{socket}}"),
    )
    .unwrap();
    for i in 0..NODES {
        within(
            "the entry after the bad ones",
            Duration::from_secs(5),
            || drops(&site, DELETED_WHILE_AWAY, i),
        );
        let s = status(&site, i);
        assert!(s.bad_entries >= 2, "node {i}: {s:?}");
        assert!(s.connected, "node {i}: the bad data must not end the watch");
    }

    // The sessions held all along (etcd closes connections that ping more often
    // than its 5 s minimum: a client that does reconnects every few seconds).
    std::thread::sleep(Duration::from_secs(15).saturating_sub(sessions_began.elapsed()));
    for (i, since) in connected_at.iter().enumerate() {
        let s = status(&site, i);
        assert!(s.connected, "{s:?}");
        assert_eq!(s.since_unix, *since, "node {i} reconnected: {s:?}");
    }

    // 5. One etcd member killed: nothing changes for the proxies.
    site.etcd.as_mut().unwrap().kill(0);
    site.node_cli(0, "block add 10.78.0.160 --fleet --socket {socket}")
        .unwrap();
    for i in 0..NODES {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !drops(&site, "10.78.0.160", i) {
            assert!(
                Instant::now() < deadline,
                "node {i} did not get a write made with one member down: {:?}",
                (0..NODES).map(|n| status(&site, n)).collect::<Vec<_>>()
            );
        }
        assert!(drops(&site, ATTACKER_A, i), "node {i} lost a block");
    }
    site.etcd.as_mut().unwrap().restart(0).unwrap();

    // 3. Node 2 stops; an entry is deleted meanwhile; then the whole store goes.
    site.stop_node(2);
    site.node_cli(
        0,
        &format!("block del {DELETED_WHILE_AWAY} --fleet --socket {{socket}}"),
    )
    .unwrap();
    for i in 0..2 {
        within("the fleet delete", Duration::from_secs(5), || {
            !drops(&site, DELETED_WHILE_AWAY, i)
        });
    }
    for m in 0..3 {
        site.etcd.as_mut().unwrap().kill(m);
    }
    for i in 0..2 {
        within(
            "the node to see the store gone",
            Duration::from_secs(10),
            || !status(&site, i).connected,
        );
        assert!(serves(&site, i), "node {i} stopped serving without etcd");
        assert!(
            drops(&site, ATTACKER_A, i),
            "node {i} lost a block without etcd"
        );
    }
    // Node 0 auto-blocks a new attacker while etcd is down; an operator adds a fleet
    // block on node 1: each applies at once, and queues.
    junk_from(&site, ATTACKER_B, 0, THRESHOLD + 2);
    assert!(drops(&site, ATTACKER_B, 0));
    assert!(
        !drops(&site, ATTACKER_B, 1),
        "published while etcd was down?"
    );
    assert!(status(&site, 0).pending >= 1);
    site.node_cli(
        1,
        &format!("block add {OPERATOR_BLOCK} --fleet --socket {{socket}}"),
    )
    .unwrap();
    assert!(drops(&site, OPERATOR_BLOCK, 1));
    assert_eq!(status(&site, 1).pending, 1);
    site.etcd.as_mut().unwrap().restart_stopped().unwrap();
    within(
        "node 1 to block the attacker node 0 queued",
        Duration::from_secs(15),
        || drops(&site, ATTACKER_B, 1),
    );
    within(
        "node 0 to block what node 1 queued",
        Duration::from_secs(15),
        || drops(&site, OPERATOR_BLOCK, 0),
    );
    // The reconnect's full read kept node 1's own queued entry throughout.
    assert!(drops(&site, OPERATOR_BLOCK, 1));
    assert_eq!(status(&site, 0).pending, 0);
    assert_eq!(status(&site, 1).pending, 0);
    // Node 2 comes back: its pins still hold the entry deleted while it was away.
    assert!(kernel_entry(&site, 2, DELETED_WHILE_AWAY).is_some());
    site.start_node(2).unwrap();
    within(
        "node 2 to read the store again",
        Duration::from_secs(15),
        || status(&site, 2).connected,
    );
    assert!(
        kernel_entry(&site, 2, DELETED_WHILE_AWAY).is_none(),
        "a stale entry survived the restart"
    );
    assert!(
        drops(&site, ATTACKER_B, 2),
        "node 2 missed the queued block"
    );
    assert!(drops(&site, ATTACKER_A, 2));
    let s = status(&site, 2);
    eprintln!("node 2 after restart: {s:?}");
    assert!(
        s.by_origin
            .iter()
            .any(|o| o.origin == "node0" && o.block >= 2)
    );
}

#[test]
fn etcd_with_tls_client_certificates_and_a_user() {
    let mut site = FleetSite::build(FleetOptions {
        nodes: 2,
        backends: 1,
        policy: Some(PolicyOptions {
            etcd_members: 1,
            failed_handshakes: THRESHOLD,
            max_block_entries: None,
            secure: true,
        }),
        ..FleetOptions::default()
    })
    .unwrap();
    for i in 0..2 {
        within(
            "the node to connect over TLS",
            Duration::from_secs(15),
            || status(&site, i).connected,
        );
    }
    assert!(status(&site, 0).endpoints[0].starts_with("https://"));
    site.node_cli(
        0,
        &format!("block add {ATTACKER_A} --fleet --socket {{socket}}"),
    )
    .unwrap();
    within("the shared block over TLS", Duration::from_secs(5), || {
        drops(&site, ATTACKER_A, 1)
    });
    let etcd = site.etcd.as_ref().unwrap();
    let stored = etcd
        .ctl(&format!(
            "get /proxy/entries/block/{ATTACKER_A}_32 --print-value-only"
        ))
        .unwrap();
    assert!(stored.contains("\"origin\":\"node0\""), "{stored}");
    // Allow entries travel the same way.
    site.node_cli(0, "allow add 10.78.0.155 --fleet --socket {socket}")
        .unwrap();
    within("the shared allow entry", Duration::from_secs(5), || {
        let out = site
            .node_cli(1, "allow list --json --pin-path {pins}")
            .unwrap();
        let entries: Vec<ListEntry> = serde_json::from_str(&out).unwrap();
        entries
            .iter()
            .any(|e| e.cidr.to_string() == "10.78.0.155/32" && e.origin == Origin::Fleet)
    });
    // A config entry marked shared: published on reload, deleted everywhere when it
    // leaves the configuration.
    let plain = site.node_config_text(0).to_string();
    let mut config: toml::Value = toml::from_str(&plain).unwrap();
    config["xdp"].as_table_mut().unwrap().insert(
        "blocklist".into(),
        toml::Value::try_from(vec![toml::toml! {
            cidr = "10.78.0.156"
            reason = "from the config"
            shared = true
        }])
        .unwrap(),
    );
    site.reload_node(0, &toml::to_string(&config).unwrap())
        .unwrap();
    within(
        "the shared config entry on node 1",
        Duration::from_secs(5),
        || kernel_entry(&site, 1, "10.78.0.156").is_some_and(|e| e.origin == Origin::Fleet),
    );
    let local = kernel_entry(&site, 0, "10.78.0.156").unwrap();
    assert_eq!(
        local.origin,
        Origin::Config,
        "node 0's own copy is a config entry"
    );
    site.reload_node(0, &plain).unwrap();
    within(
        "the config entry to leave node 1",
        Duration::from_secs(5),
        || kernel_entry(&site, 1, "10.78.0.156").is_none(),
    );
    assert!(kernel_entry(&site, 0, "10.78.0.156").is_none());
    // A wrong password: the node keeps its policy and says why it is not connected.
    site.stop_node(1);
    std::fs::write(site.node_dir(1).join("etcd-password"), "wrong\n").unwrap();
    site.start_node(1).unwrap();
    within(
        "the node to report the refusal",
        Duration::from_secs(10),
        || {
            status(&site, 1)
                .last_error
                .is_some_and(|e| e.contains("authentication failed"))
        },
    );
    assert!(!status(&site, 1).connected);
    assert!(
        drops(&site, ATTACKER_A, 1),
        "kept its fleet entries: {:?}\n{}",
        kernel_blocklist(&site, 1),
        site.nodes[1].as_ref().unwrap().log()
    );
}
