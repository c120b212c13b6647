//! `cargo xtask bench balance`: what each balancing algorithm costs per new
//! connection, paired against Maglev in the same run.
//!
//! 1. `picks`: the algorithm's own work per connection in ns (proxy/benches/balance.rs,
//!    on CPU 1): key hash, first candidate, counted open and closed; 3 and 100 backends.
//! 2. `connections`: LB CPU per new plain TCP connection, end to end:
//!
//! One `proxy` (release, pinned to CPU 0) with one listener per algorithm, each in
//! front of its own pool of the same three backends (one nginx on the generator host
//! listening on three ports, CPU 1). Each round runs the generator (`bench client
//! connects`: connect, GET /small, close, 64 at a time) against every listener in
//! turn, the order rotating, and reads the LB's CPU time around it. Reported per
//! algorithm: µs of LB CPU per connection, median (min-max) of the rounds, and the
//! median (min-max) of the per-round ratios to Maglev's slice of the same round.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use lab::config::*;
use lab::process::{cpu_seconds, raise_fd_limit};
use lab::stats::{median, min_max};

use crate::binaries::proxy_and_generator;
use crate::hosts::{GEN_CPU, GEN_IP, LB_CPU, LB_IP, lb_generator_with_ports};
use crate::results::{self, Connections};

/// Backend ports on the generator host (one nginx).
const BACKEND_PORTS: [u16; 3] = [8080, 8081, 8082];
/// The listener of algorithm `i` of [`Balance::ALL`] is `FIRST_PORT + i`.
const FIRST_PORT: u16 = 9000;

/// The parts (`--parts`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// ns of the algorithm's own work per connection (no root needed).
    Picks,
    /// LB CPU per proxied connection, end to end.
    Connections,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_delimiter = ',', default_value = "picks,connections")]
    pub parts: Vec<Part>,
    /// Rounds of `connections` (each measures every algorithm once, order rotating).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Seconds per measurement of `connections` (short slices pair better on a busy
    /// machine: its slow spells last seconds to minutes).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
}

pub fn run(args: Args, root: &Path) -> anyhow::Result<()> {
    if args.parts.contains(&Part::Picks) {
        picks(root)?;
    }
    if args.parts.contains(&Part::Connections) {
        connections(&args)?;
    }
    Ok(())
}

/// Part 1: proxy/benches/balance.rs on CPU 1.
fn picks(root: &Path) -> anyhow::Result<()> {
    eprintln!("[bench balance] part 1: ns per pick (proxy/benches/balance.rs) on CPU 1");
    crate::binaries::proxy_cargo_bench_on_cpu1(root, "balance", &[])
}

/// Part 2: LB CPU per proxied connection.
fn connections(args: &Args) -> anyhow::Result<()> {
    lab::ensure_root()?;
    lab::ensure_tools(
        &["ip", "taskset", "nginx"],
        "apt-get install nginx util-linux",
    )?;
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    raise_fd_limit();
    let (proxy_bin, generator) = proxy_and_generator()?;
    let dir = tempfile::Builder::new().prefix("bench-balance").tempdir()?;
    let d = dir.path();
    let (topo, _backend) = lb_generator_with_ports(d, &[], &BACKEND_PORTS)?;
    let (lb, gen_ns) = (&topo.host(0).ns, &topo.host(1).ns);

    let config = proxy_config(d);
    std::fs::write(d.join("proxy.toml"), config)?;
    let proxy = lb.start_on_cpu(
        LB_CPU,
        &format!(
            "env RUST_LOG=warn {} run --config {}",
            proxy_bin.display(),
            d.join("proxy.toml").display()
        ),
    )?;
    let ports: Vec<u16> = (0..Balance::ALL.len() as u16)
        .map(|i| FIRST_PORT + i)
        .collect();
    lb.wait_listening_at(LB_IP, &ports)?;

    // (algorithm index, round) → µs of LB CPU per connection, and connections/s.
    let mut cost = vec![Vec::new(); Balance::ALL.len()];
    let mut rate = vec![Vec::new(); Balance::ALL.len()];
    // Warm-up: the first slice after start pays for the allocator's growth.
    measure(gen_ns, &generator, proxy.pid(), 0, 1.0)?;
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        let mut order: Vec<usize> = (0..Balance::ALL.len()).collect();
        order.rotate_left(round % Balance::ALL.len());
        for i in order {
            let (us, per_second) = measure(gen_ns, &generator, proxy.pid(), i, args.seconds)?;
            cost[i].push(us);
            rate[i].push(per_second);
        }
    }
    drop(proxy);
    print!("{}", report(args, &cost, &rate));
    Ok(())
}

/// The proxy's configuration: listener `FIRST_PORT + i` → pool of algorithm `i`.
fn proxy_config(d: &std::path::Path) -> String {
    let backends: Vec<String> = BACKEND_PORTS
        .iter()
        .map(|p| format!("{GEN_IP}:{p}"))
        .collect();
    let mut config = Config::new();
    for (i, balance) in Balance::ALL.into_iter().enumerate() {
        let name = balance.name();
        let port = FIRST_PORT + i as u16;
        let mut pool = Pool::new(name, addrs(&backends))
            .balance(balance)
            .health(Health::off());
        if balance == Balance::Maglev {
            // Spread one generator's connections over the three backends, as the
            // others do (with the client IP alone they would all go to one).
            pool = pool.hash_key(HashKey::ClientIpPort);
        }
        config = config
            .with_listener(Listener::new(name, addr(format!("{LB_IP}:{port}")), name))
            .with_pool(pool);
    }
    config
        .with_limits(Limits {
            max_connections: 9900,
        })
        .with_log(Log {
            level: "warn".into(),
            ..Log::default()
        })
        .with_admin(AdminSection {
            socket: d.join("admin.sock"),
            metrics: None,
        })
        .to_toml()
}

/// One slice against algorithm `i`'s listener: (µs of LB CPU per connection,
/// connections per second).
fn measure(
    gen_ns: &lab::Netns,
    generator: &std::path::Path,
    lb_pid: u32,
    i: usize,
    seconds: f64,
) -> anyhow::Result<(f64, f64)> {
    let port = FIRST_PORT + i as u16;
    let before = cpu_seconds(lb_pid);
    let out = gen_ns.output_on_cpu(
        GEN_CPU,
        &format!(
            "{} client connects --addr {LB_IP}:{port} --get /small --seconds {seconds}",
            generator.display()
        ),
    )?;
    let cpu = cpu_seconds(lb_pid) - before;
    let j: Connections = results::parse(&out)
        .with_context(|| format!("client output for {}", Balance::ALL[i].name()))?;
    ensure!(
        j.errors == 0 && j.ok > 0,
        "{}: {} connections failed of {} ({:?})",
        Balance::ALL[i].name(),
        j.errors,
        j.ok + j.errors,
        j.first_error
    );
    // Let the LB finish the last connections' work before the next slice reads it.
    std::thread::sleep(Duration::from_millis(200));
    Ok((cpu * 1e6 / j.ok as f64, j.ok as f64 / j.seconds))
}

fn report(args: &Args, cost: &[Vec<f64>], rate: &[Vec<f64>]) -> String {
    let cpu = crate::cpu::model();
    let mut out = format!(
        "\nLB CPU per new plain TCP connection (connect, GET /small, close; 64 at a time), \
         by balancing algorithm: {} rounds of {} s each, order rotating; one proxy (release) \
         on CPU {LB_CPU}, three backends (one nginx) and the generator on CPU {GEN_CPU}; \
         {cpu}\n\n| algorithm | µs per connection, median (min-max) | connections/s | \
         ratio to Maglev, median of the rounds (min-max) |\n|---|---|---|---|\n",
        args.rounds, args.seconds
    );
    let maglev = &cost[0];
    for (i, balance) in Balance::ALL.into_iter().enumerate() {
        let (lo, hi) = min_max(&cost[i]);
        let ratios: Vec<f64> = cost[i].iter().zip(maglev).map(|(a, m)| a / m).collect();
        let (rlo, rhi) = min_max(&ratios);
        out += &format!(
            "| {} | {:.1} ({lo:.1}-{hi:.1}) | {:.0} | {:.3} ({rlo:.3}-{rhi:.3}) |\n",
            balance.name(),
            median(&cost[i]),
            median(&rate[i]),
            median(&ratios)
        );
    }
    out
}
