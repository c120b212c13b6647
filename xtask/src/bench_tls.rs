//! `cargo xtask bench tls`: `proxy`, HAProxy and NGINX (stream) side by side.
//!
//! Two namespaces joined by a veth pair: `lb` (10.99.0.1) runs the load balancer
//! under test pinned to CPU 0; `gen` (10.99.0.2) runs the load generator
//! (`xtask bench-client`, see bench_client.rs), the nginx HTTP backend and the
//! iperf3 server, pinned to CPU 1. Each round starts every product in turn (the order
//! rotates), measures every figure, stops it. Printed: medians, min-max, and the
//! median of the per-round (paired) ratios; LB CPU time per handshake and per GB
//! comes from /proc (utime + stime of the LB's processes).
//!
//! Requires root and the Debian packages haproxy, nginx, libnginx-mod-stream, iperf3.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

const LB_IP: &str = "10.99.0.1";
const GEN_IP: &str = "10.99.0.2";
const LB_CPU: &str = "0";
const GEN_CPU: &str = "1";
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";
/// Ports on the load balancer: ECDSA TLS, RSA TLS, plain HTTP, plain iperf3.
const PORT_EC: u16 = 8443;
const PORT_RSA: u16 = 8444;
const PORT_PLAIN: u16 = 8080;
const PORT_IPERF: u16 = 5201;
/// Backend ports in `gen`.
const BACKEND_HTTP: u16 = 80;
const BACKEND_IPERF: u16 = 5202;
const SERVER_NAME: &str = "bench.test";
const LATENCY_RATE: u32 = 2000;

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
    /// Products to compare (proxy, haproxy, nginx).
    #[arg(long, value_delimiter = ',', default_value = "proxy,haproxy,nginx")]
    pub products: Vec<Product>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Product {
    Proxy,
    Haproxy,
    Nginx,
}

impl Product {
    fn label(self) -> &'static str {
        match self {
            Product::Proxy => "proxy",
            Product::Haproxy => "HAProxy",
            Product::Nginx => "NGINX",
        }
    }
}

/// A figure measured per product and round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Figure {
    EcdsaHandshakes,
    EcdsaCpu,
    RsaHandshakes,
    RsaCpu,
    TcpConnects,
    TcpConnectCpu,
    TlsBulk,
    TlsBulkCpu,
    TcpUp,
    TcpDown,
    TcpCpu,
    P50,
    P99,
    AddedP99,
    IdleMemory,
}

impl Figure {
    fn label(self) -> &'static str {
        match self {
            Figure::EcdsaHandshakes => "full ECDSA P-256 handshakes/s",
            Figure::EcdsaCpu => "LB CPU per ECDSA handshake (µs)",
            Figure::RsaHandshakes => "full RSA-2048 handshakes/s",
            Figure::RsaCpu => "LB CPU per RSA handshake (µs)",
            Figure::TcpConnects => "new plain TCP connections/s",
            Figure::TcpConnectCpu => "LB CPU per new TCP connection (µs)",
            Figure::TlsBulk => "TLS bulk, 1 MiB objects (Gbit/s)",
            Figure::TlsBulkCpu => "LB CPU per GB, TLS bulk (s)",
            Figure::TcpUp => "plain TCP iperf3 up (Gbit/s)",
            Figure::TcpDown => "plain TCP iperf3 down (Gbit/s)",
            Figure::TcpCpu => "LB CPU per GB, plain TCP (s)",
            Figure::P50 => "small request p50 at 2k/s (µs)",
            Figure::P99 => "small request p99 at 2k/s (µs)",
            Figure::AddedP99 => "added p99 vs no LB (µs)",
            Figure::IdleMemory => "memory per idle TLS connection (KiB)",
        }
    }

    fn decimals(self) -> usize {
        match self {
            Figure::TlsBulk | Figure::TcpUp | Figure::TcpDown => 2,
            Figure::TlsBulkCpu | Figure::TcpCpu => 3,
            Figure::IdleMemory => 1,
            _ => 0,
        }
    }
}

#[derive(Default)]
struct Results {
    /// (figure, product) → one value per round.
    values: BTreeMap<(Figure, Product), Vec<f64>>,
    /// No-LB baseline latency per round.
    baseline_p50: Vec<f64>,
    baseline_p99: Vec<f64>,
    notes: Vec<String>,
}

impl Results {
    fn add(&mut self, figure: Figure, product: Product, value: f64) {
        self.values
            .entry((figure, product))
            .or_default()
            .push(value);
    }
}

/// Builds the release `proxy` and `xtask` (the load generator); returns their paths.
pub(crate) fn build_release(
    root: &Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    eprintln!("building proxy and the load generator (release)...");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "proxy",
            "-p",
            "xtask",
        ])
        .current_dir(root)
        .status()?;
    ensure!(
        status.success(),
        "cargo build --release -p proxy -p xtask failed"
    );
    Ok((
        root.join("target/release/proxy"),
        root.join("target/release/xtask"),
    ))
}

pub fn run(args: Args, root: &Path) -> anyhow::Result<()> {
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmark creates network namespaces: run it as root"
    );
    for tool in ["ip", "taskset", "iperf3", "nginx", "haproxy", "ss"] {
        ensure!(
            which(tool),
            "`{tool}` not found: apt-get install haproxy nginx libnginx-mod-stream iperf3 iproute2 util-linux"
        );
    }
    ensure!(
        Path::new(STREAM_MODULE).exists(),
        "{STREAM_MODULE} is missing: apt-get install libnginx-mod-stream"
    );
    raise_fd_limit();

    let (proxy_bin, xtask) = build_release(root)?;

    let dir = tempfile::Builder::new().prefix("proxy-bench").tempdir()?;
    let d = dir.path();
    write_certs(d)?;
    std::fs::create_dir_all(d.join("www"))?;
    std::fs::write(d.join("www/1m"), vec![b'x'; 1 << 20])?;
    std::fs::write(d.join("www/small"), vec![b's'; 100])?;

    let lb = Netns::new("lb")?;
    let gen_ns = Netns::new("gen")?;
    sh(&format!(
        "ip link add eth0 netns {} type veth peer name eth0 netns {}",
        lb.name, gen_ns.name
    ))?;
    for (ns, ip) in [(&lb, LB_IP), (&gen_ns, GEN_IP)] {
        ns.sh(&format!(
            "ip addr add {ip}/24 dev eth0 && ip link set eth0 up && ip link set lo up && \
             sysctl -qw net.ipv4.tcp_tw_reuse=1 && sysctl -qw net.ipv4.ip_local_port_range='1024 65000' && \
             sysctl -qw net.core.somaxconn=8192"
        ))?;
    }

    std::fs::write(d.join("backend.conf"), backend_nginx_conf(d))?;
    let _backend = Proc::spawn(
        &gen_ns,
        GEN_CPU,
        &format!("nginx -c {}/backend.conf", d.display()),
    )?;
    let _iperf = Proc::spawn(
        &gen_ns,
        GEN_CPU,
        &format!("iperf3 -s -B {GEN_IP} -p {BACKEND_IPERF}"),
    )?;
    wait_listening(&gen_ns, &[BACKEND_HTTP, BACKEND_IPERF])?;

    std::fs::write(d.join("proxy.toml"), proxy_conf(d))?;
    std::fs::write(d.join("haproxy.cfg"), haproxy_conf(d))?;
    std::fs::write(d.join("lbnginx.conf"), lb_nginx_conf(d))?;
    let bench = Bench {
        lb: &lb,
        gen_ns: &gen_ns,
        dir: d,
        xtask: &xtask,
        proxy_bin: &proxy_bin,
        seconds: args.seconds,
    };

    let mut results = Results::default();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        let (p50, p99) = bench.latency(&format!("{GEN_IP}:{BACKEND_HTTP}"))?;
        results.baseline_p50.push(p50);
        results.baseline_p99.push(p99);
        let mut order = args.products.clone();
        let shift = round % order.len().max(1);
        order.rotate_left(shift);
        for &product in &order {
            eprintln!("  {}", product.label());
            bench.round(product, &mut results)?;
        }
    }
    for &product in &args.products {
        eprintln!("idle memory: {}", product.label());
        let kib = bench.idle_memory(product, args.idle_connections)?;
        results.add(Figure::IdleMemory, product, kib);
    }
    results.notes.push(format!(
        "idle memory measured at {} connections (LB RSS growth / connections)",
        args.idle_connections
    ));
    print!("{}", report(&args, &results));
    Ok(())
}

struct Bench<'a> {
    lb: &'a Netns,
    gen_ns: &'a Netns,
    dir: &'a Path,
    xtask: &'a Path,
    proxy_bin: &'a Path,
    seconds: f64,
}

impl Bench<'_> {
    fn start(&self, product: Product) -> anyhow::Result<Proc> {
        let d = self.dir.display();
        let cmd = match product {
            Product::Proxy => format!(
                "env RUST_LOG=warn {} run --config {d}/proxy.toml",
                self.proxy_bin.display()
            ),
            Product::Haproxy => format!("haproxy -db -f {d}/haproxy.cfg"),
            Product::Nginx => format!("nginx -c {d}/lbnginx.conf"),
        };
        let p = Proc::spawn(self.lb, LB_CPU, &cmd)?;
        wait_listening(self.lb, &[PORT_EC, PORT_RSA, PORT_PLAIN, PORT_IPERF])?;
        Ok(p)
    }

    /// Runs the generator; returns its JSON answer and the LB CPU seconds it cost.
    fn client(&self, lb: &Proc, args: &str) -> anyhow::Result<(serde_json::Value, f64)> {
        let before = cpu_seconds(lb.pid());
        let out = self.gen_ns.output(
            GEN_CPU,
            &format!("{} bench-client {args}", self.xtask.display()),
        )?;
        let cpu = cpu_seconds(lb.pid()) - before;
        let json: serde_json::Value = serde_json::from_str(out.trim())
            .with_context(|| format!("bench-client {args}: {out}"))?;
        Ok((json, cpu))
    }

    fn round(&self, product: Product, results: &mut Results) -> anyhow::Result<()> {
        let lb = self.start(product)?;
        let s = self.seconds;
        let d = self.dir.display();
        for (port, ca, rate_fig, cpu_fig) in [
            (PORT_EC, "ec.pem", Figure::EcdsaHandshakes, Figure::EcdsaCpu),
            (PORT_RSA, "rsa.pem", Figure::RsaHandshakes, Figure::RsaCpu),
        ] {
            let (j, cpu) = self.client(
                &lb,
                &format!(
                    "handshakes --addr {LB_IP}:{port} --name {SERVER_NAME} --ca {d}/{ca} --seconds {s}"
                ),
            )?;
            let ok = num(&j, "ok");
            check_errors(&j, product, rate_fig)?;
            results.add(rate_fig, product, ok / num(&j, "seconds"));
            results.add(cpu_fig, product, cpu * 1e6 / ok.max(1.0));
        }
        let (j, cpu) = self.client(
            &lb,
            &format!("connects --addr {LB_IP}:{PORT_PLAIN} --seconds {s}"),
        )?;
        check_errors(&j, product, Figure::TcpConnects)?;
        let ok = num(&j, "ok");
        results.add(Figure::TcpConnects, product, ok / num(&j, "seconds"));
        results.add(Figure::TcpConnectCpu, product, cpu * 1e6 / ok.max(1.0));

        let (j, cpu) = self.client(
            &lb,
            &format!(
                "bulk --addr {LB_IP}:{PORT_EC} --name {SERVER_NAME} --ca {d}/ec.pem --path /1m --seconds {s}"
            ),
        )?;
        check_errors(&j, product, Figure::TlsBulk)?;
        let bytes = num(&j, "bytes");
        results.add(
            Figure::TlsBulk,
            product,
            bytes * 8.0 / num(&j, "seconds") / 1e9,
        );
        results.add(Figure::TlsBulkCpu, product, cpu / (bytes / 1e9));

        let mut tcp_cpu = 0.0;
        let mut tcp_bytes = 0.0;
        for (flag, fig) in [("", Figure::TcpUp), ("-R", Figure::TcpDown)] {
            let before = cpu_seconds(lb.pid());
            let out = self.gen_ns.output(
                GEN_CPU,
                &format!("iperf3 -c {LB_IP} -p {PORT_IPERF} -t {s} -J {flag}"),
            )?;
            tcp_cpu += cpu_seconds(lb.pid()) - before;
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

        let (p50, p99) = self.latency(&format!("{LB_IP}:{PORT_PLAIN}"))?;
        results.add(Figure::P50, product, p50);
        results.add(Figure::P99, product, p99);
        let base = results.baseline_p99.last().copied().unwrap_or(0.0);
        results.add(Figure::AddedP99, product, p99 - base);
        lb.stop();
        Ok(())
    }

    fn latency(&self, addr: &str) -> anyhow::Result<(f64, f64)> {
        let out = self.gen_ns.output(
            GEN_CPU,
            &format!(
                "{} bench-client latency --addr {addr} --path /small --rate {LATENCY_RATE} --seconds {}",
                self.xtask.display(),
                self.seconds
            ),
        )?;
        let j: serde_json::Value = serde_json::from_str(out.trim())?;
        ensure!(
            num(&j, "errors") == 0.0,
            "latency run to {addr} had errors: {j}"
        );
        Ok((num(&j, "p50_us"), num(&j, "p99_us")))
    }

    /// LB memory growth per idle TLS connection, in KiB.
    fn idle_memory(&self, product: Product, count: usize) -> anyhow::Result<f64> {
        let lb = self.start(product)?;
        // Warm up (allocator, session caches) before the baseline.
        self.client(
            &lb,
            &format!(
                "handshakes --addr {LB_IP}:{PORT_EC} --name {SERVER_NAME} --ca {}/ec.pem --seconds 1",
                self.dir.display()
            ),
        )?;
        std::thread::sleep(Duration::from_millis(500));
        let before = rss_kib(lb.pid());
        let mut child = self
            .gen_ns
            .command(GEN_CPU, &format!(
                "{} bench-client idle --addr {LB_IP}:{PORT_EC} --name {SERVER_NAME} --ca {}/ec.pem --count {count}",
                self.xtask.display(),
                self.dir.display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("stdout")?).read_line(&mut line)?;
        let opened: f64 = line
            .strip_prefix("ready ")
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("idle client: {line:?}"))?;
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(lb.pid());
        drop(child.stdin.take());
        let _ = child.wait();
        lb.stop();
        ensure!(
            opened as usize == count,
            "{}: only {opened} of {count} idle connections opened",
            product.label()
        );
        Ok((after - before) / opened)
    }
}

fn check_errors(j: &serde_json::Value, product: Product, figure: Figure) -> anyhow::Result<()> {
    let errors = num(j, "errors");
    let done = num(j, "ok").max(num(j, "bytes"));
    if errors > done * 0.01 {
        bail!(
            "{} {}: {errors} errors: {j}",
            product.label(),
            figure.label()
        );
    }
    Ok(())
}

pub(crate) fn num(j: &serde_json::Value, key: &str) -> f64 {
    j[key].as_f64().unwrap_or(0.0)
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn report(args: &Args, r: &Results) -> String {
    let mut out = String::new();
    let products = &args.products;
    let peers: Vec<Product> = products
        .iter()
        .copied()
        .filter(|p| *p != Product::Proxy)
        .collect();
    out += &format!(
        "\n{} rounds x {} s, LB on CPU {LB_CPU}, generator and backends on CPU {GEN_CPU}; median (min-max)\n\n",
        args.rounds, args.seconds
    );
    out += "| figure |";
    for p in products {
        out += &format!(" {} |", p.label());
    }
    for p in &peers {
        out += &format!(" proxy/{} |", p.label());
    }
    out += "\n|---|";
    out += &"---|".repeat(products.len() + peers.len());
    out += "\n";
    let figures: Vec<Figure> = {
        let mut f: Vec<Figure> = r.values.keys().map(|(f, _)| *f).collect();
        f.dedup();
        f
    };
    for fig in figures {
        out += &format!("| {} |", fig.label());
        for p in products {
            match r.values.get(&(fig, *p)) {
                Some(v) => {
                    let (lo, hi) = v
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
                    let k = fig.decimals();
                    out += &format!(" {:.k$} ({lo:.k$}-{hi:.k$}) |", median(v));
                }
                None => out += " - |",
            }
        }
        for peer in &peers {
            // A ratio of differences (added latency) means nothing: compare medians.
            let (Some(a), Some(b), false) = (
                r.values.get(&(fig, Product::Proxy)),
                r.values.get(&(fig, *peer)),
                fig == Figure::AddedP99,
            ) else {
                out += " - |";
                continue;
            };
            // Paired: same round, then the median of the ratios.
            let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
            out += &format!(" {:.2} |", median(&ratios));
        }
        out += "\n";
    }
    out += &format!(
        "\nno LB (client straight to the backend): p50 {:.0} µs, p99 {:.0} µs\n",
        median(&r.baseline_p50),
        median(&r.baseline_p99)
    );
    for n in &r.notes {
        out += &format!("note: {n}\n");
    }
    out
}

fn write_certs(d: &Path) -> anyhow::Result<()> {
    for (stem, alg) in [("ec", 0), ("rsa", 1)] {
        let key = match alg {
            0 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            _ => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
            }
        };
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        let cert = params.self_signed(&key)?;
        std::fs::write(d.join(format!("{stem}.pem")), cert.pem())?;
        std::fs::write(d.join(format!("{stem}.key")), key.serialize_pem())?;
        // HAProxy wants certificate and key in one file.
        std::fs::write(
            d.join(format!("{stem}.haproxy.pem")),
            cert.pem() + &key.serialize_pem(),
        )?;
    }
    Ok(())
}

fn backend_nginx_conf(d: &Path) -> String {
    let d = d.display();
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/backend.pid;\nerror_log {d}/backend.err warn;\n\
         worker_rlimit_nofile 20000;\nevents {{ worker_connections 19000; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000000;\n\
           keepalive_timeout 300s;\n  client_header_timeout 300s;\n\
           server {{ listen {GEN_IP}:{BACKEND_HTTP} backlog=8192; root {d}/www; }}\n}}\n"
    )
}

fn proxy_conf(d: &Path) -> String {
    let d = d.display();
    let tls = |name: &str, port: u16, stem: &str| {
        format!(
            "[[listener]]\nname = \"{name}\"\nbind = \"{LB_IP}:{port}\"\npool = \"web\"\n\
             [listener.tls]\ncertificates = [{{ cert = \"{d}/{stem}.pem\", key = \"{d}/{stem}.key\" }}]\n\n"
        )
    };
    format!(
        "{}{}[[listener]]\nname = \"plain\"\nbind = \"{LB_IP}:{PORT_PLAIN}\"\npool = \"web\"\n\n\
         [[listener]]\nname = \"iperf\"\nbind = \"{LB_IP}:{PORT_IPERF}\"\npool = \"iperf\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ address = \"{GEN_IP}:{BACKEND_HTTP}\" }}]\n\
         [pool.health]\nenabled = false\n\n\
         [[pool]]\nname = \"iperf\"\nbackends = [{{ address = \"{GEN_IP}:{BACKEND_IPERF}\" }}]\n\
         [pool.health]\nenabled = false\n\n\
         [limits]\nmax_connections = 9900\n\n[log]\nlevel = \"warn\"\n",
        tls("ec", PORT_EC, "ec"),
        tls("rsa", PORT_RSA, "rsa"),
    )
}

fn haproxy_conf(d: &Path) -> String {
    let d = d.display();
    format!(
        "global\n  nbthread 1\n  maxconn 9900\n\
         defaults\n  mode tcp\n  maxconn 9900\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n\
         frontend ec\n  bind {LB_IP}:{PORT_EC} ssl crt {d}/ec.haproxy.pem\n  default_backend web\n\
         frontend rsa\n  bind {LB_IP}:{PORT_RSA} ssl crt {d}/rsa.haproxy.pem\n  default_backend web\n\
         frontend plain\n  bind {LB_IP}:{PORT_PLAIN}\n  default_backend web\n\
         frontend iperf\n  bind {LB_IP}:{PORT_IPERF}\n  default_backend iperf\n\
         backend web\n  server b1 {GEN_IP}:{BACKEND_HTTP}\n\
         backend iperf\n  server b1 {GEN_IP}:{BACKEND_IPERF}\n"
    )
}

fn lb_nginx_conf(d: &Path) -> String {
    let d = d.display();
    let tls = |port: u16, stem: &str| {
        format!(
            "  server {{ listen {LB_IP}:{port} ssl; ssl_certificate {d}/{stem}.pem; \
             ssl_certificate_key {d}/{stem}.key; proxy_pass web; }}\n"
        )
    };
    format!(
        "load_module {STREAM_MODULE};\nworker_processes 1;\ndaemon off;\npid {d}/lbnginx.pid;\n\
         error_log {d}/lbnginx.err warn;\nworker_rlimit_nofile 20000;\n\
         events {{ worker_connections 19900; }}\n\
         stream {{\n  proxy_timeout 300s;\n  ssl_protocols TLSv1.2 TLSv1.3;\n  upstream web {{ server {GEN_IP}:{BACKEND_HTTP}; }}\n\
           upstream iperf {{ server {GEN_IP}:{BACKEND_IPERF}; }}\n{}{}\
           server {{ listen {LB_IP}:{PORT_PLAIN}; proxy_pass web; }}\n\
           server {{ listen {LB_IP}:{PORT_IPERF}; proxy_pass iperf; }}\n}}\n",
        tls(PORT_EC, "ec"),
        tls(PORT_RSA, "rsa"),
    )
}

/// A network namespace for the benchmark, deleted on drop (with what runs in it).
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn new(role: &str) -> anyhow::Result<Netns> {
        let name = format!("pxb{}-{role}", std::process::id());
        sh(&format!("ip netns add {name}"))?;
        Ok(Netns { name })
    }

    pub(crate) fn sh(&self, cmd: &str) -> anyhow::Result<()> {
        sh(&format!("ip netns exec {} sh -c \"{cmd}\"", self.name))
    }

    pub(crate) fn command(&self, cpu: &str, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns", "exec", &self.name, "taskset", "-c", cpu, "sh", "-c",
        ])
        .arg(format!("exec {cmd}"));
        c
    }

    /// Runs to completion (bounded by the program's own duration); stdout.
    pub(crate) fn output(&self, cpu: &str, cmd: &str) -> anyhow::Result<String> {
        let out = self.command(cpu, cmd).stderr(Stdio::inherit()).output()?;
        ensure!(
            out.status.success(),
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A process we started; stopped by PID (SIGTERM, then SIGKILL) on drop.
pub(crate) struct Proc {
    child: Child,
}

impl Proc {
    pub(crate) fn spawn(ns: &Netns, cpu: &str, cmd: &str) -> anyhow::Result<Proc> {
        let child = ns
            .command(cpu, cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn {cmd}"))?;
        Ok(Proc { child })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(self) {}
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn sh(cmd: &str) -> anyhow::Result<()> {
    let out = Command::new("sh").arg("-c").arg(cmd).output()?;
    ensure!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub(crate) fn wait_listening(ns: &Netns, ports: &[u16]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ss", "-ltnH"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if ports.iter().all(|p| text.contains(&format!(":{p} "))) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "ports {ports:?} not listening in {}:\n{text}",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|x| x.parse().ok())) {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// Fields of /proc/PID/stat after the command name: [state, ppid, ...].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU seconds of `pid` and its descendants.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    process_tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
            let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
            t(11) + t(12)
        })
        .sum::<f64>()
        / hz
}

/// Resident memory (KiB) of `pid` and its descendants.
fn rss_kib(pid: u32) -> f64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .sum()
}

pub(crate) fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
