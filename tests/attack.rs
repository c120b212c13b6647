//! Protection under attack, end to end: while one heavy source sends junk TLS
//! connections and then a packet flood, and a spoofed-source SYN flood runs, real
//! TLS clients (curl) keep completing their requests, and the heavy source ends up
//! blocked by the kernel (auto-blocked, then dropped by XDP). Needs root.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lab::attack::{heavy_source, spoofed_syn_flood};
use lab::config::*;
use lab::inside::in_netns;
use lab::site::{Lab, LabOptions};
use proxy::api::{ListEntry, Origin, Stats};
use proxy_common::Reason;

/// Failed handshakes before a source is auto-blocked.
const FAILED_HANDSHAKES: u32 = 20;

/// Runs curl against the TLS listener for `duration`, one new TLS connection per
/// request; returns (completed, failed).
fn legit_requests(lab: &Lab, cacert: &str, duration: Duration) -> (u64, u64) {
    let script = format!(
        "end=$(( $(date +%s%N) + {ns} )); ok=0; fail=0; \
         while [ $(date +%s%N) -lt $end ]; do \
           if curl -sf --max-time 5 --cacert {cacert} --resolve site.test:443:{lb} https://site.test/name -o /dev/null; \
           then ok=$((ok+1)); else fail=$((fail+1)); fi; \
         done; echo $ok $fail",
        ns = duration.as_nanos(),
        lb = lab.lb_ip()
    );
    let out = lab.client_ok(&script);
    let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn legit_clients_keep_working_while_attackers_are_dropped() {
    let mut lab = Lab::new(LabOptions {
        attackers: 1,
        ..Default::default()
    });
    let cert = lab.cert("site.test");
    let pins = lab::PinDir::new("attack");
    let config = Config::new()
        .with_listener(
            Listener::new("https", addr(format!("{}:443", lab.lb_ip())), "web").tls(tls(&cert)),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_xdp(XdpSection {
            drop_sample_rate: 16,
            drop_log_interval: dur("1s"),
            ..XdpSection::on(&["eth0"], &pins.0).rate_limit(RateLimitConfig {
                packets_per_second: 5000,
                syn_per_second: 200,
                ..RateLimitConfig::default()
            })
        })
        .with_autoblock(AutoblockSection {
            failed_handshakes: FAILED_HANDSHAKES,
            window: dur("10s"),
            block_for: dur("10m"),
            ..AutoblockSection::default()
        })
        .to_toml();
    lab.start_proxy(&config);
    let cacert = cert.cert.display().to_string();

    // Before the attack.
    let (ok, failed) = legit_requests(&lab, &cacert, Duration::from_secs(2));
    assert!(ok > 0 && failed == 0, "baseline: {ok} ok, {failed} failed");

    let attacker = lab.attacker(0);
    let attacker_ip = attacker.ipv4.clone();
    let lb_ip: Ipv4Addr = lab.lb_ip().parse().unwrap();
    let lb_mac = lab.topo.host(0).ns.mac_of("eth0").unwrap();
    let tls_port = SocketAddr::from((lb_ip, 443));
    let started = Instant::now();
    let (legit, junk, udp_sent, spoofed) = std::thread::scope(|s| {
        let legit = s.spawn(|| legit_requests(&lab, &cacert, Duration::from_secs(8)));
        // The heavy source: junk instead of TLS (auto-blocked after 20), then a UDP flood.
        let heavy = s.spawn(|| in_netns(&attacker.ns, || heavy_source(tls_port, 60)));
        // A spoofed-source SYN flood at the TLS port: a new source every packet.
        let spoofed = s.spawn(|| {
            in_netns(&attacker.ns, || {
                spoofed_syn_flood("eth0", lb_mac, lb_ip, 443, 200_000, Duration::from_secs(5))
            })
        });
        let (junk, udp_sent) = heavy.join().unwrap();
        (
            legit.join().unwrap(),
            junk,
            udp_sent,
            spoofed.join().unwrap(),
        )
    });
    eprintln!(
        "in {:?}: legit {} ok / {} failed; heavy source: {}/60 junk connections got through, \
         {udp_sent} UDP packets sent; spoofed SYNs sent: {} in {:?}",
        started.elapsed(),
        legit.0,
        legit.1,
        junk.iter().filter(|&&established| established).count(),
        spoofed.sent,
        spoofed.elapsed
    );
    assert!(
        legit.0 > 0,
        "legit clients completed requests during the attack"
    );
    assert_eq!(legit.1, 0, "no legit request failed during the attack");
    assert!(
        spoofed.sent > 10_000,
        "the spoofed flood ran ({} packets)",
        spoofed.sent
    );

    // The heavy source was auto-blocked: on the kernel blocklist with origin auto...
    let list: Vec<ListEntry> =
        serde_json::from_str(&lab.cli(&format!("block list --json --pin-path {}", pins.display())))
            .unwrap();
    let entry = list
        .iter()
        .find(|e| e.cidr.to_string() == format!("{attacker_ip}/32"))
        .unwrap_or_else(|| panic!("attacker not on the blocklist: {list:?}"));
    assert_eq!(entry.origin, Origin::Auto);
    assert_eq!(
        entry.reason,
        format!("auto: {FAILED_HANDSHAKES} failed TLS handshakes in 10s"),
        "{entry:?}"
    );
    // The source is blocked once the auto-blocker has seen FAILED_HANDSHAKES
    // failures. How many more of its connections (opened one after another) get
    // through while that event is on its way depends on the machine's load, so the
    // test asserts the order instead: at least the threshold got through, and once
    // one attempt was refused (dropped in XDP), none got through again.
    let through = junk.iter().take_while(|&&established| established).count();
    assert!(
        through >= FAILED_HANDSHAKES as usize,
        "the first {FAILED_HANDSHAKES} junk connections got through: {junk:?}"
    );
    assert!(
        through < junk.len() && junk[through..].iter().all(|&established| !established),
        "junk connections stop getting through once blocked: {junk:?}"
    );
    assert!(
        lab.proxy().log().contains("blocked in the kernel"),
        "the auto-block is logged:\n{}",
        lab.proxy().log()
    );
    // ...and its flood died in XDP as `blocklisted`.
    let stats: Stats = serde_json::from_str(&lab.stats_json()).unwrap();
    let xdp = stats.xdp.as_ref().expect("XDP runs");
    let blocked = xdp.interfaces[0].verdicts.get(Reason::Blocklisted).packets;
    assert!(
        blocked >= udp_sent * 9 / 10,
        "UDP flood dropped as blocklisted: {blocked} of {udp_sent}"
    );
    assert_eq!(
        stats.autoblock.by_trigger.failed_handshakes, 1,
        "{:?}",
        stats.autoblock
    );
    // A new connection from the heavy source fails; the legit client still gets through.
    let refused = in_netns(&attacker.ns, || {
        std::net::TcpStream::connect_timeout(&tls_port, Duration::from_millis(500)).is_err()
    });
    assert!(refused, "the blocked source cannot connect");
    let (ok, failed) = legit_requests(&lab, &cacert, Duration::from_secs(1));
    assert!(
        ok > 0 && failed == 0,
        "after the attack: {ok} ok, {failed} failed"
    );
}
