//! Protection under attack, end to end: while one heavy source sends junk TLS
//! connections and then a packet flood, and a spoofed-source SYN flood runs, real
//! TLS clients (curl) keep completing their requests, and the heavy source ends up
//! blocked by the kernel (auto-blocked, then dropped by XDP). Needs root.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lab::attack::{heavy_source, spoofed_syn_flood};
use lab::certs::{self, KeyType};
use lab::inside::in_netns;
use lab::site::{Lab, LabOptions};
use serde_json::Value;

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
    let cert = certs::write(
        lab.dir.path(),
        "site",
        KeyType::EcdsaP256,
        "site.test",
        &["site.test"],
    );
    let pins = lab::PinDir::new("attack");
    let config = format!(
        r#"
[[listener]]
name = "https"
bind = "{lb}:443"
pool = "web"
[listener.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[pool]]
name = "web"
{backends}

[xdp]
interfaces = ["eth0"]
pin_path = "{pins}"
drop_sample_rate = 16
drop_log_interval = "1s"
[xdp.rate_limit]
packets_per_second = 5000
syn_per_second = 200

[autoblock]
failed_handshakes = 20
window = "10s"
block_for = "10m"
"#,
        lb = lab.lb_ip(),
        cert = cert.cert.display(),
        key = cert.key.display(),
        backends = lab.backends_toml(),
        pins = pins.0.display(),
    );
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
        "in {:?}: legit {} ok / {} failed; heavy source: {junk}/60 junk connections got through, \
         {udp_sent} UDP packets sent; spoofed SYNs sent: {} in {:?}",
        started.elapsed(),
        legit.0,
        legit.1,
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
    let proxy = env!("CARGO_BIN_EXE_proxy");
    let lb = &lab.topo.host(0).ns;
    let list: Value = serde_json::from_str(&lb.sh(&format!(
        "{proxy} block list --json --pin-path {}",
        pins.0.display()
    )))
    .unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cidr"] == format!("{attacker_ip}/32"))
        .unwrap_or_else(|| panic!("attacker not on the blocklist: {list}"));
    assert_eq!(entry["origin"], "auto");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("failed TLS handshakes"),
        "{entry}"
    );
    assert!(
        junk < 60,
        "junk connections stop getting through once blocked ({junk}/60)"
    );
    assert!(
        lab.proxy().log().contains("blocked in the kernel"),
        "the auto-block is logged:\n{}",
        lab.proxy().log()
    );
    // ...and its flood died in XDP as `blocklisted`.
    let stats: Value = serde_json::from_str(&lb.sh(&format!(
        "{proxy} stats --json --socket {}",
        lab.path("admin.sock")
    )))
    .unwrap();
    let verdicts = &stats["xdp"]["interfaces"][0]["verdicts"];
    let blocked = verdicts["blocklisted"]["packets"].as_u64().unwrap();
    assert!(
        blocked >= udp_sent * 9 / 10,
        "UDP flood dropped as blocklisted: {blocked} of {udp_sent}"
    );
    assert!(
        stats["autoblock"]["by_trigger"]["failed_handshakes"]
            .as_u64()
            .unwrap()
            >= 1,
        "{stats}"
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
