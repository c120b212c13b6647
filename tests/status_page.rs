//! The live status page in a real browser (Debian's headless Chromium): loaded while
//! traffic and a bounded flood run in the lab, its numbers must equal
//! `proxy stats --json`, its drop chart must move, a source blocked with the CLI
//! must appear (its reason escaped, never markup), and a screenshot is kept in the
//! test's output. On a fleet node (BGP to a BIRD router, the etcd store, a steered
//! VIP) its Fleet section must show the VIP, the session, the store and the members
//! as `proxy stats` has them, and follow a withdrawal and the store's loss; on a node
//! without a fleet the section stays hidden. Needs root.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use lab::Netns;
use lab::config::*;
use lab::fleet_site::FleetSite;
use lab::inside::spawn_in_netns;
use lab::site::{Lab, LabOptions};
use proxy::api::Stats;

const FLOOD_PORT: u16 = 9000;

/// The page after `budget_ms` of (virtual) time in headless Chromium, run inside the
/// load balancer's namespace: its DOM, or a screenshot written to `screenshot`.
fn chromium(lab: &Lab, budget_ms: u32, screenshot: Option<&str>) -> String {
    chromium_in(&lab.lb().ns, lab.dir.path(), budget_ms, screenshot)
}

/// [`chromium`] in `ns`, with its home and profile under `dir`.
fn chromium_in(ns: &Netns, dir: &Path, budget_ms: u32, screenshot: Option<&str>) -> String {
    let output = match screenshot {
        Some(path) => format!("--screenshot={path} --window-size=1200,1700 --hide-scrollbars"),
        None => "--dump-dom".to_string(),
    };
    ns.sh(&format!(
        "HOME={} timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run \
         --user-data-dir={} --virtual-time-budget={budget_ms} {output} http://127.0.0.1:9100/status 2>/dev/null",
        dir.display(),
        dir.join("chromium-profile").display()
    ))
}

/// The text of each `<td>` of the first `<tr` carrying `attr`.
fn row(dom: &str, attr: &str) -> Vec<String> {
    let start = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no row with {attr} in the page:\n{dom}"));
    let end = start + dom[start..].find("</tr>").unwrap();
    dom[start..end]
        .split("<td")
        .skip(1)
        .map(|c| {
            let text = &c[c.find('>').unwrap() + 1..];
            text[..text.find("</td>").unwrap()].to_string()
        })
        .collect()
}

fn stats(lab: &Lab) -> Stats {
    serde_json::from_str(&lab.stats_json()).unwrap()
}

#[test]
fn the_status_page_shows_what_proxy_stats_says() {
    let mut lab = Lab::new(LabOptions {
        backends: 2,
        attackers: 1,
        ..LabOptions::default()
    });
    let cert = lab.cert("st.test");
    let pins = lab::PinDir::new("status");
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(Listener::new("tls", addr(format!("{lb}:443")), "web").tls(tls(&cert)))
        .with_listener(Listener::new("plain", addr(format!("{lb}:8080")), "web"))
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_xdp(XdpSection {
            drop_sample_rate: 1,
            ..XdpSection::on(&["eth0"], &pins.0).rate_limit(RateLimitConfig {
                packets_per_second: 100,
                ports: vec![FLOOD_PORT],
                ..RateLimitConfig::default()
            })
        })
        .with_autoblock(AutoblockSection::default())
        .to_toml();
    lab.start_proxy(&config);
    for _ in 0..4 {
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 http://{lb}:8080/name"
        ));
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 --cacert {} --resolve st.test:443:{lb} https://st.test/name",
            cert.cert.display()
        ));
    }
    lab.cli(&format!(
        "block add 203.0.113.9 --ttl 1h --reason '<b>cli</b> & co' --pin-path {}",
        pins.display()
    ));

    // A bounded UDP flood over the rate limit while the page polls: the chart moves.
    let target: SocketAddr = format!("{lb}:{FLOOD_PORT}").parse().unwrap();
    let flood = spawn_in_netns(&lab.attacker(0).ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        let (start, mut sent) = (Instant::now(), 0u64);
        // About 20,000 packets/s, for at most 300,000 packets or 20 s.
        while sent < 300_000 && start.elapsed() < Duration::from_secs(20) {
            if sock.send_to(&[0u8; 64], target).is_ok() {
                sent += 1;
            }
            if sent % 20 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_secs(1));
    let during = chromium(&lab, 9000, None);
    // The screenshot while the flood still runs, so the chart shows it.
    let shot = lab.path("status.png");
    chromium(&lab, 7000, Some(&shot));
    let sent = flood.join().unwrap();
    let rate_attr = during
        .split("data-last-drop-rate=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no drop rate on the chart:\n{during}"));
    let samples: u32 = during
        .split("data-samples=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    eprintln!("flood of {sent} packets; chart: {samples} samples, last {rate_attr} drops/s");
    assert!(samples >= 2, "the chart has points: {samples}");
    assert!(
        rate_attr.parse::<u64>().unwrap() > 0,
        "the drop chart moves during the flood"
    );

    // Quiet now: the page and `proxy stats` must agree exactly.
    std::thread::sleep(Duration::from_millis(500));
    let dom = chromium(&lab, 3000, None);
    let stats = stats(&lab);
    let text = |cells: &[String], i: usize| cells[i].clone();
    assert_eq!(
        dom.split("id=\"connections-open\">")
            .nth(1)
            .and_then(|s| s.split('<').next()),
        Some(stats.connections_open.to_string().as_str())
    );
    for l in &stats.listeners {
        let cells = row(&dom, &format!("data-listener=\"{}\"", l.name));
        assert_eq!(text(&cells, 0), l.name);
        assert_eq!(
            text(&cells, 2),
            l.connections_total.to_string(),
            "{}: total",
            l.name
        );
        assert_eq!(
            text(&cells, 4),
            l.tls_handshakes.to_string(),
            "{}: handshakes",
            l.name
        );
    }
    for b in stats.pools.iter().flat_map(|p| &p.backends) {
        let cells = row(&dom, &format!("data-backend=\"{}\"", b.address));
        assert_eq!(text(&cells, 2), if b.healthy { "up" } else { "DOWN" });
        assert_eq!(text(&cells, 3), b.weight.to_string());
        assert_eq!(text(&cells, 5), b.connect_failures.to_string());
    }
    let xdp = stats.xdp.as_ref().unwrap();
    let eth0 = xdp
        .interfaces
        .iter()
        .find(|i| i.interface.as_deref() == Some("eth0"))
        .unwrap();
    let cells = row(&dom, "data-interface=\"eth0\"");
    for (i, reason) in ["blocklisted", "rate_pps"].iter().enumerate() {
        let want = eth0.verdicts.get(
            proxy_common::Reason::ALL
                .into_iter()
                .find(|r| r.name() == *reason)
                .unwrap(),
        );
        let column = 4 + i; // interface, mode, passed, allowlisted, blocklisted, rate_pps
        assert_eq!(text(&cells, column), want.packets.to_string(), "{reason}");
    }
    assert!(eth0.verdicts.get(proxy_common::Reason::RatePps).packets > 0);
    // The CLI's block is listed, its reason as text (escaped), not markup.
    let blocked = row(&dom, "data-cidr=\"203.0.113.9/32\"");
    assert_eq!(text(&blocked, 1), "manual");
    assert_eq!(text(&blocked, 3), "&lt;b&gt;cli&lt;/b&gt; &amp; co");
    assert!(!dom.contains("<b>cli</b>"));
    // The flooding source tops the dropped sources.
    let top_table = &dom[dom.find("<table id=\"top\">").expect("the top table")..];
    let top = row(&top_table[top_table.find("<tbody>").unwrap()..], "<tr");
    assert_eq!(
        text(&top, 0),
        lab.attacker(0).ipv4,
        "the attacker tops the dropped sources"
    );
    // Columns: source, ~dropped, ~answered with SYN cookies, drops by reason.
    assert_eq!(text(&top, 2), "0", "no cookie answers here: {top:?}");
    assert!(text(&top, 3).starts_with("rate_pps="), "{top:?}");
    // No [bgp], no [fleet.policy]: no Fleet section.
    assert!(dom.contains("<section id=\"fleet\" hidden"), "{dom}");

    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::copy(&shot, &kept).unwrap();
    eprintln!("screenshot: {}", kept.display());
}

/// The Fleet section on a one-node fleet: BGP to a BIRD router, one etcd member, the
/// node a steering member of a steered VIP.
#[test]
fn the_status_page_shows_the_fleet() {
    let mut site =
        FleetSite::one_steered_node(concat!(env!("OUT_DIR"), "/xdp-bench.o").into()).unwrap();
    let ns = &site.fleet.nodes.host(0).ns;
    let node_stats =
        |site: &FleetSite| -> Stats { serde_json::from_str(&site.node_stats_json(0)).unwrap() };

    // Announced, Established, connected, an active steering member.
    let dom = chromium_in(ns, site.dir.path(), 3000, None);
    let stats = node_stats(&site);
    assert!(dom.contains("<section id=\"fleet\">"), "shown:\n{dom}");
    let fleet = stats.fleet.as_ref().expect("[bgp] in proxy stats");
    let store = stats
        .fleet_policy
        .as_ref()
        .expect("[fleet.policy] in proxy stats");
    let steering = store.steering.as_ref().expect("steering in proxy stats");
    let vip = row(&dom, &format!("data-vip=\"{}\"", site.vip()));
    assert_eq!(vip[1], "announced", "{vip:?}");
    assert_eq!(vip[2], fleet.vips[0].reason, "{vip:?}");
    assert_eq!(
        vip[3],
        format!(
            "steered · node0 active in table {}",
            steering.active_generation.unwrap()
        )
    );
    let peer = row(&dom, "data-peer=\"10.77.0.254\"");
    assert_eq!(peer[1], fleet.peers[0].state);
    assert!(peer[2].starts_with("Established"), "{peer:?}");
    let st = row(&dom, "data-store=\"node0\"");
    assert_eq!(
        (st[0].as_str(), st[1].as_str()),
        ("node0", "/proxy/"),
        "{st:?}"
    );
    assert_eq!(st[2], "connected", "{st:?}");
    assert!(st[4].parse::<i64>().unwrap() > 0, "a revision: {st:?}");
    assert_eq!(st[6], "0", "nothing pending: {st:?}");
    let etcd = &store.members[0];
    assert!(
        dom.contains(&format!("data-etcd-member=\"{etcd}\"")),
        "the etcd member {etcd} listed"
    );
    let member = row(&dom, "data-member=\"node0\"");
    assert_eq!(member[1], format!("{}:{}", steering.address, steering.port));
    assert_eq!(member[2], "active", "{member:?}");
    assert_eq!(
        member[4],
        steering.rows.to_string(),
        "every row: {member:?}"
    );
    let state = dom
        .split("id=\"steering-state\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap();
    assert!(state.contains("· active · store connected"), "{state}");

    // The backend stopped: withdrawn with the reason. etcd killed: unreachable.
    site.backends_up(false);
    site.wait_next_hops(0, Duration::from_secs(10)).unwrap();
    site.etcd.as_mut().unwrap().kill(0);
    lab::wait_for(
        "the store seen unreachable",
        Duration::from_secs(20),
        || {
            let store = node_stats(&site).fleet_policy?;
            (!store.connected && !store.steering?.connected).then_some(())
        },
    );
    let ns = &site.fleet.nodes.host(0).ns;
    let dom = chromium_in(ns, site.dir.path(), 3000, None);
    let vip = row(&dom, &format!("data-vip=\"{}\"", site.vip()));
    assert_eq!(vip[1], "withdrawn", "{vip:?}");
    assert_eq!(vip[2], "pool web: 0 of 1 backends up", "{vip:?}");
    let st = row(&dom, "data-store=\"node0\"");
    assert!(st[2].starts_with("UNREACHABLE ("), "{st:?}");
    assert!(
        dom.contains("store UNREACHABLE ("),
        "steering's store state:\n{dom}"
    );
    let shot = site.dir.path().join("fleet.png");
    chromium_in(ns, site.dir.path(), 3000, Some(&shot.display().to_string()));
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page-fleet.png");
    std::fs::copy(&shot, &kept).unwrap();
    eprintln!("screenshot: {}", kept.display());
}
