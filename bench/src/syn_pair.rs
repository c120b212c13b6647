//! `cargo xtask bench syn`, the pair part: a spoofed SYN flood over one veth pair, no
//! bridge in the path (as close to a NIC as veth gets). `lb` (10.77.0.1: the proxy,
//! XDP on its eth0, a plain TCP listener) and `gen` (10.77.0.2: trafgen) share one
//! pair; `gen`'s end runs an XDP program so that the SYN-ACKs sent back with XDP_TX
//! arrive (a veth drops them otherwise). trafgen (bare SYNs from random sources in
//! 10.200.0.0/16) is pinned to the LB's CPU: on veth a packet's receive work runs on
//! the sender's CPU, where a NIC's softirq would be.
//!
//! Two peers (`--peer`): `pass` (a pass-all program: `gen`'s stack receives the
//! answers and drops them, they are not addressed to it, on the flooded CPU) and
//! `drop` (the answers end in `gen`'s XDP program, as on a wire: the flooded CPU
//! holds the LB's work and little else). Alike for the kernel's and the XDP
//! program's SYN-ACKs.
//!
//! Scenarios, order rotating per round: the flood answered with XDP SYN cookies, with
//! the kernel's own (XDP cookies off, `tcp_syncookies = 2`), dropped in XDP (sources
//! blocklisted). Per scenario and round: softirq time of the flooded CPU per SYN the
//! XDP program saw, the SYN rate, the SYN-ACKs `gen` received and the kernel's own
//! cookies (`TcpExtSyncookiesSent`) per SYN.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use lab::config::*;
use lab::stats::{median, min_max};
use lab::trafgen::{Flood, Trafgen};
use lab::{PinDir, Topology};

use crate::flood::{rx_packets, softirq_seconds, start_flooded_proxy, xdp_packets};
use crate::hosts::{BACKEND_PORT, GEN_IP, LB_CPU, LB_IP, TLS_PORT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    XdpCookies,
    KernelCookies,
    XdpDrop,
}

impl Scenario {
    const ALL: [Scenario; 3] = [
        Scenario::XdpCookies,
        Scenario::KernelCookies,
        Scenario::XdpDrop,
    ];

    fn label(self) -> &'static str {
        match self {
            Scenario::XdpCookies => "answered with XDP SYN cookies",
            Scenario::KernelCookies => "kernel SYN cookies (XDP cookies off)",
            Scenario::XdpDrop => "dropped in XDP (blocklisted)",
        }
    }
}

/// One round of one scenario.
struct Sample {
    softirq_ns_per_syn: f64,
    syn_per_second: f64,
    answers_per_syn: f64,
    kernel_cookies_per_syn: f64,
}

/// What becomes of the answers at the generator's end of the pair.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A pass-all XDP program: the generator's stack receives them.
    Pass,
    /// An XDP program that drops them, as a wire would take them away.
    Drop,
}

impl Peer {
    fn program(self) -> &'static str {
        match self {
            Peer::Pass => "xdp_pass",
            Peer::Drop => "bare_drop",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Peer::Pass => "pass-all XDP on the generator's end (its stack drops the SYN-ACKs)",
            Peer::Drop => "XDP drop on the generator's end (the SYN-ACKs end there, as on a wire)",
        }
    }
}

/// What the part needs from `bench syn`'s arguments.
pub struct PairArgs<'a> {
    pub peers: &'a [Peer],
    pub rounds: usize,
    pub seconds: f64,
    pub syn_pps: Option<u32>,
    pub proxy_bin: &'a Path,
    pub bench_object: &'a Path,
}

pub fn run(args: &PairArgs, d: &Path) -> anyhow::Result<()> {
    for peer in args.peers {
        run_with(args, *peer, d)?;
    }
    Ok(())
}

fn run_with(args: &PairArgs, peer: Peer, d: &Path) -> anyhow::Result<()> {
    let mut topo = Topology::pair("lb", "gen")?;
    topo.attach_to_peer(0, args.bench_object, peer.program())?;
    let (lb, gen_ns) = (&topo.host(0).ns, &topo.host(1).ns);
    // The way back to the spoofed sources, as a server has one: without it the
    // kernel drops a SYN at the route lookup of its SYN-ACK, before any cookie.
    lb.exec(&format!("ip route add 10.200.0.0/16 via {GEN_IP}"))?;
    let lb_mac = lb.mac_of("eth0")?;
    let pins = PinDir::new("bench-syn-pair");
    let admin = d.join("pair-admin.sock");
    let flood = Trafgen {
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
        max_time: Duration::from_secs_f64(args.seconds + 1.0),
        cpu: Some(LB_CPU.into()),
    };

    let mut samples: Vec<(Scenario, Vec<Sample>)> =
        Scenario::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for round in 0..args.rounds {
        eprintln!("[pair, {peer:?} peer] round {}/{}", round + 1, args.rounds);
        let mut order = Scenario::ALL.to_vec();
        order.rotate_left(round % Scenario::ALL.len());
        for scenario in order {
            let config = d.join("pair.toml");
            std::fs::write(&config, proxy_conf(&admin, &pins, scenario))?;
            let proxy = start_flooded_proxy(
                lb,
                args.proxy_bin,
                &config,
                &admin,
                scenario == Scenario::KernelCookies,
            )?;
            // trafgen sometimes gives up ("Flushing TX_RING failed: Resource
            // temporarily unavailable") when the veth's ring is full: measure again.
            let mut sample = None;
            for attempt in 1..=3 {
                match measure(args, lb, gen_ns, &flood, &admin, d)? {
                    Some(s) => {
                        sample = Some(s);
                        break;
                    }
                    None => eprintln!("    trafgen stopped early (attempt {attempt}/3)"),
                }
            }
            let sample = sample.context("trafgen stopped early three times")?;
            eprintln!(
                "  {:<40} {:>6.0} ns softirq/SYN, {:.0} SYN/s, {:.2} answers/SYN, {:.2} kernel cookies/SYN",
                scenario.label(),
                sample.softirq_ns_per_syn,
                sample.syn_per_second,
                sample.answers_per_syn,
                sample.kernel_cookies_per_syn
            );
            samples
                .iter_mut()
                .find(|(s, _)| *s == scenario)
                .expect("scenario")
                .1
                .push(sample);
            drop(proxy);
        }
    }
    lb.exec("sysctl -qw net.ipv4.tcp_syncookies=1")?;
    report(args, peer, &samples);
    Ok(())
}

/// One measurement of the running scenario: `None` when trafgen stopped early.
fn measure(
    args: &PairArgs,
    lb: &lab::Netns,
    gen_ns: &lab::Netns,
    flood: &Trafgen,
    admin: &Path,
    d: &Path,
) -> anyhow::Result<Option<Sample>> {
    std::thread::scope(|s| {
        let attack = s.spawn(|| flood.run(gen_ns, "eth0", d));
        std::thread::sleep(Duration::from_millis(500));
        let seen = || xdp_packets(lb, args.proxy_bin, admin);
        let answers = || rx_packets(gen_ns, "eth0");
        let cookies = || lb.nstat("TcpExtSyncookiesSent");
        let (soft0, seen0, rx0, k0) = (softirq_seconds(LB_CPU)?, seen()?, answers()?, cookies()?);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(args.seconds));
        let (soft1, seen1, rx1, k1) = (softirq_seconds(LB_CPU)?, seen()?, answers()?, cookies()?);
        let elapsed = t0.elapsed().as_secs_f64();
        match attack.join().expect("flood thread") {
            Ok(sent) => eprintln!("    trafgen sent {sent} SYNs"),
            Err(e) => {
                eprintln!("    {e:#}");
                return Ok(None);
            }
        }
        let syns = (seen1 - seen0).max(1.0);
        Ok(Some(Sample {
            softirq_ns_per_syn: (soft1 - soft0) / syns * 1e9,
            syn_per_second: syns / elapsed,
            answers_per_syn: (rx1 - rx0) / syns,
            kernel_cookies_per_syn: (k1 - k0) as f64 / syns,
        }))
    })
}

fn report(args: &PairArgs, peer: Peer, samples: &[(Scenario, Vec<Sample>)]) {
    let of = |scenario: Scenario| {
        &samples
            .iter()
            .find(|(s, _)| *s == scenario)
            .expect("scenario")
            .1
    };
    let (drop, kernel) = (of(Scenario::XdpDrop), of(Scenario::KernelCookies));
    let rate = args
        .syn_pps
        .map_or("full rate".to_string(), |r| format!("{r} SYN/s"));
    println!(
        "\nSpoofed SYN flood on a veth pair (no bridge), {}; {} rounds × {} s, trafgen ({rate}) and the proxy on CPU {LB_CPU}; CPU: {}\n",
        peer.label(),
        args.rounds,
        args.seconds,
        crate::cpu::model()
    );
    println!(
        "| scenario | softirq ns per SYN, median (min-max) | × XDP drop (paired) | × kernel cookies (paired) | SYN/s at XDP | SYN-ACKs per SYN | kernel cookies per SYN |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (scenario, rows) in samples {
        let ns: Vec<f64> = rows.iter().map(|s| s.softirq_ns_per_syn).collect();
        // Paired: each round's ratio to the other scenario measured in that round.
        let paired = |other: &[Sample]| {
            let r: Vec<f64> = rows
                .iter()
                .zip(other)
                .map(|(a, b)| a.softirq_ns_per_syn / b.softirq_ns_per_syn)
                .collect();
            format!("{:.2}", median(&r))
        };
        let (lo, hi) = min_max(&ns);
        let col = |f: fn(&Sample) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        // An XDP drop on the generator's end does not count as received.
        let answers = match peer {
            Peer::Pass => format!("{:.2}", col(|s| s.answers_per_syn)),
            Peer::Drop => "-".into(),
        };
        println!(
            "| {} | {:.0} ({lo:.0}-{hi:.0}) | {} | {} | {:.0} | {answers} | {:.2} |",
            scenario.label(),
            median(&ns),
            paired(drop),
            paired(kernel),
            col(|s| s.syn_per_second),
            col(|s| s.kernel_cookies_per_syn),
        );
    }
}

/// A plain TCP listener on the LB with cookies on (off for the kernel's cookies),
/// XDP on eth0; the flood's sources blocklisted for the drop.
fn proxy_conf(admin: &Path, pins: &PinDir, scenario: Scenario) -> String {
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
            Listener::new("tcp", addr(format!("{LB_IP}:{TLS_PORT}")), "backends")
                .syn_cookies(cookies),
        )
        .with_pool(
            Pool::new("backends", addrs(&[format!("{GEN_IP}:{BACKEND_PORT}")]))
                .health(Health::off()),
        )
        .with_log(Log {
            level: "warn".into(),
            ..Log::default()
        })
        .with_admin(AdminSection {
            socket: admin.to_path_buf(),
            metrics: None,
        })
        .with_xdp(xdp)
        .to_toml()
}
