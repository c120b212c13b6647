//! `cargo xtask bench tls`: `proxy`, HAProxy and NGINX (stream) side by side.
//!
//! Two namespaces joined by a veth pair (`lab::Topology::pair`): `lb` (10.77.0.1)
//! runs the load balancer under test pinned to CPU 0; `gen` (10.77.0.2) runs the load generator
//! (`bench client`, see bench_client.rs), the nginx HTTP backend and the
//! iperf3 server, pinned to CPU 1. Each round starts every product in turn (the order
//! rotates), measures every figure, stops it. Printed: medians, min-max, and the
//! median of the per-round (paired) ratios; LB CPU time per handshake and per GB
//! comes from /proc (utime + stime of the LB's processes). After the rounds, the
//! interleaved figures (tails.rs, costs.rs) run every product at once and alternate
//! between them in short slices.
//!
//! Requires root and the Debian packages haproxy, nginx, libnginx-mod-stream, iperf3.

mod costs;
mod lineup;
mod products;
mod report;
mod strace;
mod tails;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use lab::process::{cpu_seconds, raise_fd_limit, rss_kib};
use lab::{Netns, Proc, Topology};

pub use self::products::Product;
use self::products::{backend_nginx_conf, haproxy_conf, lb_nginx_conf, proxy_conf, write_certs};
use self::report::{Figure, Results, check_errors, report};
use crate::binaries::proxy_and_generator;
use crate::idle_client::IdleClients;
use crate::results::{self, Connections, us};

const LB_IP: &str = "10.77.0.1";
const GEN_IP: &str = "10.77.0.2";
pub(crate) const LB_CPU: &str = "0";
pub(crate) const GEN_CPU: &str = "1";
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";
/// Ports on the load balancer: ECDSA TLS, RSA TLS, plain HTTP, plain iperf3.
const PORT_EC: u16 = 8443;
const PORT_RSA: u16 = 8444;
const PORT_PLAIN: u16 = 8080;
const PORT_IPERF: u16 = 5201;
/// SNI routes on the load balancer: passed through to BACKEND_TLS (every product),
/// and ECDSA TLS terminated behind routes (the proxy; the others answer as PORT_EC).
const PORT_PASS: u16 = 8445;
const PORT_ROUTED: u16 = 8446;
/// ECDSA TLS terminated and re-encrypted to BACKEND_TLS_RESUMABLE, the backend's
/// certificate verified: with backend session resumption, and without.
const PORT_REENCRYPT: u16 = 8447;
const PORT_REENCRYPT_FULL: u16 = 8448;
/// Backend ports in `gen`.
const BACKEND_HTTP: u16 = 80;
const BACKEND_IPERF: u16 = 5202;
/// HTTPS on the backend (the ECDSA certificate), for passthrough.
const BACKEND_TLS: u16 = 8443;
/// HTTPS on the backend that resumes sessions and logs whether each one did.
const BACKEND_TLS_RESUMABLE: u16 = 8444;
const SERVER_NAME: &str = "bench.test";
const LATENCY_RATE: u32 = 2000;
/// Keep-alive connections of the TLS latency figure (the plain one uses 32).
const TLS_LATENCY_CONNECTIONS: usize = 50;
/// Connections counted under strace for the syscalls-per-connection figure.
const SYSCALL_CONNECTIONS: u64 = 2000;

/// Groups of figures (`--figures`), so one question can be measured alone.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Full ECDSA and RSA handshakes.
    Handshakes,
    /// New plain TCP connections.
    Connects,
    /// TLS bulk (1 MiB objects).
    Bulk,
    /// Plain TCP bulk (iperf3).
    Iperf,
    /// Small requests at a fixed rate, plain and TLS: percentiles and histograms.
    Latency,
    /// Resumed handshakes: TLS 1.3 tickets, TLS 1.2 tickets, TLS 1.2 session IDs.
    Resumption,
    /// Syscalls (strace -c) and TCP segments sent per connection: plain, resumed
    /// TLS 1.2 and 1.3 (first round only).
    Syscalls,
    /// SNI routes: full handshakes passed through to a TLS backend (HAProxy
    /// `req.ssl_sni`, NGINX `ssl_preread`), and, for the proxy, terminated
    /// handshakes behind three routes against none (the routing overhead).
    Routes,
    /// Re-encryption: TLS terminated, then TLS to a backend whose certificate is
    /// verified (HAProxy `ssl verify required`, NGINX `proxy_ssl_verify on`), with
    /// backend session resumption and without; each connection a full client
    /// handshake and a GET.
    Reencrypt,
    /// Memory per idle TLS connection (after the rounds).
    Memory,
    /// Latency in interleaved slices, every product running at once (after the
    /// rounds): separates the products from the machine's noise.
    Tails,
    /// LB CPU per operation (handshakes, connections, resumptions) in interleaved
    /// slices, every product running at once (after the rounds): paired ratios with
    /// less of the machine's noise than the rounds.
    Costs,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rounds (each runs every product once, order rotating).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Idle TLS connections for the memory figure. Each costs the LB two file
    /// descriptors; the hard limit here is 20000, so 10,000 cannot fit.
    #[arg(long, default_value_t = 9000)]
    pub idle_connections: usize,
    /// Seconds per latency measurement (2,000 requests/s: 10 s = 20,000 samples).
    #[arg(long, default_value_t = 10.0)]
    pub latency_seconds: f64,
    /// Products to compare (proxy, proxy-base, haproxy, nginx).
    #[arg(long, value_delimiter = ',', default_value = "proxy,haproxy,nginx")]
    pub products: Vec<Product>,
    /// What to measure (default: everything).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "handshakes,connects,bulk,iperf,latency,resumption,routes,reencrypt,syscalls,memory,tails,costs"
    )]
    pub figures: Vec<Part>,
    /// The binary of product `proxy-base` (an earlier build, for before/after).
    #[arg(long)]
    pub baseline_proxy: Option<std::path::PathBuf>,
    /// Print each round's latency histograms.
    #[arg(long)]
    pub histograms: bool,
    /// Cycles of the interleaved figures (each runs every product once).
    #[arg(long, default_value_t = 15)]
    pub cycles: usize,
    /// Seconds per slice of the interleaved figures.
    #[arg(long, default_value_t = 2.0)]
    pub slice_seconds: f64,
    /// TLS connections of the bulk figure (each fetches 1 MiB objects in a loop);
    /// 8 matches the side-by-side harness the figures are compared with.
    #[arg(long, default_value_t = 8)]
    pub bulk_connections: usize,
    /// Receive processing in NAPI threads: `gen`'s on CPU 1, `lb`'s on CPU 0 and
    /// counted as LB CPU. Without it a veth receives in the sender's softirq, so the
    /// LB's CPU includes its peers' TCP input and not its own.
    #[arg(long)]
    pub threaded_napi: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    lab::ensure_root()?;
    lab::ensure_tools(
        &["ip", "taskset", "iperf3", "nginx", "haproxy", "ss"],
        "apt-get install haproxy nginx libnginx-mod-stream iperf3 iproute2 util-linux",
    )?;
    ensure!(
        Path::new(STREAM_MODULE).exists(),
        "{STREAM_MODULE} is missing: apt-get install libnginx-mod-stream"
    );
    raise_fd_limit();
    ensure!(
        !args.products.contains(&Product::ProxyBase) || args.baseline_proxy.is_some(),
        "product proxy-base needs --baseline-proxy PATH (a proxy binary)"
    );
    if args.figures.contains(&Part::Syscalls) {
        lab::ensure_tools(&["strace"], "apt-get install strace")?;
    }

    let (proxy_bin, generator) = proxy_and_generator()?;

    let dir = tempfile::Builder::new().prefix("proxy-bench").tempdir()?;
    let d = dir.path();
    write_certs(d)?;
    std::fs::create_dir_all(d.join("www"))?;
    std::fs::write(d.join("www/1m"), vec![b'x'; 1 << 20])?;
    std::fs::write(d.join("www/small"), vec![b's'; 100])?;

    let topo = Topology::pair("lb", "gen")?;
    let (lb, gen_ns) = (&topo.host(0).ns, &topo.host(1).ns);
    let lb_napi = match args.threaded_napi {
        true => {
            lab::ensure_tools(&["ethtool"], "apt-get install ethtool")?;
            gen_ns.threaded_napi(&topo.host(1).ifname, GEN_CPU)?;
            lb.threaded_napi(&topo.host(0).ifname, LB_CPU)?
        }
        false => Vec::new(),
    };
    // Ephemeral ports above the listening ones (all below 10000): an outgoing
    // connection that took one would make the next product's bind fail.
    for ns in [lb, gen_ns] {
        ns.exec(
            "sysctl -qw net.ipv4.tcp_tw_reuse=1 && sysctl -qw net.ipv4.ip_local_port_range='10000 65000' && \
             sysctl -qw net.core.somaxconn=8192",
        )?;
    }

    std::fs::write(d.join("backend.conf"), backend_nginx_conf(d))?;
    let _backend =
        gen_ns.start_on_cpu(GEN_CPU, &format!("nginx -c {}/backend.conf", d.display()))?;
    let _iperf = gen_ns.start_on_cpu(
        GEN_CPU,
        &format!("iperf3 -s -B {GEN_IP} -p {BACKEND_IPERF}"),
    )?;
    gen_ns.wait_listening(&[BACKEND_HTTP, BACKEND_IPERF, BACKEND_TLS_RESUMABLE])?;

    let bench = Bench {
        lb,
        gen_ns,
        dir: d,
        generator: &generator,
        proxy_bin: &proxy_bin,
        base_bin: args.baseline_proxy.as_deref(),
        seconds: args.seconds,
        latency_seconds: args.latency_seconds,
        bulk_connections: args.bulk_connections,
        lb_napi,
    };

    let mut results = Results::default();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        if args.figures.contains(&Part::Latency) {
            let j = bench.latency(&format!("{GEN_IP}:{BACKEND_HTTP}"), None)?;
            results.baseline_p50.push(us(j.p50_us));
            results.baseline_p99.push(us(j.p99_us));
        }
        let mut order = args.products.clone();
        let shift = round % order.len().max(1);
        order.rotate_left(shift);
        for &product in &order {
            eprintln!("  {}", product.label());
            let strace = round == 0 && args.figures.contains(&Part::Syscalls);
            bench.round(product, &args.figures, strace, &mut results)?;
        }
    }
    if args.figures.contains(&Part::Memory) {
        for &product in &args.products {
            eprintln!("idle memory: {}", product.label());
            let kib = bench.idle_memory(product, args.idle_connections)?;
            results.add(Figure::IdleMemory, product, kib);
        }
        results.notes.push(format!(
            "idle memory measured at {} connections (LB RSS growth / connections)",
            args.idle_connections
        ));
    }
    let ifname = &topo.host(0).ifname;
    let tails = match args.figures.contains(&Part::Tails) {
        true => tails::run(&bench, ifname, &args)?,
        false => String::new(),
    };
    let costs = match args.figures.contains(&Part::Costs) {
        true => costs::run(&bench, ifname, &args)?,
        false => String::new(),
    };
    // Printed whatever the figures, so every table of such a run carries its method.
    let method = match args.threaded_napi {
        true => {
            "\n--threaded-napi: receive processing in NAPI threads; LB CPU includes its own \
                 (lb's NAPI thread on CPU 0), not its peers' (gen's NAPI thread on CPU 1)\n"
        }
        false => "",
    };
    print!("{method}{}{tails}{costs}", report(&args, &results));
    Ok(())
}

struct Bench<'a> {
    lb: &'a Netns,
    gen_ns: &'a Netns,
    dir: &'a Path,
    generator: &'a Path,
    proxy_bin: &'a Path,
    base_bin: Option<&'a Path>,
    seconds: f64,
    latency_seconds: f64,
    bulk_connections: usize,
    /// `lb`'s NAPI threads with `--threaded-napi` (their CPU counts as the LB's).
    lb_napi: Vec<u32>,
}

impl Bench<'_> {
    fn start(&self, product: Product) -> anyhow::Result<Proc> {
        self.start_at(product, LB_IP)
    }

    /// Starts `product` with its listeners on `lb_ip` (an address of the `lb`
    /// namespace); returns once all of them listen.
    fn start_at(&self, product: Product, lb_ip: &str) -> anyhow::Result<Proc> {
        let d = self.dir;
        let config = |name: &str, text: String| -> anyhow::Result<String> {
            let path = d.join(format!("{lb_ip}-{name}"));
            std::fs::write(&path, text)?;
            Ok(path.display().to_string())
        };
        let cmd = match product {
            Product::Proxy | Product::ProxyBase => {
                let bin = match (product, self.base_bin) {
                    (Product::ProxyBase, Some(base)) => base,
                    _ => self.proxy_bin,
                };
                let config = config("proxy.toml", proxy_conf(d, lb_ip))?;
                format!("env RUST_LOG=warn {} run --config {config}", bin.display())
            }
            Product::Haproxy => {
                format!(
                    "haproxy -db -f {}",
                    config("haproxy.cfg", haproxy_conf(d, lb_ip))?
                )
            }
            Product::Nginx => format!(
                "nginx -c {}",
                config("nginx.conf", lb_nginx_conf(d, lb_ip))?
            ),
        };
        let p = self.lb.start_on_cpu(LB_CPU, &cmd)?;
        self.lb
            .wait_listening_at(lb_ip, &[PORT_EC, PORT_RSA, PORT_PLAIN, PORT_IPERF])?;
        Ok(p)
    }

    /// CPU seconds used so far by the LB's processes and, with `--threaded-napi`,
    /// by its receive processing.
    fn lb_cpu(&self, lb: &Proc) -> f64 {
        cpu_seconds(lb.pid()) + self.lb_napi.iter().map(|&t| cpu_seconds(t)).sum::<f64>()
    }

    /// Runs the generator; returns its answer and the LB CPU seconds it cost.
    fn client<T: serde::de::DeserializeOwned>(
        &self,
        lb: &Proc,
        args: &str,
    ) -> anyhow::Result<(T, f64)> {
        let before = self.lb_cpu(lb);
        let out = self.gen_ns.output_on_cpu(
            GEN_CPU,
            &format!("{} client {args}", self.generator.display()),
        )?;
        let cpu = self.lb_cpu(lb) - before;
        let answer = results::parse(&out).with_context(|| format!("client {args}"))?;
        Ok((answer, cpu))
    }

    fn round(
        &self,
        product: Product,
        parts: &[Part],
        strace: bool,
        results: &mut Results,
    ) -> anyhow::Result<()> {
        if parts
            .iter()
            .all(|p| matches!(p, Part::Memory | Part::Tails | Part::Costs))
        {
            return Ok(());
        }
        let lb = self.start(product)?;
        for part in parts {
            match part {
                Part::Handshakes => self.handshakes(&lb, product, results)?,
                Part::Connects => self.connects(&lb, product, results)?,
                Part::Bulk => self.tls_bulk(&lb, product, results)?,
                Part::Iperf => self.iperf(&lb, product, results)?,
                Part::Latency => self.latencies(product, results)?,
                Part::Resumption => self.resumption(&lb, product, results)?,
                Part::Routes => self.routes(&lb, product, results)?,
                Part::Reencrypt => self.reencrypt(&lb, product, results)?,
                Part::Syscalls if strace => self.syscalls(&lb, product, results)?,
                Part::Syscalls | Part::Memory | Part::Tails | Part::Costs => {}
            }
        }
        drop(lb);
        Ok(())
    }

    fn tls_args(&self, port: u16, ca: &str) -> String {
        self.tls_args_at(LB_IP, port, ca)
    }

    fn tls_args_at(&self, lb_ip: &str, port: u16, ca: &str) -> String {
        let d = self.dir.display();
        format!("--addr {lb_ip}:{port} --name {SERVER_NAME} --ca {d}/{ca}")
    }

    fn handshakes(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let s = self.seconds;
        for (port, ca, rate_fig, cpu_fig) in [
            (PORT_EC, "ec.pem", Figure::EcdsaHandshakes, Figure::EcdsaCpu),
            (PORT_RSA, "rsa.pem", Figure::RsaHandshakes, Figure::RsaCpu),
        ] {
            let tls = self.tls_args(port, ca);
            let (j, cpu): (Connections, f64) =
                self.client(lb, &format!("handshakes {tls} --seconds {s}"))?;
            let ok = j.ok as f64;
            check_errors(&j, product, rate_fig)?;
            results.add(rate_fig, product, j.rate());
            results.add(cpu_fig, product, cpu * 1e6 / ok.max(1.0));
        }
        Ok(())
    }

    /// Passthrough handshakes (every product); the proxy also measures the same
    /// terminated handshake with and without SNI routes, back to back: the routing
    /// overhead, paired within the round.
    fn routes(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let s = self.seconds;
        let pass = self.tls_args(PORT_PASS, "ec.pem");
        let (j, cpu): (Connections, f64) =
            self.client(lb, &format!("handshakes {pass} --seconds {s}"))?;
        check_errors(&j, product, Figure::PassthroughHandshakes)?;
        results.add(Figure::PassthroughHandshakes, product, j.rate());
        results.add(
            Figure::PassthroughCpu,
            product,
            cpu * 1e6 / (j.ok as f64).max(1.0),
        );
        if !matches!(product, Product::Proxy | Product::ProxyBase) {
            return Ok(());
        }
        let mut per_handshake = Vec::new();
        for port in [PORT_EC, PORT_ROUTED] {
            let tls = self.tls_args(port, "ec.pem");
            let (j, cpu): (Connections, f64) =
                self.client(lb, &format!("handshakes {tls} --seconds {s}"))?;
            check_errors(&j, product, Figure::RoutedEcdsaCpu)?;
            per_handshake.push(cpu * 1e6 / (j.ok as f64).max(1.0));
        }
        results.add(Figure::UnroutedEcdsaCpu, product, per_handshake[0]);
        results.add(Figure::RoutedEcdsaCpu, product, per_handshake[1]);
        let overhead = (per_handshake[1] / per_handshake[0] - 1.0) * 100.0;
        results.add(Figure::RoutingOverhead, product, overhead);
        Ok(())
    }

    /// Re-encrypted connections (a full client handshake, a backend TLS connection
    /// verified, a GET), with backend session resumption and without; the backend's
    /// log says how many backend sessions each run resumed.
    fn reencrypt(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let s = self.seconds;
        for (port, rate_fig, cpu_fig, resumed_fig) in [
            (
                PORT_REENCRYPT,
                Figure::Reencrypted,
                Figure::ReencryptedCpu,
                Figure::ReencryptedBackendResumed,
            ),
            (
                PORT_REENCRYPT_FULL,
                Figure::ReencryptedFull,
                Figure::ReencryptedFullCpu,
                Figure::ReencryptedFullBackendResumed,
            ),
        ] {
            let log = self.dir.join("resumed.log");
            let before = backend_sessions(&log);
            let tls = self.tls_args(port, "ec.pem");
            let (j, cpu): (Connections, f64) =
                self.client(lb, &format!("handshakes {tls} --get /small --seconds {s}"))?;
            check_errors(&j, product, rate_fig)?;
            results.add(rate_fig, product, j.rate());
            results.add(cpu_fig, product, cpu * 1e6 / (j.ok as f64).max(1.0));
            // The backend flushes its log each second.
            std::thread::sleep(Duration::from_millis(1500));
            let (full, resumed) = backend_sessions(&log);
            let (full, resumed) = (full - before.0, resumed - before.1);
            ensure!(
                full + resumed >= j.ok,
                "{}: the backend logged {} requests for {} connections",
                product.label(),
                full + resumed,
                j.ok
            );
            let share = 100.0 * resumed as f64 / (full + resumed).max(1) as f64;
            results.add(resumed_fig, product, share);
        }
        Ok(())
    }

    fn connects(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let s = self.seconds;
        let (j, cpu): (Connections, f64) = self.client(
            lb,
            &format!("connects --addr {LB_IP}:{PORT_PLAIN} --get /small --seconds {s}"),
        )?;
        check_errors(&j, product, Figure::TcpConnects)?;
        let ok = j.ok as f64;
        results.add(Figure::TcpConnects, product, j.rate());
        results.add(Figure::TcpConnectCpu, product, cpu * 1e6 / ok.max(1.0));
        Ok(())
    }

    /// Two accountings of the same run: the LB's own CPU time (its threads, user and
    /// system, as every other figure) and the LB core's busy time (everything CPU 0
    /// ran: the LB, the softirq work done there, anything else).
    fn tls_bulk(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let (s, tls) = (self.seconds, self.tls_args(PORT_EC, "ec.pem"));
        let c = self.bulk_connections;
        let core_before = crate::cpu::busy_seconds(LB_CPU)?;
        let (j, cpu): (results::Bulk, f64) = self.client(
            lb,
            &format!("bulk {tls} --path /1m --seconds {s} --concurrency {c}"),
        )?;
        let core = crate::cpu::busy_seconds(LB_CPU)? - core_before;
        check_errors(&j, product, Figure::TlsBulk)?;
        let gb = j.bytes as f64 / 1e9;
        results.add(Figure::TlsBulk, product, gb * 8.0 / j.seconds);
        results.add(Figure::TlsBulkCpu, product, cpu / gb);
        results.add(Figure::TlsBulkCoreCpu, product, core / gb);
        Ok(())
    }

    fn iperf(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let s = self.seconds;
        let mut tcp_cpu = 0.0;
        let mut tcp_bytes = 0.0;
        for (flag, fig) in [("", Figure::TcpUp), ("-R", Figure::TcpDown)] {
            let before = self.lb_cpu(lb);
            let out = self.gen_ns.output_on_cpu(
                GEN_CPU,
                &format!("iperf3 -c {LB_IP} -p {PORT_IPERF} -t {s} -J {flag}"),
            )?;
            tcp_cpu += self.lb_cpu(lb) - before;
            let j: serde_json::Value =
                serde_json::from_str(&out).with_context(|| format!("iperf3 output: {out}"))?;
            let end = &j["end"]["sum_received"];
            let bps = end["bits_per_second"]
                .as_f64()
                .with_context(|| format!("iperf3: no result: {out}"))?;
            tcp_bytes += end["bytes"].as_f64().unwrap_or(0.0);
            results.add(fig, product, bps / 1e9);
        }
        results.add(Figure::TcpCpu, product, tcp_cpu / (tcp_bytes / 1e9));
        Ok(())
    }

    /// Small requests at 2,000/s, plain (32 connections) and TLS (50 connections).
    fn latencies(&self, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let j = self.latency(&format!("{LB_IP}:{PORT_PLAIN}"), None)?;
        results.add(Figure::P50, product, us(j.p50_us));
        results.add(Figure::P99, product, us(j.p99_us));
        results.add(Figure::P999, product, us(j.p999_us));
        let base = results.baseline_p99.last().copied().unwrap_or(0.0);
        results.add(Figure::AddedP99, product, us(j.p99_us) - base);

        let tls = self.tls_args(PORT_EC, "ec.pem");
        let j = self.latency(&format!("{LB_IP}:{PORT_EC}"), Some(&tls))?;
        results.add(Figure::TlsP50, product, us(j.p50_us));
        results.add(Figure::TlsP99, product, us(j.p99_us));
        results.add(Figure::TlsP999, product, us(j.p999_us));
        results.histogram(product, &j);
        Ok(())
    }

    /// Resumed handshakes/s and LB CPU per resumed handshake (ECDSA certificate).
    /// Each connection GETs a small object: TLS 1.3 tickets arrive after the
    /// handshake, so a client only gets one by reading (as a real client does).
    fn resumption(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let (s, tls) = (self.seconds, self.tls_args(PORT_EC, "ec.pem"));
        for (flags, rate_fig, cpu_fig) in [
            ("--resume tickets", Figure::Resumed13, Figure::Resumed13Cpu),
            (
                "--resume tickets --tls12",
                Figure::Resumed12Tickets,
                Figure::Resumed12TicketsCpu,
            ),
            (
                "--resume ids",
                Figure::Resumed12Ids,
                Figure::Resumed12IdsCpu,
            ),
        ] {
            let (j, cpu): (Connections, f64) = self.client(
                lb,
                &format!("handshakes {tls} {flags} --get /small --seconds {s}"),
            )?;
            check_errors(&j, product, rate_fig)?;
            let (ok, resumed) = (j.ok as f64, j.resumed as f64);
            // Each loop's first connection is a full handshake; nearly all others resume.
            ensure!(
                resumed >= ok * 0.9,
                "{} did not resume ({flags}): {resumed} of {ok} connections",
                product.label()
            );
            results.add(rate_fig, product, j.rate());
            results.add(cpu_fig, product, cpu * 1e6 / ok.max(1.0));
        }
        Ok(())
    }

    /// Syscalls and TCP segments per connection, for three kinds: proxied plain
    /// connections (connect, GET, close), resumed TLS 1.2 and resumed TLS 1.3
    /// connections (ticket, GET, close). Syscalls: `strace -c` on every thread of
    /// the LB's processes. Segments: the `lb` namespace's `TcpOutSegs` over a
    /// second, untraced run of the same connections (strace's delays would change
    /// which ACKs the kernel merges). Of the TLS connections, the first of each of
    /// the 16 client loops is a full handshake.
    fn syscalls(&self, lb: &Proc, product: Product, results: &mut Results) -> anyhow::Result<()> {
        /// A figure and the syscall it counts ("total" for all of them).
        type Row = (Figure, &'static str);
        let plain = format!("connects --addr {LB_IP}:{PORT_PLAIN} --get /small");
        let tls = self.tls_args(PORT_EC, "ec.pem");
        let tls12 = format!("handshakes {tls} --resume tickets --tls12 --get /small");
        let tls13 = format!("handshakes {tls} --resume tickets --get /small");
        // Per kind: the load, the segments figure, then (figure, syscall) rows; the
        // first row is the total.
        let kinds: [(&str, String, Figure, &[Row]); 3] = [
            (
                "plain",
                plain,
                Figure::Segments,
                &[
                    (Figure::Syscalls, "total"),
                    (Figure::SyscallsSetsockopt, "setsockopt"),
                    (Figure::SyscallsEpollCtl, "epoll_ctl"),
                    (Figure::SyscallsShutdown, "shutdown"),
                ],
            ),
            (
                "resumed TLS 1.2",
                tls12,
                Figure::SegmentsTls12,
                &[
                    (Figure::SyscallsTls12, "total"),
                    (Figure::SyscallsTls12Shutdown, "shutdown"),
                ],
            ),
            (
                "resumed TLS 1.3",
                tls13,
                Figure::SegmentsTls13,
                &[(Figure::SyscallsTls13, "total")],
            ),
        ];
        let n = SYSCALL_CONNECTIONS;
        for (kind, load, segments, rows) in kinds {
            let load = format!("{load} --count {n} --concurrency 16 --seconds 60");
            let file = format!("strace-{}-{}.txt", product.label(), kind.replace(' ', "-"));
            let strace = strace::Strace::attach(lb.pid(), &self.dir.join(file))?;
            let (j, _): (Connections, f64) = self.client(lb, &load)?;
            check_errors(&j, product, rows[0].0)?;
            let text = strace.finish()?;
            for &(figure, syscall) in rows {
                results.add(figure, product, strace::calls(&text, syscall) / n as f64);
            }
            results.strace.push((product, kind, text));

            let before = self.lb.nstat("TcpOutSegs")?;
            let (j, _): (Connections, f64) = self.client(lb, &load)?;
            check_errors(&j, product, segments)?;
            let sent = self.lb.nstat("TcpOutSegs")? - before;
            results.add(segments, product, sent as f64 / n as f64);
        }
        Ok(())
    }

    /// One fixed-rate latency run; TLS when `tls` (client arguments) is given.
    fn latency(&self, addr: &str, tls: Option<&str>) -> anyhow::Result<results::Latency> {
        self.latency_for(addr, tls, self.latency_seconds, "")
    }

    /// Like [`Bench::latency`], `seconds` long, with more client arguments.
    fn latency_for(
        &self,
        addr: &str,
        tls: Option<&str>,
        seconds: f64,
        more: &str,
    ) -> anyhow::Result<results::Latency> {
        let extra = match tls {
            Some(tls) => format!("{tls} --connections {TLS_LATENCY_CONNECTIONS}"),
            None => format!("--addr {addr}"),
        };
        let out = self.gen_ns.output_on_cpu(
            GEN_CPU,
            &format!(
                "{} client latency {extra} --path /small --rate {LATENCY_RATE} --seconds {seconds} {more}",
                self.generator.display(),
            ),
        )?;
        let j: results::Latency = results::parse(&out)?;
        ensure!(j.errors == 0, "latency run to {addr} had errors: {j:?}");
        Ok(j)
    }

    /// LB memory growth per idle TLS connection, in KiB.
    fn idle_memory(&self, product: Product, count: usize) -> anyhow::Result<f64> {
        let lb = self.start(product)?;
        // Warm up (allocator, session caches) before the baseline.
        let tls = self.tls_args(PORT_EC, "ec.pem");
        self.client::<Connections>(&lb, &format!("handshakes {tls} --seconds 1"))?;
        std::thread::sleep(Duration::from_millis(500));
        let before = rss_kib(lb.pid());
        let idle = IdleClients::open(self.gen_ns, GEN_CPU, self.generator, &tls, count)?;
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(lb.pid());
        let opened = idle.opened;
        idle.close();
        drop(lb);
        ensure!(
            opened == count,
            "{}: only {opened} of {count} idle connections opened",
            product.label()
        );
        Ok((after - before) / opened as f64)
    }
}

/// Requests the resumable backend has logged so far: (full handshakes, resumed).
fn backend_sessions(log: &Path) -> (u64, u64) {
    let text = std::fs::read(log).unwrap_or_default();
    let count = |c: u8| text.iter().filter(|&&b| b == c).count() as u64;
    (count(b'.'), count(b'r'))
}
