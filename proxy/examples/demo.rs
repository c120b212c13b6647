//! `cargo xtask demo`: the product at work on a built-in default, in network
//! namespaces on this host. A client, an attacker, the proxy and two nginx backends
//! on one bridge; a self-signed certificate; legitimate TLS traffic; then a bounded
//! attack; then what happened, as the operator sees it. Cleans up after itself
//! unless `--keep`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lab::attack::{heavy_source, spoofed_syn_flood};
use lab::config::*;
use lab::inside::in_netns;
use lab::site::{Lab, LabOptions};

fn step(n: u32, text: &str) {
    println!("\n\x1b[1m== {n}/7 {text}\x1b[0m");
}

fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    if let Err(e) = lab::ensure_root() {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
    let proxy = lab::proxyd::proxy_bin();

    step(
        1,
        "topology: proxy 10.77.0.1, client 10.77.0.2, nginx backends 10.77.0.3-4, attacker 10.77.0.5",
    );
    let mut lab = Lab::new(LabOptions {
        attackers: 1,
        ..Default::default()
    });
    for h in &lab.topo.hosts {
        println!("   namespace {:<24} eth0 {} {}", h.ns.name, h.ipv4, h.ipv6);
    }
    // On veth, SYN-ACKs sent back with XDP_TX arrive only if the other end runs XDP.
    lab.topo
        .accept_xdp_tx_from(
            0,
            std::path::Path::new(concat!(env!("OUT_DIR"), "/xdp-bench.o")),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));

    step(2, "a self-signed ECDSA certificate for demo.test (rcgen)");
    let cert = lab.cert("demo.test");
    println!("   {}", cert.cert.display());

    step(3, "proxy run with the built-in demo configuration");
    let pins = format!("/sys/fs/bpf/proxy-demo-{}", std::process::id());
    // TLS on :443, Maglev over two nginx backends, XDP on eth0 with per-source
    // limits, SYN cookies answered in XDP when SYNs flood in, unserved ports closed,
    // auto-blocking of sources that fail TLS handshakes.
    let config = Config::new()
        .with_listener(
            Listener::new("https", addr("10.77.0.1:443"), "web")
                .tls(tls(&cert).alpn(&["http/1.1"]))
                .syn_cookies(SynCookieMode::Auto),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_xdp(XdpSection {
            drop_sample_rate: 16,
            drop_log_interval: dur("2s"),
            syn_cookies: SynCookiesConfig {
                auto_on_syn_per_second: 1000,
                auto_off_after: dur("10s"),
            },
            service_filter: Some(ServiceFilterConfig::default()),
            ..XdpSection::on(&["eth0"], &pins).rate_limit(RateLimitConfig {
                packets_per_second: 5000,
                syn_per_second: 200,
                ..RateLimitConfig::default()
            })
        })
        .with_autoblock(AutoblockSection {
            failed_handshakes: 20,
            block_for: dur("10m"),
            ..AutoblockSection::default()
        })
        .to_toml();
    println!(
        "{}",
        config
            .lines()
            .map(|l| format!("   | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    lab.start_proxy(&config);
    let lb = &lab.topo.host(0).ns;
    println!("   {}", lb.sh("ip -br link show dev eth0 | head -1").trim());
    println!(
        "   {}",
        lb.sh("ip link show dev eth0 | grep -o 'prog/xdp.*'").trim()
    );
    let admin = format!("--socket {}", lab.path("admin.sock"));
    let cacert = cert.cert.display().to_string();
    let curl = format!(
        "curl -sS --max-time 5 --cacert {cacert} --resolve demo.test:443:10.77.0.1 https://demo.test/name"
    );

    step(
        4,
        "legitimate TLS traffic from 8 client addresses (curl, one new TLS connection each)",
    );
    // Maglev hashes the client address: one address always reaches one backend, so
    // the client host speaks from several (10.77.0.20-27) to show the spread.
    let sources: Vec<String> = (20..28).map(|i| format!("10.77.0.{i}")).collect();
    for ip in &sources {
        lab.client_ok(&format!("ip addr add {ip}/24 dev eth0"));
    }
    let mut served = std::collections::BTreeMap::<String, Vec<String>>::new();
    for ip in &sources {
        let answers = lab.client_ok(&format!("for i in 1 2 3; do {curl} --interface {ip}; done"));
        for backend in answers.lines() {
            served
                .entry(backend.to_string())
                .or_default()
                .push(ip.clone());
        }
    }
    let total: usize = served.values().map(Vec::len).sum();
    println!("   {total} requests (3 per address), served by:");
    for (backend, from) in &served {
        let mut addresses = from.clone();
        addresses.dedup();
        println!(
            "     {backend}: {} requests, from {}",
            from.len(),
            addresses.join(" ")
        );
    }
    println!("   (each address keeps its backend: Maglev on the client address)");

    step(
        5,
        "attack for ~8 s: junk instead of TLS + a UDP flood from 10.77.0.5, and a spoofed-source SYN flood",
    );
    let attacker = lab.attacker(0);
    let lb_ip: Ipv4Addr = "10.77.0.1".parse().unwrap();
    let lb_mac = lb.mac_of("eth0").unwrap();
    let t0 = Instant::now();
    let (legit, junk, udp, spoofed) = std::thread::scope(|s| {
        let legit = s.spawn(|| {
            lab.client_ok(&format!(
                "ok=0; fail=0; end=$(( $(date +%s) + 8 )); while [ $(date +%s) -lt $end ]; do \
                 if {curl} -o /dev/null 2>/dev/null; then ok=$((ok+1)); else fail=$((fail+1)); fi; done; echo $ok $fail"
            ))
        });
        let heavy = s.spawn(|| {
            in_netns(&attacker.ns, || {
                heavy_source(SocketAddr::from((lb_ip, 443)), 60)
            })
        });
        let spoofed = s.spawn(|| {
            in_netns(&attacker.ns, || {
                spoofed_syn_flood("eth0", lb_mac, lb_ip, 443, 200_000, Duration::from_secs(5))
            })
        });
        let (junk, udp) = heavy.join().unwrap();
        (legit.join().unwrap(), junk, udp, spoofed.join().unwrap())
    });
    let mut l = legit.split_whitespace();
    println!(
        "   after {:.1} s: the client completed {} requests, {} failed",
        t0.elapsed().as_secs_f64(),
        l.next().unwrap_or("?"),
        l.next().unwrap_or("?")
    );
    println!(
        "   attacker: {}/60 junk connections accepted before the block, {udp} UDP packets sent",
        junk.iter().filter(|&&established| established).count()
    );
    println!(
        "   spoofed SYNs sent: {} (each from a new 10.200.x.y source)",
        spoofed.sent
    );

    step(6, "what the operator sees");
    let show = |title: &str, cmd: &str| {
        println!("\n   $ {title}");
        let out = lb.try_sh(cmd);
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("   {line}");
        }
    };
    show(
        "proxy block list",
        &format!("{proxy} block list --pin-path {pins}"),
    );
    show(
        "proxy stats",
        &format!("{proxy} stats {admin} --pin-path {pins}"),
    );
    show("proxy top -n 5", &format!("{proxy} top -n 5 {admin}"));
    show(
        &format!("bpftool map dump pinned {pins}/BLOCK_V4"),
        &format!("bpftool map dump pinned {pins}/BLOCK_V4 | head -24"),
    );
    show(
        "grep 'blocked in the kernel\\|dropped in the last' proxy.log",
        &format!(
            "grep -h 'blocked in the kernel\\|dropped in the last' {} | head -4 | cut -c1-220",
            lab.proxy().log.display()
        ),
    );
    show(
        "curl http://127.0.0.1:9100/metrics | grep xdp_packets",
        "curl -s http://127.0.0.1:9100/metrics | grep '^proxy_xdp_packets_total' | head -11",
    );

    if keep {
        step(7, "leaving everything up (--keep)");
        let pids: Vec<String> = lab
            .proxy
            .iter()
            .map(|p| p.proc.as_ref().map(|p| p.pid()).unwrap_or(0).to_string())
            .collect();
        let mut script =
            String::from("#!/bin/sh\n# Removes what `cargo xtask demo --keep` left running.\n");
        for pid in pids {
            script += &format!("kill {pid} 2>/dev/null\n");
        }
        for h in &lab.topo.hosts {
            script += &format!(
                "ip netns pids {n} | xargs -r kill; ip netns del {n}\n",
                n = h.ns.name
            );
        }
        script += &format!(
            "ip netns del {}\nrm -rf {pins} {} /sys/fs/bpf/lab-{}-xdp-tx-*\n",
            lab.topo.switch_name().unwrap_or("-"),
            lab.dir.path().display(),
            std::process::id()
        );
        let path = "/tmp/proxy-demo-cleanup.sh";
        std::fs::write(path, script).unwrap();
        println!(
            "   explore: ip netns exec {} {proxy} stats {admin}",
            lb.name
        );
        println!("   clean up: sh {path}");
        std::mem::forget(lab);
        return;
    }
    step(
        7,
        "cleaning up: stopping the proxy and nginx, removing namespaces and pins",
    );
    drop(lab);
    let _ = std::fs::remove_dir_all(&pins);
    println!("   done");
}
