//! `cargo xtask bench soak`: one daemon under long and hostile use, with its
//! descriptors, threads, memory and open connections watched from /proc and the
//! admin API. Three phases:
//!
//! 1. **idle**: `connections` concurrent TLS connections held open: RSS per
//!    connection, LB CPU, and everything back near the baseline once they close.
//! 2. **reloads**: `reloads` SIGHUPs alternating backends and certificates while new
//!    TLS transactions and rate-limited long downloads run: no failed transaction,
//!    no cut download, no descriptor or memory growth across the reloads.
//! 3. **mixed**: `mixed_seconds` of handshakes, bulk, idle, junk and slowloris (from
//!    a second host, auto-blocker and XDP on): no growth beyond the stated bounds,
//!    and every failure counted.
//!
//! `--short` is the bounded version `cargo xtask test` runs: it asserts the
//! invariants (never timings). Without it the figures are printed for docs/testing.md.
//! Hosts (lab star topology): `lb` 10.77.0.1 (the proxy), `gen` 10.77.0.2 (clients
//! and two nginx backends), `at` 10.77.0.3 (junk and a UDP flood), `sl` 10.77.0.4
//! (slowloris).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use lab::certs::{self, KeyType};
use lab::config::*;
use lab::process::{fd_count, raise_fd_limit, rss_kib, threads};
use lab::proxyd::ProxyD;
use lab::{PinDir, Topology};

use proxy_schema::api::Stats;

use crate::binaries::proxy_and_generator;
use crate::idle_client::IdleClients;
use crate::results;

const LB_IP: &str = "10.77.0.1";
const GEN_IP: &str = "10.77.0.2";
const TLS_PORT: u16 = 443;
const PLAIN_PORT: u16 = 8080;
const BACKEND_PORTS: [u16; 2] = [80, 81];
const NAME: &str = "soak.test";
const GEN_CPU: &str = "1";
/// Size of `/big`, downloaded at `DOWNLOAD_RATE` during the reloads.
const BIG_BYTES: usize = 16 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent idle TLS connections (each costs the LB two descriptors of the
    /// 20,000 the hard limit allows).
    #[arg(long, default_value_t = 9500)]
    pub connections: usize,
    /// SIGHUP reloads, alternating backends and certificates.
    #[arg(long, default_value_t = 100)]
    pub reloads: usize,
    /// Seconds of mixed load.
    #[arg(long, default_value_t = 600)]
    pub mixed_seconds: u64,
    /// The bounded CI version: 500 connections, 10 reloads, 15 s mixed; asserts the
    /// invariants.
    #[arg(long)]
    pub short: bool,
}

/// What the daemon holds, from /proc and the admin API.
#[derive(Clone, Copy, Debug)]
struct Usage {
    rss_kib: f64,
    fds: usize,
    threads: usize,
    open: u64,
}

struct Soak<'a> {
    topo: &'a Topology,
    proxy: ProxyD,
    dir: &'a Path,
    generator: &'a Path,
}

pub fn run(mut args: Args) -> anyhow::Result<()> {
    lab::ensure_root()?;
    lab::ensure_tools(&["nginx", "curl", "taskset"], "run `cargo xtask setup`")?;
    if args.short {
        (args.connections, args.reloads, args.mixed_seconds) = (500, 10, 15);
    }
    raise_fd_limit();
    let (proxy_bin, generator) = proxy_and_generator()?;
    let dir = tempfile::Builder::new().prefix("proxy-soak").tempdir()?;
    let d = dir.path();
    for stem in ["a", "b"] {
        certs::try_write(d, stem, KeyType::EcdsaP256, NAME, &[NAME])?;
    }
    let bundle =
        std::fs::read_to_string(d.join("a.pem"))? + &std::fs::read_to_string(d.join("b.pem"))?;
    std::fs::write(d.join("ca.pem"), bundle)?;
    std::fs::create_dir_all(d.join("www"))?;
    std::fs::write(d.join("www/small"), vec![b's'; 100])?;
    std::fs::write(d.join("www/1m"), vec![b'm'; 1 << 20])?;
    std::fs::write(d.join("www/big"), vec![b'b'; BIG_BYTES])?;

    let topo = Topology::star(&["lb", "gen", "at", "sl"])?;
    for h in &topo.hosts {
        h.ns.exec("sysctl -qw net.ipv4.ip_local_port_range='10000 65000' && sysctl -qw net.core.somaxconn=8192")?;
    }
    let gen_ns = &topo.host(1).ns;
    std::fs::write(d.join("backend.conf"), backend_conf(d))?;
    let _backend =
        gen_ns.start_on_cpu(GEN_CPU, &format!("nginx -c {}/backend.conf", d.display()))?;
    gen_ns.wait_listening(&BACKEND_PORTS)?;

    let pins = PinDir::new("soak");
    let proxy = ProxyD::try_start_bin(
        &proxy_bin.display().to_string(),
        &topo.host(0).ns,
        d,
        &config(d, 0, &pins),
    )?;
    let mut soak = Soak {
        topo: &topo,
        proxy,
        dir: d,
        generator: &generator,
    };
    let mut failures = Vec::new();
    soak.idle(args.connections, &mut failures)?;
    soak.reloads(args.reloads, &pins, &mut failures)?;
    soak.mixed(args.mixed_seconds, args.connections / 10, &mut failures)?;
    let _ = soak.proxy.stop();
    if failures.is_empty() {
        println!("\nsoak: every invariant held");
        Ok(())
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        anyhow::bail!("{} soak invariants failed", failures.len())
    }
}

impl Soak<'_> {
    fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.proxy.proc.as_ref().context("the proxy runs")?.pid();
        let stats = lab::proxyd::cli(
            &self.topo.host(0).ns,
            &format!(
                "stats --json --socket {}",
                self.dir.join("admin.sock").display()
            ),
        );
        let stats: Stats = serde_json::from_str(&stats)?;
        Ok(Usage {
            rss_kib: rss_kib(pid),
            fds: fd_count(pid),
            threads: threads(pid),
            open: u64::from(stats.connections_open),
        })
    }

    fn cpu(&self) -> f64 {
        self.proxy.proc.as_ref().map_or(0.0, |p| p.cpu_seconds())
    }

    /// Waits (30 s at most) until the daemon has no open connection, then one round
    /// of its memory trimmer (every 5 s); its usage then.
    fn settled(&self) -> anyhow::Result<Usage> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.usage()?.open != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_secs(6));
        self.usage()
    }

    fn client(&self, args: &str) -> String {
        format!("{} client {args}", self.generator.display())
    }

    fn idle(&self, count: usize, failures: &mut Vec<String>) -> anyhow::Result<()> {
        let base = self.settled()?;
        let cpu_before = self.cpu();
        let tls = format!(
            "--addr {LB_IP}:{TLS_PORT} --name {NAME} --ca {}/ca.pem",
            self.dir.display()
        );
        let idle = IdleClients::open(&self.topo.host(1).ns, GEN_CPU, self.generator, &tls, count)?;
        let opened = idle.opened;
        std::thread::sleep(Duration::from_secs(1));
        let held = self.usage()?;
        let cpu = self.cpu() - cpu_before;
        idle.close();
        let after = self.settled()?;
        let per_conn = (held.rss_kib - base.rss_kib) / opened.max(1) as f64;
        println!(
            "idle: {opened}/{count} TLS connections held; RSS {:.0} → {:.0} → {:.0} MiB \
             ({per_conn:.1} KiB per connection); descriptors {} → {} → {}; LB CPU {cpu:.2} s \
             ({:.0} µs per connection)",
            base.rss_kib / 1024.0,
            held.rss_kib / 1024.0,
            after.rss_kib / 1024.0,
            base.fds,
            held.fds,
            after.fds,
            cpu * 1e6 / opened.max(1) as f64
        );
        check(
            failures,
            opened == count,
            format!("idle: only {opened} of {count} connections opened"),
        );
        check(
            failures,
            held.open as usize >= opened,
            format!("idle: the daemon counts {} open of {opened}", held.open),
        );
        check(
            failures,
            after.open == 0,
            format!("idle: {} connections still open after close", after.open),
        );
        check(
            failures,
            after.fds <= base.fds + 8,
            format!("idle: descriptors {} after, {} before", after.fds, base.fds),
        );
        // Allocators keep some freed memory: back within a quarter of the peak growth.
        let growth = held.rss_kib - base.rss_kib;
        check(
            failures,
            after.rss_kib <= base.rss_kib + growth / 4.0 + 4096.0,
            format!(
                "idle: RSS {:.0} KiB after, {:.0} before, {:.0} held",
                after.rss_kib, base.rss_kib, held.rss_kib
            ),
        );
        Ok(())
    }

    fn reloads(
        &mut self,
        reloads: usize,
        pins: &PinDir,
        failures: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let gen_ns = &self.topo.host(1).ns;
        let d = self.dir.display();
        // Long enough for every reload (each waits for the daemon's confirmation).
        let seconds = 5 + reloads as u64 / 2;
        let rate = BIG_BYTES as u64 / seconds;
        let load = gen_ns
            .command_on_cpu(
                GEN_CPU,
                &self.client(&format!(
                    "handshakes --addr {LB_IP}:{TLS_PORT} --name {NAME} --ca {d}/ca.pem --get /small \
                     --concurrency 8 --seconds {seconds}"
                )),
            )
            .stdout(Stdio::piped())
            .spawn()?;
        let downloads: Vec<_> = (0..4)
            .map(|i| {
                gen_ns
                    .command("sh")
                    .arg("-c")
                    .arg(format!(
                        "curl -sS --fail --max-time {} --limit-rate {rate} -o {d}/dl{i} http://{LB_IP}:{PLAIN_PORT}/big",
                        seconds * 3
                    ))
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let start = Instant::now();
        let mut samples = Vec::new();
        for i in 0..reloads {
            self.proxy
                .write_config(&config(self.dir, (i + 1) % 2, pins));
            self.proxy.signal("HUP");
            let want = i + 2; // the start applied the first configuration
            lab::try_wait_for("the reload", Duration::from_secs(10), || {
                (self.proxy.count_log("configuration applied") >= want).then_some(())
            })?;
            samples.push(self.usage()?);
            std::thread::sleep(Duration::from_millis(200));
        }
        let reload_time = start.elapsed();
        let out = load.wait_with_output()?;
        let j: results::Connections = results::parse(&String::from_utf8_lossy(&out.stdout))?;
        let mut cut = 0;
        for mut dl in downloads {
            if !dl.wait()?.success() {
                cut += 1;
            }
        }
        for i in 0..4 {
            let size = std::fs::metadata(self.dir.join(format!("dl{i}"))).map_or(0, |m| m.len());
            if size != BIG_BYTES as u64 {
                cut += 1;
            }
        }
        let rejected = self.proxy.count_log("reload rejected");
        let (first, last) = (samples[0], samples[samples.len() - 1]);
        let after = self.settled()?;
        println!(
            "reloads: {reloads} in {reload_time:.1?} with {} TLS transactions ({} failed) and 4 downloads of {} MiB \
             ({cut} cut); descriptors {} → {} (settled {}), RSS {:.0} → {:.0} MiB, threads {} → {}",
            j.ok,
            j.errors,
            BIG_BYTES >> 20,
            first.fds,
            last.fds,
            after.fds,
            first.rss_kib / 1024.0,
            last.rss_kib / 1024.0,
            first.threads,
            last.threads
        );
        check(
            failures,
            rejected == 0,
            format!("reloads: {rejected} rejected"),
        );
        check(
            failures,
            j.ok > 0 && j.errors == 0,
            format!("reloads: transactions {j:?}"),
        );
        check(
            failures,
            cut == 0,
            format!("reloads: {cut} downloads cut or short"),
        );
        check(
            failures,
            after.fds <= first.fds + 8,
            format!(
                "reloads: descriptors {} after, {} at the first reload",
                after.fds, first.fds
            ),
        );
        check(
            failures,
            last.threads <= first.threads,
            format!("reloads: threads {} → {}", first.threads, last.threads),
        );
        check(
            failures,
            last.rss_kib <= first.rss_kib + 16.0 * 1024.0,
            format!(
                "reloads: RSS {:.0} → {:.0} KiB",
                first.rss_kib, last.rss_kib
            ),
        );
        Ok(())
    }

    fn mixed(&self, seconds: u64, idle: usize, failures: &mut Vec<String>) -> anyhow::Result<()> {
        let (gen_ns, at, sl) = (
            &self.topo.host(1).ns,
            &self.topo.host(2).ns,
            &self.topo.host(3).ns,
        );
        let d = self.dir.display();
        let base = self.settled()?;
        let tls = format!("--addr {LB_IP}:{TLS_PORT} --name {NAME} --ca {d}/ca.pem");
        let spawn = |ns: &lab::Netns, args: String| {
            ns.command_on_cpu(GEN_CPU, &self.client(&args))
                .stdout(Stdio::piped())
                .stdin(Stdio::piped())
                .spawn()
        };
        let handshakes = spawn(
            gen_ns,
            format!("handshakes {tls} --get /small --concurrency 4 --seconds {seconds}"),
        )?;
        let bulk = spawn(
            gen_ns,
            format!("bulk {tls} --path /1m --concurrency 2 --seconds {seconds}"),
        )?;
        let mut idlers = spawn(gen_ns, format!("idle {tls} --count {idle}"))?;
        let junk = spawn(
            at,
            format!(
                "attack --addr {LB_IP}:{TLS_PORT} --seconds {seconds} --junk-concurrency 8 --udp-pps 1000"
            ),
        )?;
        let slow = spawn(
            sl,
            format!("slowloris --addr {LB_IP}:{TLS_PORT} --count 50 --seconds {seconds}"),
        )?;
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(Duration::from_secs(seconds.clamp(1, 10)));
            samples.push(self.usage()?);
        }
        drop(idlers.stdin.take());
        // Each generator's last line is its answer (the idle mode prints `ready` first).
        fn answer<T: serde::de::DeserializeOwned>(c: std::process::Child) -> anyhow::Result<T> {
            let out = c.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            results::parse(text.lines().last().unwrap_or(""))
        }
        let transactions: results::Connections = answer(handshakes)?;
        let bulk: results::Bulk = answer(bulk)?;
        let _: results::Idle = answer(idlers)?;
        let junk: results::Attack = answer(junk)?;
        let slow: results::Slowloris = answer(slow)?;
        let after = self.settled()?;
        let stats: Stats = serde_json::from_str(&lab::proxyd::cli(
            &self.topo.host(0).ns,
            &format!(
                "stats --json --socket {}",
                self.dir.join("admin.sock").display()
            ),
        ))?;
        let peak_rss = samples.iter().map(|u| u.rss_kib).fold(0.0, f64::max);
        let peak_fds = samples.iter().map(|u| u.fds).max().unwrap_or(0);
        println!(
            "mixed {seconds} s: transactions {}, bulk {:.0} MiB, junk {}, slowloris writes failed {}; \
             peak descriptors {peak_fds}, peak RSS {:.0} MiB; after: descriptors {} (before {}), \
             RSS {:.0} MiB (before {:.0}), threads {} (before {}), open {}; auto-blocks {}",
            transactions.ok,
            bulk.bytes as f64 / 1048576.0,
            junk.junk_connected,
            slow.cut_by_server,
            peak_rss / 1024.0,
            after.fds,
            base.fds,
            after.rss_kib / 1024.0,
            base.rss_kib / 1024.0,
            after.threads,
            base.threads,
            after.open,
            stats.autoblock.blocked_total
        );
        check(
            failures,
            transactions.ok > 0,
            format!("mixed: no transaction completed: {transactions:?}"),
        );
        check(
            failures,
            after.open == 0,
            format!("mixed: {} connections open after the load", after.open),
        );
        check(
            failures,
            after.fds <= base.fds + 8,
            format!(
                "mixed: descriptors {} after, {} before",
                after.fds, base.fds
            ),
        );
        check(
            failures,
            after.threads <= base.threads,
            format!(
                "mixed: threads {} after, {} before",
                after.threads, base.threads
            ),
        );
        check(
            failures,
            after.rss_kib <= base.rss_kib + 32.0 * 1024.0,
            format!(
                "mixed: RSS {:.0} KiB after, {:.0} before (bound +32 MiB)",
                after.rss_kib, base.rss_kib
            ),
        );
        let failed: u64 = stats
            .listeners
            .iter()
            .flat_map(|l| l.tls_handshake_failures.values())
            .sum();
        check(
            failures,
            failed > 0,
            "mixed: junk and slowloris were not counted as handshake failures".into(),
        );
        Ok(())
    }
}

fn check(failures: &mut Vec<String>, ok: bool, what: String) {
    if !ok {
        failures.push(what);
    }
}

/// Variant `k` (0 or 1): certificate `a`/`b`, backend port 80/81. The auto-blocker
/// and XDP run in every variant (the attack host is blocked; `gen` never is: its
/// connection rate is not a trigger).
fn config(d: &Path, k: usize, pins: &PinDir) -> String {
    let stem = ["a", "b"][k];
    let cert = certs::CertFiles {
        cert: d.join(format!("{stem}.pem")),
        key: d.join(format!("{stem}.key")),
        common_name: NAME.into(),
    };
    let backend = [format!("{GEN_IP}:{}", BACKEND_PORTS[k])];
    Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{LB_IP}:{TLS_PORT}")), "web")
                .tls(tls(&cert).handshake_timeout(dur("5s"))),
        )
        .with_listener(Listener::new(
            "plain",
            addr(format!("{LB_IP}:{PLAIN_PORT}")),
            "web",
        ))
        .with_pool(Pool::new("web", addrs(&backend)).health(Health::off()))
        .with_log(Log {
            level: "info".into(),
            ..Log::default()
        })
        .with_admin(AdminSection {
            socket: d.join("admin.sock"),
            metrics: None,
        })
        .with_xdp(XdpSection::on(&["eth0"], &pins.0))
        .with_autoblock(AutoblockSection {
            failed_handshakes: 50,
            ..AutoblockSection::default()
        })
        .to_toml()
}

fn backend_conf(d: &Path) -> String {
    let listen: Vec<String> = BACKEND_PORTS
        .iter()
        .map(|p| format!("{GEN_IP}:{p}"))
        .collect();
    lab::nginx::bench_backend_conf(d, &listen)
}
