//! Fleet routing with real routers: three `proxy` nodes announce one VIP through
//! their BIRD to a router running BIRD with ECMP into its kernel; clients with many
//! source addresses on the other side. Needs root and bird2.

use std::time::{Duration, Instant};

use lab::config::{Bgp, BgpPeer, Config, Health, Listener, Pool, Tls, Vip};
use lab::nginx::{Nginx, NginxOptions};
use lab::proxyd::ProxyD;
use lab::{Fleet, Proc};
use proxy::api::Stats;

const VIP: &str = "10.99.0.1";
const VIP6: &str = "fd99::1";
const NODES: usize = 3;
/// Hosts 3 and 4 of the node segment are the nginx backends.
const BACKENDS: [usize; 2] = [3, 4];
const CLIENT_ADDRESSES: usize = 64;

struct Site {
    // Drop order: daemons and servers, then the router's BIRD, then the namespaces.
    nodes: Vec<Option<ProxyD>>,
    backends: Vec<Nginx>,
    _router_bird: Proc,
    fleet: Fleet,
    dir: tempfile::TempDir,
    cacert: String,
}

fn site() -> Site {
    site_with(false)
}

/// With `ipv6`: the VIP is IPv6 (fd99::1) and the BGP sessions run over IPv6.
fn site_with(ipv6: bool) -> Site {
    lab::require_root();
    let fleet = Fleet::build(NODES + BACKENDS.len(), 1).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("lab-fleet-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let backends = BACKENDS
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let name = format!("be{i}");
            Nginx::start(
                &fleet.nodes.host(*h).ns,
                &d.join(&name),
                NginxOptions {
                    name: &name,
                    port: 8080,
                    proxy_protocol: false,
                    big_bytes: 1024,
                },
            )
        })
        .collect();

    // The router: BIRD with a session per node, routes merged into ECMP next hops.
    let router_conf = d.join("router.conf");
    let mut conf = String::from(
        "router id 10.77.0.254;\nprotocol device {}\n\
         protocol kernel { ipv4 { export all; }; merge paths on; }\n\
         protocol kernel { ipv6 { export all; }; merge paths on; }\n",
    );
    for i in 0..NODES {
        let (neighbor, channel) = match ipv6 {
            false => (fleet.nodes.host(i).ipv4.clone(), "ipv4"),
            true => (fleet.nodes.host(i).ipv6.clone(), "ipv6"),
        };
        conf += &format!(
            "protocol bgp lb{i} {{ local as 65000; neighbor {neighbor} as 65001; hold time 3; keepalive time 1; \
             connect retry time 1; error wait time 1, 10; {channel} {{ import all; export none; }}; }}\n"
        );
    }
    std::fs::write(&router_conf, conf).unwrap();
    fleet
        .router
        .exec("sysctl -qw net.ipv4.fib_multipath_hash_policy=1 && sysctl -qw net.ipv6.fib_multipath_hash_policy=1")
        .unwrap();
    let router_bird = fleet.router.spawn(&format!(
        "bird -f -c {} -s {}",
        router_conf.display(),
        d.join("router.ctl").display()
    ));

    let cert = lab::certs::write(
        d,
        "vip",
        lab::certs::KeyType::EcdsaP256,
        "vip.test",
        &["vip.test"],
    );
    let backend_addrs: Vec<String> = BACKENDS
        .iter()
        .map(|h| format!("{}:8080", fleet.nodes.host(*h).ipv4))
        .collect();
    let nodes = (0..NODES)
        .map(|i| {
            let host = fleet.nodes.host(i);
            let (vip, bind, peer) = match ipv6 {
                false => (VIP, format!("{VIP}:443"), "10.77.0.254"),
                true => (VIP6, format!("[{VIP6}]:443"), "fd77::254"),
            };
            let len = if ipv6 { 128 } else { 32 };
            host.ns
                .exec(&format!("ip addr add {vip}/{len} dev lo"))
                .unwrap();
            let node_dir = d.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let config = Config::new()
                .listener(Listener::new("https", bind, "web").tls(Tls::new(&cert)))
                .pool(Pool::new("web", &backend_addrs).health(Health::every("200ms", "1s", 1, 2)))
                .bgp(Bgp {
                    local_as: 65001,
                    router_id: host.ipv4.clone(),
                    hold_time: Some("3s".into()),
                    withdraw_delay: Some("2s".into()),
                    announce_hold_down: Some("1s".into()),
                    bird_dir: node_dir.join("bird").display().to_string(),
                    peer: vec![BgpPeer {
                        address: peer.into(),
                        asn: 65000,
                    }],
                    vip: vec![Vip {
                        address: vip.into(),
                        listeners: vec!["https".into()],
                        min_healthy_backends: None,
                    }],
                })
                .to_toml();
            Some(ProxyD::start(&host.ns, &node_dir, &config))
        })
        .collect();
    let client = &fleet.clients.host(0);
    client
        .ns
        .exec(&format!("ip route add {VIP}/32 via 10.78.0.254"))
        .unwrap();
    client
        .ns
        .exec(&format!("ip -6 route add {VIP6}/128 via fd78::254"))
        .unwrap();
    for a in 0..CLIENT_ADDRESSES {
        client
            .ns
            .exec(&format!("ip addr add 10.78.0.{}/24 dev eth0", 100 + a))
            .unwrap();
    }
    Site {
        nodes,
        backends,
        _router_bird: router_bird,
        cacert: cert.cert.display().to_string(),
        fleet,
        dir,
    }
}

impl Site {
    /// The router's next hops for the VIP.
    fn next_hops(&self) -> Vec<String> {
        self.next_hops_of(&format!("-4 route show {VIP}/32"))
    }

    fn next_hops_of(&self, route: &str) -> Vec<String> {
        let out = self.fleet.router.sh(&format!("ip {route}"));
        out.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect()
    }

    fn wait_next_hops(&self, n: usize, within: Duration) -> Duration {
        let start = Instant::now();
        lab::wait_for(&format!("{n} next hops for the VIP"), within, || {
            (self.next_hops().len() == n).then_some(())
        });
        start.elapsed()
    }

    /// One HTTPS request from client address `a`; the backend that answered.
    fn request(&self, a: usize) -> Option<String> {
        let out = self.fleet.clients.host(0).ns.try_sh(&format!(
            "curl -sf --max-time 3 --interface 10.78.0.{} --cacert {} --resolve vip.test:443:{VIP} https://vip.test/name",
            100 + a,
            self.cacert
        ));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn node_stats(&self, i: usize) -> Stats {
        let node_dir = self.dir.path().join(format!("node{i}"));
        let text = lab::proxyd::cli(
            &self.fleet.nodes.host(i).ns,
            &format!(
                "stats --json --socket {}",
                node_dir.join("admin.sock").display()
            ),
        );
        serde_json::from_str(&text).unwrap()
    }

    fn connections(&self, i: usize) -> u64 {
        self.node_stats(i)
            .listeners
            .iter()
            .map(|l| l.connections_total)
            .sum()
    }
}

#[test]
fn nodes_announce_spread_drain_and_die_without_a_stale_route() {
    let mut site = site();
    // 1. All three announce; the router has three next hops; clients spread.
    site.wait_next_hops(NODES, Duration::from_secs(20));
    let stats = site.node_stats(0);
    let fleet = stats.fleet.expect("fleet stats");
    assert!(fleet.vips[0].announced, "{fleet:?}");
    assert!(
        fleet.peers.iter().all(|p| p.info.contains("Established")),
        "{fleet:?}"
    );
    let mut backend_of = Vec::new();
    for a in 0..CLIENT_ADDRESSES {
        backend_of.push(
            site.request(a)
                .unwrap_or_else(|| panic!("request from address {a}")),
        );
    }
    let per_node: Vec<u64> = (0..NODES).map(|i| site.connections(i)).collect();
    eprintln!("connections per node: {per_node:?}");
    assert!(
        per_node.iter().all(|n| *n > 0),
        "every node served some: {per_node:?}"
    );

    // 2. The same client address reaches the same backend whichever node serves it
    // (checked fully below, once node 2 alone serves every address): the same
    // requests again agree.
    for (a, backend) in backend_of.iter().enumerate().take(16) {
        assert_eq!(
            site.request(a).as_deref(),
            Some(backend.as_str()),
            "address {a}"
        );
    }

    // 3. SIGTERM on node 0: its route goes before it stops accepting; a client loop
    // of new TLS connections sees no failure.
    let failures = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut a = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if site.request(a % CLIENT_ADDRESSES).is_none() {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                a += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        site.nodes[0].as_ref().unwrap().signal("TERM");
        let gone = site.wait_next_hops(NODES - 1, Duration::from_secs(5));
        eprintln!("node 0's route gone {gone:?} after SIGTERM");
        std::thread::sleep(Duration::from_secs(3));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // The drain itself loses nothing: node 0 keeps accepting through withdraw_delay and
    // finishes what it has. What plain ECMP does at the route change is another matter:
    // the router (BIRD into Linux multipath, hash-threshold) re-spreads the hash space
    // over the two survivors, so the one connection in flight at that instant may move
    // to a node that does not know it (see the README). Every connection started after
    // the change must succeed; at most that one may fail.
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("failed connections during the drain: {failed}");
    assert!(
        failed <= 1,
        "{failed} failures: more than the connection in flight at the route change"
    );
    let log = site.nodes[0].as_ref().unwrap().log();
    let withdrawn = log.find("VIP withdrawn").expect("withdrawal logged");
    let draining = log
        .find("all connections finished")
        .or_else(|| log.find("drain"))
        .unwrap_or(usize::MAX);
    assert!(withdrawn < draining, "withdrawn before draining:\n{log}");

    // 4. SIGKILL on node 1: BIRD dies with it; its route is gone within the timers.
    let killed = Instant::now();
    site.nodes[1].take().unwrap().proc.unwrap().signal("KILL");
    site.wait_next_hops(NODES - 2, Duration::from_secs(10));
    eprintln!("node 1's route gone {:?} after SIGKILL", killed.elapsed());
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "within the 3 s hold time"
    );
    // After the window every client address is served again, now all by node 2, and
    // by the same backend as when nodes 0 and 1 served most of them: Maglev with the
    // same pools picks the same backend in every process.
    for (a, backend) in backend_of.iter().enumerate() {
        assert_eq!(
            site.request(a).as_deref(),
            Some(backend.as_str()),
            "address {a} after the failover"
        );
    }

    // 5. Node 2's backends all go down: it withdraws; back up: it announces again.
    for (b, h) in site.backends.iter_mut().zip(BACKENDS) {
        b.kill(&site.fleet.nodes.host(h).ns);
    }
    site.wait_next_hops(0, Duration::from_secs(10));
    let fleet = site.node_stats(2).fleet.unwrap();
    assert!(
        fleet.vips[0].reason.contains("0 of 2 backends up"),
        "{fleet:?}"
    );
    for (b, h) in site.backends.iter_mut().zip(BACKENDS) {
        b.restart(&site.fleet.nodes.host(h).ns);
    }
    site.wait_next_hops(1, Duration::from_secs(15));
    assert!(site.request(0).is_some(), "served again");
}

#[test]
fn an_ipv6_vip_is_announced_and_withdrawn_the_same_way() {
    let site = site_with(true);
    let hops = || site.next_hops_of(&format!("-6 route show {VIP6}/128"));
    lab::wait_for("three IPv6 next hops", Duration::from_secs(20), || {
        (hops().len() == NODES).then_some(())
    });
    let out = site.fleet.clients.host(0).ns.try_sh(&format!(
        "curl -sf --max-time 3 --cacert {} --resolve vip.test:443:[{VIP6}] https://vip.test/name",
        site.cacert
    ));
    assert!(out.status.success(), "HTTPS to the IPv6 VIP");
    site.nodes[0].as_ref().unwrap().signal("TERM");
    lab::wait_for(
        "node 0's IPv6 route withdrawn",
        Duration::from_secs(5),
        || (hops().len() == NODES - 1).then_some(()),
    );
}
