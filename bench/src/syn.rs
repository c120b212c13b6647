//! `cargo xtask bench syn`: what a spoofed SYN flood costs the load balancer. Parts
//! (`--part`, all by default):
//!
//! 1. `test-run`: ns per packet via BPF_PROG_TEST_RUN (proxy/benches/syn.rs): a SYN
//!    answered with a cookie, a valid / a bad cookie ACK, a closed-port drop, each × a
//!    bare XDP_DROP in the same rounds.
//! 2. `pair`: softirq per spoofed SYN on one veth pair, no bridge (`syn_pair.rs`):
//!    XDP cookies vs the kernel's own vs an XDP drop, with the generator's end
//!    passing the answers to its stack or dropping them (`--peer`).
//! 3. `bridge`: live on veth, three hosts on a bridge (`lb` 10.77.0.1 with `proxy` on CPU 0,
//!    `gen` 10.77.0.2 with the TLS load generator and nginx on CPU 1, `at` 10.77.0.3
//!    with trafgen pinned to CPU 0: on veth the receive work of its packets runs on
//!    the sender's CPU, where a NIC's softirq would be). trafgen sends SYNs from random
//!    sources at the TLS port at its full rate. Per scenario: softirq CPU per spoofed
//!    SYN on CPU 0 (flood alone), then legitimate TLS transactions/s during the flood.
//!    Scenarios: no flood; flood answered with XDP SYN cookies; flood with XDP cookies
//!    off (the kernel's own SYN cookies, `tcp_syncookies = 2`); flood dropped in XDP
//!    (its sources blocklisted): the floor.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::binaries::proxy_and_generator;
use crate::flood::{softirq_seconds, start_flooded_proxy, xdp_packets};
use crate::results;
use crate::syn_pair;
use lab::PinDir;
use lab::certs::{self, KeyType};
use lab::config::*;
use lab::process::raise_fd_limit;
use lab::stats::{median, min_max};
use lab::trafgen::{Flood, Trafgen};

use crate::hosts::{
    BACKEND_PORT, GEN_CPU, GEN_IP, LB_CPU, LB_IP, SERVER_NAME, TLS_PORT, lb_generator_and,
};

/// A part of the benchmark.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    TestRun,
    Pair,
    Bridge,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Parts to run (comma-separated): test-run, pair, bridge.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Part::TestRun, Part::Pair, Part::Bridge])]
    pub part: Vec<Part>,
    /// The pair part's generator end (comma-separated): pass (its stack receives the
    /// SYN-ACKs), drop (they end in its XDP program, as on a wire).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [syn_pair::Peer::Pass, syn_pair::Peer::Drop])]
    pub peer: Vec<syn_pair::Peer>,
    /// Rounds (each measures every scenario once, order rotating).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of flood alone (softirq cost) and of legitimate load during the flood.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// BPF_PROG_TEST_RUN runs per measurement (part 1).
    #[arg(long, default_value_t = 200_000)]
    pub repeat: u32,
    /// Skip part 1 (BPF_PROG_TEST_RUN): the same as `--part pair,bridge`.
    #[arg(long)]
    pub live_only: bool,
    /// Send the flood at this many SYN/s (the same offered load in every scenario)
    /// instead of trafgen's full rate (which depends on how much of the shared CPU
    /// each scenario leaves it).
    #[arg(long)]
    pub syn_pps: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    NoFlood,
    XdpCookies,
    KernelCookies,
    XdpDrop,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::NoFlood,
        Scenario::XdpCookies,
        Scenario::KernelCookies,
        Scenario::XdpDrop,
    ];

    fn label(self) -> &'static str {
        match self {
            Scenario::NoFlood => "no flood (XDP cookies on)",
            Scenario::XdpCookies => "flood, answered with XDP SYN cookies",
            Scenario::KernelCookies => "flood, XDP cookies off (kernel SYN cookies)",
            Scenario::XdpDrop => "flood dropped in XDP (blocklisted)",
        }
    }
}

#[derive(Default)]
struct Samples {
    tps: Vec<f64>,
    softirq_us_per_syn: Vec<f64>,
    flood_pps: Vec<f64>,
}

pub fn run(args: Args, root: &Path) -> anyhow::Result<()> {
    lab::ensure_root()?;
    let wants = |part| args.part.contains(&part);
    println!("CPU: {}", crate::cpu::model());
    if wants(Part::TestRun) && !args.live_only {
        test_run_costs(&args, root)?;
    }
    if !wants(Part::Pair) && !wants(Part::Bridge) {
        return Ok(());
    }
    raise_fd_limit();
    let (proxy_bin, generator) = proxy_and_generator()?;
    let dir = tempfile::Builder::new()
        .prefix("proxy-bench-syn")
        .tempdir()?;
    let d = dir.path();
    let bench_object = ebpf_build::bench_object_path(root);
    if wants(Part::Pair) {
        let pair = syn_pair::PairArgs {
            peers: &args.peer,
            rounds: args.rounds,
            seconds: args.seconds,
            syn_pps: args.syn_pps,
            proxy_bin: &proxy_bin,
            bench_object: &bench_object,
        };
        syn_pair::run(&pair, d)?;
    }
    if wants(Part::Bridge) {
        bridge(&args, &proxy_bin, &generator, &bench_object, d)?;
    }
    Ok(())
}

/// Part 3: three hosts on a bridge, legitimate TLS load during the flood.
fn bridge(
    args: &Args,
    proxy_bin: &Path,
    generator: &Path,
    bench_object: &Path,
    d: &Path,
) -> anyhow::Result<()> {
    let cert = certs::try_write(d, "ec", KeyType::EcdsaP256, SERVER_NAME, &[SERVER_NAME])?;
    let pins = PinDir::new("bench-syn");
    let (mut topo, _backend) = lb_generator_and(d, &["at"])?;
    topo.accept_xdp_tx_from(0, bench_object)?;
    let (lb, gen_ns, at) = (&topo.host(0).ns, &topo.host(1).ns, &topo.host(2).ns);
    // The way back to the spoofed sources (through the attacker's host), as a server
    // has one: without it the kernel drops each SYN at the route lookup for its
    // SYN-ACK, before any cookie (the kernel-cookie row measured that until then).
    lb.exec(&format!(
        "ip route add 10.200.0.0/16 via {}",
        topo.host(2).ipv4
    ))?;
    let lb_mac = lb.mac_of("eth0")?;
    let dd = d.display();
    let legit_load = |seconds: f64| {
        format!(
            "{} client handshakes --addr {LB_IP}:{TLS_PORT} --name {SERVER_NAME} --ca {dd}/ec.pem \
             --get /small --concurrency 32 --seconds {seconds}",
            generator.display()
        )
    };
    let flood = |seconds: f64| Trafgen {
        flood: Flood::Syn,
        dst_mac: lb_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        dst: LB_IP.into(),
        port: TLS_PORT,
        packets: 50_000_000,
        rate: args.syn_pps,
        max_time: Duration::from_secs_f64(seconds),
        cpu: Some(LB_CPU.into()),
    };

    let mut results: Vec<(Scenario, Samples)> = Scenario::ALL
        .iter()
        .map(|s| (*s, Samples::default()))
        .collect();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        let mut order = Scenario::ALL.to_vec();
        order.rotate_left(round % Scenario::ALL.len());
        for scenario in order {
            let config = d.join("proxy.toml");
            std::fs::write(&config, proxy_conf(d, &cert, &pins, scenario))?;
            let proxy = start_flooded_proxy(
                lb,
                proxy_bin,
                &config,
                &d.join("admin.sock"),
                scenario == Scenario::KernelCookies,
            )?;
            let sample = &mut results
                .iter_mut()
                .find(|r| r.0 == scenario)
                .expect("scenario")
                .1;
            let tps = if scenario == Scenario::NoFlood {
                legit_rate(gen_ns, &legit_load(args.seconds))?
            } else {
                let total = 2.0 * args.seconds + 1.0;
                std::thread::scope(|s| -> anyhow::Result<f64> {
                    let attack = s.spawn(|| flood(total).run(at, "eth0", d));
                    std::thread::sleep(Duration::from_millis(500));
                    // Flood alone: softirq on the LB's CPU per spoofed SYN the XDP program saw.
                    let seen = || xdp_packets(lb, proxy_bin, &d.join("admin.sock"));
                    let (soft0, seen0, t0) = (softirq_seconds(LB_CPU)?, seen()?, Instant::now());
                    std::thread::sleep(Duration::from_secs_f64(args.seconds));
                    let (soft1, seen1) = (softirq_seconds(LB_CPU)?, seen()?);
                    let packets = (seen1 - seen0).max(1.0);
                    sample
                        .softirq_us_per_syn
                        .push((soft1 - soft0) / packets * 1e6);
                    sample.flood_pps.push(packets / t0.elapsed().as_secs_f64());
                    // Then legitimate load during the flood.
                    let tps = legit_rate(gen_ns, &legit_load(args.seconds - 0.5))?;
                    let sent = attack.join().expect("flood thread")?;
                    eprintln!("    trafgen sent {sent} SYNs");
                    Ok(tps)
                })?
            };
            sample.tps.push(tps);
            eprintln!(
                "  {:<46} {tps:>7.0} tx/s{}",
                scenario.label(),
                match (sample.softirq_us_per_syn.last(), sample.flood_pps.last()) {
                    (Some(us), Some(pps)) if scenario != Scenario::NoFlood =>
                        format!(", flood {pps:.0} SYN/s seen by XDP, softirq {us:.2} µs/SYN"),
                    _ => String::new(),
                }
            );
            drop(proxy);
        }
    }
    lb.exec("sysctl -qw net.ipv4.tcp_syncookies=1")?;

    let base = median(&results[0].1.tps);
    let drop_us = median(&results[3].1.softirq_us_per_syn);
    let rate = args
        .syn_pps
        .map_or("full rate".to_string(), |r| format!("{r} SYN/s"));
    println!(
        "\n{} rounds; proxy on CPU {LB_CPU}, generator + nginx on CPU {GEN_CPU}, trafgen (random sources, {rate}) on CPU {LB_CPU}\n",
        args.rounds
    );
    println!(
        "| scenario | legit TLS tx/s, median (min-max) | vs no flood | flood SYN/s seen by XDP | softirq µs per spoofed SYN (min-max) | × XDP drop |"
    );
    println!("|---|---|---|---|---|---|");
    for (scenario, s) in &results {
        let (lo, hi) = min_max(&s.tps);
        let (cost, pps, ratio) = if s.softirq_us_per_syn.is_empty() {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            let (clo, chi) = min_max(&s.softirq_us_per_syn);
            let us = median(&s.softirq_us_per_syn);
            (
                format!("{us:.2} ({clo:.2}-{chi:.2})"),
                format!("{:.0}", median(&s.flood_pps)),
                format!("{:.2}", us / drop_us),
            )
        };
        println!(
            "| {} | {:.0} ({lo:.0}-{hi:.0}) | {:.0}% | {pps} | {cost} | {ratio} |",
            scenario.label(),
            median(&s.tps),
            median(&s.tps) / base * 100.0
        );
    }
    Ok(())
}

/// Part 1: proxy/benches/syn.rs on CPU 1.
fn test_run_costs(args: &Args, root: &Path) -> anyhow::Result<()> {
    eprintln!("[bench syn] part 1: BPF_PROG_TEST_RUN (proxy/benches/syn.rs) on CPU 1");
    let extra = ["--repeat".to_string(), args.repeat.to_string()];
    crate::binaries::proxy_cargo_bench_on_cpu1(root, "syn", &extra)
}

/// Completed TLS transactions per second from the generator.
fn legit_rate(gen_ns: &lab::Netns, cmd: &str) -> anyhow::Result<f64> {
    let out = gen_ns.output_on_cpu(GEN_CPU, cmd)?;
    let j: results::Connections = results::parse(&out)?;
    Ok(j.rate())
}

fn proxy_conf(d: &Path, cert: &certs::CertFiles, pins: &PinDir, scenario: Scenario) -> String {
    let cookies = if scenario == Scenario::KernelCookies {
        SynCookieMode::Off
    } else {
        SynCookieMode::On
    };
    let mut xdp = XdpSection::on(&["eth0"], &pins.0);
    if scenario == Scenario::XdpDrop {
        xdp = xdp.block(list_entry("10.200.0.0/16"));
    }
    Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{LB_IP}:{TLS_PORT}")), "web")
                .tls(tls(cert))
                .syn_cookies(cookies),
        )
        .with_pool(
            Pool::new("web", addrs(&[format!("{GEN_IP}:{BACKEND_PORT}")])).health(Health::off()),
        )
        .with_log(Log {
            level: "warn".into(),
            ..Log::default()
        })
        .with_admin(AdminSection {
            socket: d.join("admin.sock"),
            metrics: None,
        })
        .with_xdp(xdp)
        .to_toml()
}
