//! `cargo xtask bench attack`: legitimate TLS transactions/s through `proxy` with no
//! flood, with a flood and the XDP fast path on, and with the same flood and XDP off
//! (userspace only), in the same run, rounds alternating the order.
//!
//! Three hosts on a bridge (`lab::Topology::star`): `lb` (10.77.0.1, the proxy,
//! CPU 0), `gen` (10.77.0.2: the legitimate load generator and the nginx backend,
//! CPU 1) and `at` (10.77.0.3, one heavy attacking source). A transaction is a new TCP connection,
//! a full TLS handshake (ECDSA P-256, no resumption), one small GET, close.
//! The attacker, pinned to the LB's CPU (on veth the receive work of its packets
//! runs on the sender's CPU, so this is where a real NIC's softirq would put it),
//! opens connections that send junk instead of a ClientHello, 64 at a time, and
//! sends a UDP flood at the TLS port. With XDP on, auto-blocking puts it on the
//! kernel blocklist after 20 failed handshakes and XDP drops the rest.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use lab::PinDir;
use lab::certs::{self, KeyType};
use lab::config::*;
use lab::process::raise_fd_limit;
use lab::stats::{median, min_max};

use crate::binaries::proxy_and_generator;
use crate::results;

use crate::hosts::{
    BACKEND_PORT, GEN_CPU, GEN_IP, LB_CPU, LB_IP, SERVER_NAME, TLS_PORT, lb_generator_and,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rounds (each measures every scenario once, order rotating).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of legitimate load per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// UDP flood rate from the attacker (packets/s). Its sending cost lands on the
    /// LB's CPU too (see the module doc), so high rates measure the sender as well.
    #[arg(long, default_value_t = 20_000)]
    pub udp_pps: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    NoFlood,
    FloodXdp,
    FloodNoXdp,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::NoFlood, Scenario::FloodXdp, Scenario::FloodNoXdp];

    fn label(self) -> &'static str {
        match self {
            Scenario::NoFlood => "no flood (XDP on)",
            Scenario::FloodXdp => "flood, XDP protection on",
            Scenario::FloodNoXdp => "flood, XDP off (userspace only)",
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    lab::ensure_root()?;
    raise_fd_limit();
    let (proxy_bin, generator) = proxy_and_generator()?;

    let dir = tempfile::Builder::new()
        .prefix("proxy-bench-attack")
        .tempdir()?;
    let d = dir.path();
    let cert = certs::try_write(d, "ec", KeyType::EcdsaP256, SERVER_NAME, &[SERVER_NAME])?;
    let pins = PinDir::new("bench-attack");
    let (topo, _backend) = lb_generator_and(d, &["at"])?;
    let (lb, gen_ns, at) = (&topo.host(0).ns, &topo.host(1).ns, &topo.host(2).ns);
    let dd = d.display();

    // Warm-up (backend, generator, page cache), not measured.
    {
        let config = d.join("proxy.toml");
        std::fs::write(&config, proxy_conf(d, &cert, None))?;
        let proxy = lb.start_on_cpu(
            LB_CPU,
            &format!("{} run --config {}", proxy_bin.display(), config.display()),
        )?;
        lb.wait_listening(&[TLS_PORT])?;
        gen_ns.output_on_cpu(
            GEN_CPU,
            &format!(
                "{} client handshakes --addr {LB_IP}:{TLS_PORT} --name {SERVER_NAME} --ca {dd}/ec.pem \
                 --get /small --concurrency 32 --seconds 2",
                generator.display()
            ),
        )?;
        drop(proxy);
    }
    let mut results: Vec<(Scenario, Vec<f64>, Vec<f64>)> =
        Scenario::ALL.iter().map(|s| (*s, vec![], vec![])).collect();
    let mut notes = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        let mut order = Scenario::ALL.to_vec();
        order.rotate_left(round % Scenario::ALL.len());
        for scenario in order {
            let config = d.join("proxy.toml");
            let xdp = (scenario != Scenario::FloodNoXdp).then_some(&pins);
            std::fs::write(&config, proxy_conf(d, &cert, xdp))?;
            let proxy = lb.start_on_cpu(
                LB_CPU,
                &format!(
                    "env RUST_LOG=warn {} run --config {}",
                    proxy_bin.display(),
                    config.display()
                ),
            )?;
            lb.wait_listening(&[TLS_PORT])?;
            let attacker = (scenario != Scenario::NoFlood).then(|| {
                at.command_on_cpu(
                    LB_CPU,
                    &format!(
                        "{} client attack --addr {LB_IP}:{TLS_PORT} --seconds {} --udp-pps {}",
                        generator.display(),
                        args.seconds + 2.0,
                        args.udp_pps
                    ),
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
            });
            let attacker = attacker.transpose().context("starting the attacker")?;
            // Let the attack start (and, with XDP, the auto-block happen) first.
            std::thread::sleep(Duration::from_secs(1));
            let before = proxy.cpu_seconds();
            let out = gen_ns.output_on_cpu(
                GEN_CPU,
                &format!(
                    "{} client handshakes --addr {LB_IP}:{TLS_PORT} --name {SERVER_NAME} --ca {dd}/ec.pem \
                     --get /small --concurrency 32 --seconds {}",
                    generator.display(),
                    args.seconds
                ),
            )?;
            let cpu = proxy.cpu_seconds() - before;
            let j: results::Connections = results::parse(&out)?;
            let rate = j.rate();
            let entry = results
                .iter_mut()
                .find(|r| r.0 == scenario)
                .expect("scenario");
            entry.1.push(rate);
            entry.2.push(cpu / j.seconds * 100.0);
            let attack = match attacker {
                Some(child) => {
                    let out = child.wait_with_output()?;
                    let a: results::Attack = results::parse(&String::from_utf8_lossy(&out.stdout))?;
                    format!(
                        "{} junk connections ({} connected), {} UDP datagrams",
                        a.junk_attempts, a.junk_connected, a.udp_sent
                    )
                }
                None => "none".into(),
            };
            eprintln!(
                "  {:<34} {rate:>7.0} tx/s ({} errors), proxy CPU {:.0}%, attacker: {attack}",
                scenario.label(),
                j.errors,
                cpu / j.seconds * 100.0
            );
            if round == 0 && scenario != Scenario::NoFlood {
                notes.push(format!("{}: attacker {attack}", scenario.label()));
            }
            drop(proxy);
        }
    }

    let base = median(&results[0].1);
    println!(
        "\n{} rounds x {} s; proxy on CPU {LB_CPU}, generator + backend on CPU {GEN_CPU}, attacker on CPU {LB_CPU}; \
         UDP flood {} packets/s + junk-TLS connections (64 at a time)\n",
        args.rounds, args.seconds, args.udp_pps
    );
    println!("| scenario | legit TLS transactions/s, median (min-max) | vs no flood | proxy CPU |");
    println!("|---|---|---|---|");
    for (scenario, rates, cpu) in &results {
        let (lo, hi) = min_max(rates);
        println!(
            "| {} | {:.0} ({lo:.0}-{hi:.0}) | {:.0}% | {:.0}% |",
            scenario.label(),
            median(rates),
            median(rates) / base * 100.0,
            median(cpu)
        );
    }
    for n in notes {
        println!("note: {n}");
    }
    Ok(())
}

/// The proxy under attack: one TLS listener; with `xdp` (its pin directory), the
/// XDP fast path and auto-blocking.
fn proxy_conf(d: &Path, cert: &certs::CertFiles, xdp: Option<&PinDir>) -> String {
    let mut config = Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{LB_IP}:{TLS_PORT}")), "web").tls(tls(cert)),
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
        });
    if let Some(pins) = xdp {
        // Limits above what the one legitimate generator address sends; the
        // connection-rate trigger is off for the same reason (one busy client).
        config = config
            .with_xdp(
                XdpSection::on(&["eth0"], &pins.0).rate_limit(RateLimitConfig {
                    packets_per_second: 200_000,
                    syn_per_second: 20_000,
                    ..RateLimitConfig::default()
                }),
            )
            .with_autoblock(AutoblockSection {
                failed_handshakes: 20,
                new_connections: 0,
                ..AutoblockSection::default()
            });
    }
    config.to_toml()
}
