//! `cargo xtask bench attack`: legitimate TLS transactions/s through `proxy` with no
//! flood, with a flood and the XDP fast path on, and with the same flood and XDP off
//! (userspace only), in the same run, rounds alternating the order.
//!
//! Three hosts on a bridge: `lb` (10.98.0.1, the proxy, CPU 0), `gen` (10.98.0.2:
//! the legitimate load generator and the nginx backend, CPU 1) and `at`
//! (10.98.0.3, one heavy attacking source). A transaction is a new TCP connection,
//! a full TLS handshake (ECDSA P-256, no resumption), one small GET, close.
//! The attacker, pinned to the LB's CPU (on veth the receive work of its packets
//! runs on the sender's CPU, so this is where a real NIC's softirq would put it),
//! opens connections that send junk instead of a ClientHello, 64 at a time, and
//! sends a UDP flood at the TLS port. With XDP on, auto-blocking puts it on the
//! kernel blocklist after 20 failed handshakes and XDP drops the rest.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::bench_tls::{
    Netns, Proc, build_release, cpu_seconds, median, num, raise_fd_limit, sh, wait_listening,
};

const LB_IP: &str = "10.98.0.1";
const GEN_IP: &str = "10.98.0.2";
const LB_CPU: &str = "0";
const GEN_CPU: &str = "1";
const TLS_PORT: u16 = 443;
const BACKEND_PORT: u16 = 8080;
const SERVER_NAME: &str = "bench.test";

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

pub fn run(args: Args, root: &Path) -> anyhow::Result<()> {
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmark creates namespaces and loads XDP: run it as root"
    );
    raise_fd_limit();
    let (proxy_bin, xtask) = build_release(root)?;

    let dir = tempfile::Builder::new()
        .prefix("proxy-bench-attack")
        .tempdir()?;
    let d = dir.path();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?.self_signed(&key)?;
    std::fs::write(d.join("ec.pem"), cert.pem())?;
    std::fs::write(d.join("ec.key"), key.serialize_pem())?;
    std::fs::create_dir_all(d.join("www"))?;
    std::fs::write(d.join("www/small"), vec![b's'; 100])?;

    // Switch first so it is dropped last.
    let sw = Netns::new("sw")?;
    sw.sh("ip link add br0 type bridge && ip link set br0 up")?;
    let lb = Netns::new("lb")?;
    let gen_ns = Netns::new("gen")?;
    let at = Netns::new("at")?;
    for (i, (ns, ip)) in [(&lb, LB_IP), (&gen_ns, GEN_IP), (&at, "10.98.0.3")]
        .into_iter()
        .enumerate()
    {
        sh(&format!(
            "ip link add p{i} netns {} type veth peer name eth0 netns {}",
            sw.name, ns.name
        ))?;
        sw.sh(&format!(
            "ip link set p{i} master br0 && ip link set p{i} up"
        ))?;
        ns.sh(&format!(
            "ip addr add {ip}/24 dev eth0 && ip link set eth0 up && ip link set lo up && \
             sysctl -qw net.ipv4.tcp_tw_reuse=1 && sysctl -qw net.ipv4.ip_local_port_range='1024 65000' && \
             sysctl -qw net.core.somaxconn=8192"
        ))?;
    }
    let dd = d.display();
    std::fs::write(
        d.join("backend.conf"),
        format!(
            "worker_processes 1;\ndaemon off;\npid {dd}/backend.pid;\nerror_log {dd}/backend.err warn;\n\
             worker_rlimit_nofile 20000;\nevents {{ worker_connections 19000; }}\n\
             http {{\n  access_log off;\n  server {{ listen {GEN_IP}:{BACKEND_PORT} backlog=8192; root {dd}/www; }}\n}}\n"
        ),
    )?;
    let _backend = Proc::spawn(&gen_ns, GEN_CPU, &format!("nginx -c {dd}/backend.conf"))?;
    wait_listening(&gen_ns, &[BACKEND_PORT])?;

    // Warm-up (backend, generator, page cache), not measured.
    {
        let config = d.join("proxy.toml");
        std::fs::write(&config, proxy_conf(d, false))?;
        let proxy = Proc::spawn(
            &lb,
            LB_CPU,
            &format!("{} run --config {}", proxy_bin.display(), config.display()),
        )?;
        wait_listening(&lb, &[TLS_PORT])?;
        gen_ns.output(
            GEN_CPU,
            &format!(
                "{} bench-client handshakes --addr {LB_IP}:{TLS_PORT} --name {SERVER_NAME} --ca {dd}/ec.pem \
                 --get /small --concurrency 32 --seconds 2",
                xtask.display()
            ),
        )?;
        proxy.stop();
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
            std::fs::write(&config, proxy_conf(d, scenario != Scenario::FloodNoXdp))?;
            let proxy = Proc::spawn(
                &lb,
                LB_CPU,
                &format!(
                    "env RUST_LOG=warn {} run --config {}",
                    proxy_bin.display(),
                    config.display()
                ),
            )?;
            wait_listening(&lb, &[TLS_PORT])?;
            let attacker = (scenario != Scenario::NoFlood).then(|| {
                at.command(
                    LB_CPU,
                    &format!(
                        "{} bench-client attack --addr {LB_IP}:{TLS_PORT} --seconds {} --udp-pps {}",
                        xtask.display(),
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
            let before = cpu_seconds(proxy.pid());
            let out = gen_ns.output(
                GEN_CPU,
                &format!(
                    "{} bench-client handshakes --addr {LB_IP}:{TLS_PORT} --name {SERVER_NAME} --ca {dd}/ec.pem \
                     --get /small --concurrency 32 --seconds {}",
                    xtask.display(),
                    args.seconds
                ),
            )?;
            let cpu = cpu_seconds(proxy.pid()) - before;
            let j: serde_json::Value =
                serde_json::from_str(out.trim()).with_context(|| format!("generator: {out}"))?;
            let rate = num(&j, "ok") / num(&j, "seconds");
            let entry = results
                .iter_mut()
                .find(|r| r.0 == scenario)
                .expect("scenario");
            entry.1.push(rate);
            entry.2.push(cpu / num(&j, "seconds") * 100.0);
            let attack = match attacker {
                Some(child) => {
                    let out = child.wait_with_output()?;
                    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
                }
                None => serde_json::Value::Null,
            };
            eprintln!(
                "  {:<34} {rate:>7.0} tx/s ({} errors), proxy CPU {:.0}%, attacker: {attack}",
                scenario.label(),
                num(&j, "errors"),
                cpu / num(&j, "seconds") * 100.0
            );
            if round == 0 && scenario != Scenario::NoFlood {
                notes.push(format!("{}: attacker {attack}", scenario.label()));
            }
            proxy.stop();
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
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
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

fn proxy_conf(d: &Path, xdp: bool) -> String {
    let d = d.display();
    let mut c = format!(
        "[[listener]]\nname = \"tls\"\nbind = \"{LB_IP}:{TLS_PORT}\"\npool = \"web\"\n\
         [listener.tls]\ncertificates = [{{ cert = \"{d}/ec.pem\", key = \"{d}/ec.key\" }}]\n\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ address = \"{GEN_IP}:{BACKEND_PORT}\" }}]\n\
         [pool.health]\nenabled = false\n\n[log]\nlevel = \"warn\"\n\n\
         [admin]\nsocket = \"{d}/admin.sock\"\nmetrics = \"off\"\n\n"
    );
    if xdp {
        // Limits above what the one legitimate generator address sends; the
        // connection-rate trigger is off for the same reason (one busy client).
        c.push_str(
            "[xdp]\ninterfaces = [\"eth0\"]\npin_path = \"/sys/fs/bpf/proxy-bench-attack\"\n\
             [xdp.rate_limit]\npackets_per_second = 200000\nsyn_per_second = 20000\n\n\
             [autoblock]\nfailed_handshakes = 20\nnew_connections = 0\n",
        );
    }
    c
}
