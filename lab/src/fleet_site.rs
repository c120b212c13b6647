//! The fleet lab: N `proxy` nodes announcing one VIP through their BIRD to a router
//! running BIRD with ECMP into its kernel, nginx backends on the nodes' segment, and a
//! client with many source addresses on the other side. Used by the fleet test, the
//! fleet demo and `cargo xtask bench fleet`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::certs::{self, CertFiles, KeyType};
use crate::config::{
    AutoblockSection, BgpPeer, BgpSection, Config, EtcdTls, FleetPolicySection, Health, Listener,
    Pool, SteeringSection, Vip, XdpSection, addr, addrs, dur, tls,
};
use crate::etcd::Etcd;
use crate::nginx::{Nginx, NginxOptions};
use crate::proxyd::{self, ProxyD};
use crate::{Fleet, PinDir, Proc};

pub const VIP4: &str = "10.99.0.1";
pub const VIP6: &str = "fd99::1";
const ROUTER_AS: u32 = 65000;
const NODE_AS: u32 = 65001;

pub struct FleetOptions {
    pub nodes: usize,
    pub backends: usize,
    /// Source addresses on the client (10.78.0.100, ...).
    pub client_addresses: usize,
    /// IPv6 VIP and sessions instead of IPv4.
    pub ipv6: bool,
    /// The `proxy` binary (default: the one the tests use).
    pub proxy_bin: Option<String>,
    pub withdraw_delay: &'static str,
    pub hold_down: &'static str,
    /// Fleet policy: etcd members on the nodes' segment, XDP and auto-blocking
    /// (shared) on every node, which also listens on its own address.
    pub policy: Option<PolicyOptions>,
    /// Connection steering: XDP on every node, one etcd member (unless `policy`
    /// brings more), `steering = true` on the VIP.
    pub steering: Option<SteeringOptions>,
    /// Of `nodes`, how many (the last ones) are built but not started:
    /// [`FleetSite::start_node`] starts them ("a node added").
    pub idle_nodes: usize,
}

pub struct SteeringOptions {
    /// An XDP object with an `xdp_pass` program, attached to the nodes' bridge ports
    /// so their XDP_TX frames are delivered (`xdp-bench.o`).
    pub xdp_pass: PathBuf,
    /// `[fleet.steering] member_ttl`.
    pub member_ttl: &'static str,
    /// `[timeouts] drain` of the nodes.
    pub drain: &'static str,
    /// `steering = true` on the VIP (false: the same fleet without steering, for a
    /// comparison).
    pub on: bool,
}

pub struct PolicyOptions {
    /// 1 or 3.
    pub etcd_members: usize,
    /// Failed TLS handshakes that auto-block a source.
    pub failed_handshakes: u32,
    /// Blocklist capacity per family (`xdp.max_block_entries`); default the product's.
    pub max_block_entries: Option<u32>,
    /// etcd with TLS (client certificates required) and users: the nodes connect as
    /// [`NODE_USER`] with the password in `node<i>/etcd-password`.
    pub secure: bool,
}

/// The etcd user of the nodes (read-write under `/proxy/` only) with `secure`.
pub const NODE_USER: &str = "fleet-node";
const NODE_PASSWORD: &str = "node-secret";

impl Default for FleetOptions {
    fn default() -> FleetOptions {
        FleetOptions {
            nodes: 3,
            backends: 2,
            client_addresses: 64,
            ipv6: false,
            proxy_bin: None,
            withdraw_delay: "2s",
            hold_down: "1s",
            policy: None,
            steering: None,
            idle_nodes: 0,
        }
    }
}

impl FleetOptions {
    /// The smallest whole fleet: one node announcing a steered VIP to the router (BGP),
    /// the etcd store (one member) with the node as the one steering member, one
    /// backend, one client address. `xdp_pass`: see [`SteeringOptions::xdp_pass`].
    pub fn one_steered_node(xdp_pass: PathBuf) -> FleetOptions {
        FleetOptions {
            nodes: 1,
            backends: 1,
            client_addresses: 1,
            steering: Some(SteeringOptions {
                xdp_pass,
                member_ttl: "2s",
                drain: "5s",
                on: true,
            }),
            ..FleetOptions::default()
        }
    }
}

pub struct FleetSite {
    // Drop order: daemons and servers, then the router's BIRD, then the namespaces.
    pub nodes: Vec<Option<ProxyD>>,
    pub backends: Vec<Nginx>,
    pub etcd: Option<Etcd>,
    _router_bird: Proc,
    pub fleet: Fleet,
    pub dir: tempfile::TempDir,
    pub cert: CertFiles,
    pub ipv6: bool,
    node_count: usize,
    backend_count: usize,
    node_configs: Vec<String>,
    proxy_bin: String,
    /// With `secure`: the etcd CA and the nodes' client certificate.
    etcd_client_cert: Option<(PathBuf, CertFiles)>,
    // After the daemons: their pins go when they are gone.
    _pins: Vec<PinDir>,
}

impl FleetSite {
    /// [`FleetOptions::one_steered_node`], up: the router has the node's route and
    /// HTTPS through the VIP works.
    pub fn one_steered_node(xdp_pass: PathBuf) -> anyhow::Result<FleetSite> {
        let site = FleetSite::build(FleetOptions::one_steered_node(xdp_pass))?;
        site.wait_next_hops(1, Duration::from_secs(30))?;
        anyhow::ensure!(site.request(0).is_some(), "no HTTPS through the VIP");
        Ok(site)
    }

    pub fn build(opts: FleetOptions) -> anyhow::Result<FleetSite> {
        crate::ensure_root()?;
        static SITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let site_id = SITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let etcd_members = match (&opts.policy, &opts.steering) {
            (Some(p), _) => p.etcd_members,
            (None, Some(_)) => 1,
            (None, None) => 0,
        };
        let fleet = Fleet::build(opts.nodes + opts.backends + etcd_members, 1)?;
        let dir = tempfile::Builder::new().prefix("lab-fleet-").tempdir()?;
        let d = dir.path().to_path_buf();
        let backends = (0..opts.backends)
            .map(|i| {
                let name = format!("be{i}");
                Nginx::start(
                    &fleet.nodes.host(opts.nodes + i).ns,
                    &d.join(&name),
                    NginxOptions {
                        name: &name,
                        port: 8080,
                        big_bytes: 1024,
                        ..NginxOptions::default()
                    },
                )
            })
            .collect();
        let mut fleet = fleet;
        if let Some(steering) = &opts.steering {
            // XDP_TX frames reach the bridge only if its port runs an XDP program.
            for i in 0..opts.nodes {
                fleet.nodes.accept_xdp_tx_from(i, &steering.xdp_pass)?;
            }
            // The client's TCP checksums complete (no offload): a steered packet
            // leaves XDP as a frame and loses the "partial checksum" mark.
            fleet
                .clients
                .host(0)
                .ns
                .exec("ethtool -K eth0 tx off >/dev/null")?;
        }
        let router_bird = start_router(&fleet, &d, opts.nodes, opts.ipv6)?;
        let secure = opts.policy.as_ref().is_some_and(|p| p.secure);
        let mut etcd_client_cert = None;
        let etcd = match etcd_members {
            0 => None,
            n => {
                let hosts: Vec<_> = (0..n)
                    .map(|k| fleet.nodes.host(opts.nodes + opts.backends + k))
                    .collect();
                let tls = match secure {
                    false => None,
                    true => {
                        let mut ca = certs::Ca::new(&d, "etcd-ca", "lab etcd CA")?;
                        let servers = hosts
                            .iter()
                            .enumerate()
                            .map(|(k, h)| ca.server(&format!("etcd{k}-server"), h.ipv4.parse()?))
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        let (client, _) =
                            ca.client("etcdctl", "root", KeyType::EcdsaP256, (2020, 2100))?;
                        let (node, _) =
                            ca.client("etcd-node", NODE_USER, KeyType::EcdsaP256, (2020, 2100))?;
                        etcd_client_cert = Some((ca.cert.clone(), node));
                        Some(crate::etcd::EtcdTls {
                            ca: ca.cert.clone(),
                            servers,
                            client,
                        })
                    }
                };
                let mut etcd = Etcd::start_with(&hosts, &d, tls)?;
                if secure {
                    etcd.enable_auth(NODE_USER, NODE_PASSWORD, "/proxy/")?;
                }
                Some(etcd)
            }
        };
        let proxy_bin = match &opts.proxy_bin {
            Some(b) => b.clone(),
            None => proxyd::try_proxy_bin()?,
        };
        let cert = certs::try_write(&d, "vip", KeyType::EcdsaP256, "vip.test", &["vip.test"])?;
        let backend_addrs: Vec<String> = (0..opts.backends)
            .map(|i| format!("{}:8080", fleet.nodes.host(opts.nodes + i).ipv4))
            .collect();
        let mut site = FleetSite {
            nodes: Vec::new(),
            backends,
            etcd,
            _router_bird: router_bird,
            fleet,
            dir,
            cert,
            ipv6: opts.ipv6,
            node_count: opts.nodes,
            backend_count: opts.backends,
            node_configs: Vec::new(),
            proxy_bin,
            _pins: Vec::new(),
            etcd_client_cert,
        };
        for i in 0..opts.nodes {
            // Unique per site: tests of one binary build sites in parallel.
            let pins = PinDir::new(&format!("fleet{site_id}-{i}"));
            let config = site.node_config(i, &backend_addrs, &opts, &pins);
            site._pins.push(pins);
            let vip = site.vip();
            let len = if opts.ipv6 { 128 } else { 32 };
            let host = site.fleet.nodes.host(i);
            host.ns.exec(&format!("ip addr add {vip}/{len} dev lo"))?;
            let node_dir = site.node_dir(i);
            std::fs::create_dir_all(&node_dir)?;
            std::fs::write(node_dir.join("etcd-password"), format!("{NODE_PASSWORD}\n"))?;
            site.node_configs.push(config);
            if i >= opts.nodes - opts.idle_nodes.min(opts.nodes) {
                site.nodes.push(None);
                continue;
            }
            let config = &site.node_configs[i];
            let p = ProxyD::try_start_bin(&site.proxy_bin, &host.ns, &node_dir, config)
                .with_context(|| format!("starting node {i}"))?;
            site.nodes.push(Some(p));
        }
        let client = site.fleet.clients.host(0);
        client
            .ns
            .exec(&format!("ip route add {VIP4}/32 via 10.78.0.254"))?;
        client
            .ns
            .exec(&format!("ip -6 route add {VIP6}/128 via fd78::254"))?;
        for a in 0..opts.client_addresses {
            client
                .ns
                .exec(&format!("ip addr add 10.78.0.{}/24 dev eth0", 100 + a))?;
        }
        Ok(site)
    }

    fn node_config(
        &self,
        i: usize,
        backends: &[String],
        opts: &FleetOptions,
        pins: &PinDir,
    ) -> String {
        let host = self.fleet.nodes.host(i);
        let (bind, peer) = match opts.ipv6 {
            false => (format!("{VIP4}:443"), "10.77.0.254"),
            true => (format!("[{VIP6}]:443"), "fd77::254"),
        };
        let mut config = Config::new();
        if let (Some(policy), Some(etcd)) = (&opts.policy, &self.etcd) {
            let mut xdp = XdpSection::on(&["eth0"], &pins.0);
            if let Some(n) = policy.max_block_entries {
                xdp.max_block_entries = n;
            }
            config = config
                .with_listener(
                    Listener::new("direct", addr(format!("{}:443", host.ipv4)), "web")
                        .tls(tls(&self.cert)),
                )
                .with_xdp(xdp)
                .with_fleet_policy(FleetPolicySection {
                    node: Some(format!("node{i}")),
                    timeout: dur("1s"),
                    ..self.etcd_credentials(i, etcd.endpoints())
                });
            config.autoblock = Some(AutoblockSection {
                failed_handshakes: policy.failed_handshakes,
                block_for: dur("5m"),
                share: true,
                ..AutoblockSection::default()
            });
        }
        if let (Some(steering), Some(etcd), None) = (&opts.steering, &self.etcd, &opts.policy) {
            config = config
                .with_xdp(XdpSection::on(&["eth0"], &pins.0))
                .with_fleet_policy(FleetPolicySection {
                    node: Some(format!("node{i}")),
                    timeout: dur("1s"),
                    ..FleetPolicySection::new(etcd.endpoints())
                });
            if steering.on {
                config = config.with_steering(SteeringSection {
                    member_ttl: dur(steering.member_ttl),
                    rollout_timeout: dur("5s"),
                    ..SteeringSection::default()
                });
            }
            config.timeouts.drain = dur(steering.drain);
        }
        let peer = BgpPeer {
            address: peer.parse().expect("a peer address"),
            asn: ROUTER_AS,
        };
        let mut vip = Vip::new(self.vip().parse().expect("the VIP"), &["https"]);
        vip.steering = opts.steering.as_ref().is_some_and(|s| s.on);
        let router_id = host.ipv4.parse().expect("an IPv4 router id");
        let mut https = Listener::new("https", addr(bind), "web").tls(tls(&self.cert));
        if opts.steering.is_some() {
            // Room for the 40 bytes of GUE on the 1500-byte segment.
            https.mss = Some(1420);
        }
        let mut config = config.with_listener(https).with_pool(
            Pool::new("web", addrs(backends)).health(Health::every(dur("200ms"), dur("1s"), 1, 2)),
        );
        config.bgp = Some(BgpSection {
            hold_time: dur("3s"),
            withdraw_delay: dur(opts.withdraw_delay),
            announce_hold_down: dur(opts.hold_down),
            bird_dir: self.node_dir(i).join("bird"),
            ..BgpSection::new(NODE_AS, router_id, vec![peer], vec![vip])
        });
        config.to_toml()
    }

    /// `[fleet.policy]` for `endpoints`, with node `i`'s TLS and user settings
    /// (none without `secure`).
    fn etcd_credentials(&self, i: usize, endpoints: Vec<String>) -> FleetPolicySection {
        let policy = FleetPolicySection::new(endpoints);
        let Some((ca, cert)) = &self.etcd_client_cert else {
            return policy;
        };
        FleetPolicySection {
            user: Some(NODE_USER.into()),
            password_file: Some(self.node_dir(i).join("etcd-password")),
            tls: Some(EtcdTls {
                ca: ca.clone(),
                cert: Some(cert.cert.clone()),
                key: Some(cert.key.clone()),
                server_name: None,
            }),
            ..policy
        }
    }

    pub fn vip(&self) -> &'static str {
        if self.ipv6 { VIP6 } else { VIP4 }
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    /// The router's next hops for the VIP.
    pub fn next_hops(&self) -> Vec<String> {
        let route = match self.ipv6 {
            false => format!("-4 route show {VIP4}/32"),
            true => format!("-6 route show {VIP6}/128"),
        };
        let out = self.fleet.router.sh(&format!("ip {route}"));
        out.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect()
    }

    /// Waits until the router has `n` next hops; how long that took.
    pub fn wait_next_hops(&self, n: usize, within: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        crate::try_wait_for(&format!("{n} next hops for the VIP"), within, || {
            (self.next_hops().len() == n).then_some(())
        })?;
        Ok(start.elapsed())
    }

    /// One HTTPS request to the VIP from client address `a` (IPv4 sites; IPv6 sites use
    /// the client's own address); the backend that answered.
    pub fn request(&self, a: usize) -> Option<String> {
        let from = match self.ipv6 {
            false => format!("--interface 10.78.0.{}", 100 + a),
            true => String::new(),
        };
        let target = match self.ipv6 {
            false => VIP4.to_string(),
            true => format!("[{VIP6}]"),
        };
        let out = self.fleet.clients.host(0).ns.try_sh(&format!(
            "curl -sf --max-time 3 {from} --cacert {} --resolve vip.test:443:{target} https://vip.test/name",
            self.cert.cert.display()
        ));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `proxy stats --json` of node `i`.
    pub fn node_stats_json(&self, i: usize) -> String {
        proxyd::cli(
            &self.fleet.nodes.host(i).ns,
            &format!(
                "stats --json --socket {}",
                self.node_dir(i).join("admin.sock").display()
            ),
        )
    }

    /// `proxy stats` (text) of node `i`.
    pub fn node_stats_text(&self, i: usize) -> String {
        proxyd::cli(
            &self.fleet.nodes.host(i).ns,
            &format!(
                "stats --socket {}",
                self.node_dir(i).join("admin.sock").display()
            ),
        )
    }

    /// Node `i`'s own address.
    pub fn node_ip(&self, i: usize) -> std::net::Ipv4Addr {
        self.fleet
            .nodes
            .host(i)
            .ipv4
            .parse()
            .expect("an IPv4 address")
    }

    /// `n` UDP datagrams from `src` (one of the client's addresses) to node `i`.
    pub fn udp_from(&self, src: std::net::Ipv4Addr, i: usize, n: usize) -> anyhow::Result<()> {
        let target = std::net::SocketAddr::from((self.node_ip(i), 9));
        crate::inside::in_netns(&self.fleet.clients.host(0).ns, || {
            let socket = std::net::UdpSocket::bind((src, 0))?;
            for _ in 0..n {
                let _ = socket.send_to(b"probe", target);
            }
            Ok(())
        })
    }

    /// `n` connections from `src` to node `i`'s own TLS listener that send bytes
    /// that are not TLS (each a failed handshake there).
    pub fn junk_from(&self, src: std::net::Ipv4Addr, i: usize, n: u32) -> anyhow::Result<()> {
        let target = std::net::SocketAddr::from((self.node_ip(i), 443));
        crate::inside::in_netns(&self.fleet.clients.host(0).ns, || {
            for _ in 0..n {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                s.bind(&std::net::SocketAddr::from((src, 0)).into())?;
                if s.connect_timeout(&target.into(), Duration::from_millis(300))
                    .is_ok()
                {
                    let mut s = std::net::TcpStream::from(s);
                    let _ = std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\nnot TLS\r\n");
                    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                    let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
                }
            }
            Ok(())
        })
    }

    /// Does node `i` answer `src` (one of the client's addresses)? A connect to a
    /// closed port is refused while packets pass; a SYN unanswered for 20 ms means
    /// the XDP program dropped it.
    pub fn answered(&self, src: std::net::Ipv4Addr, i: usize) -> anyhow::Result<bool> {
        let target = std::net::SocketAddr::from((self.node_ip(i), 9));
        crate::inside::in_netns(&self.fleet.clients.host(0).ns, || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.bind(&std::net::SocketAddr::from((src, 0)).into())?;
            match s.connect_timeout(&target.into(), Duration::from_millis(20)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(false),
                Err(e) => Err(anyhow::Error::from(e).context("probe")),
                Ok(_) => anyhow::bail!("port 9 on node {i} accepted: it must be closed"),
            }
        })
    }

    /// Stops node `i` (SIGTERM, waits for its exit).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            p.stop();
        }
    }

    /// Node `i`'s configuration as last written.
    pub fn node_config_text(&self, i: usize) -> &str {
        &self.node_configs[i]
    }

    /// Writes `config` for node `i` and reloads it (SIGHUP); waits for the daemon to
    /// log that it applied a configuration once more.
    pub fn reload_node(&mut self, i: usize, config: &str) -> anyhow::Result<()> {
        let p = self.nodes[i].as_ref().context("node not running")?;
        let applied = p.count_log("configuration applied");
        // The file keeps the [admin] section ProxyD added at start.
        let admin = std::fs::read_to_string(&p.config)?;
        let admin = admin
            .find("\n[admin]")
            .map_or("", |at| &admin[at..])
            .to_string();
        std::fs::write(&p.config, format!("{config}{admin}"))?;
        p.signal("HUP");
        crate::try_wait_for("the reload", Duration::from_secs(10), || {
            (p.count_log("configuration applied") > applied).then_some(())
        })?;
        self.node_configs[i] = config.to_string();
        Ok(())
    }

    /// The daemon of node `i`, if running.
    pub fn node_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].as_ref()?.proc.as_ref().map(|p| p.pid())
    }

    /// Starts node `i` again with its configuration.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let ns = &self.fleet.nodes.host(i).ns;
        let p = ProxyD::try_start_bin(
            &self.proxy_bin,
            ns,
            &self.node_dir(i),
            &self.node_configs[i],
        )
        .with_context(|| format!("starting node {i} again"))?;
        self.nodes[i] = Some(p);
        Ok(())
    }

    /// `proxy <args>` in node `i`'s namespace; `{socket}` and `{pins}` in `args`
    /// become the node's admin socket and pin directory. Its output, or an error.
    pub fn node_cli(&self, i: usize, args: &str) -> anyhow::Result<String> {
        let args = args
            .replace(
                "{socket}",
                &self.node_dir(i).join("admin.sock").display().to_string(),
            )
            .replace("{pins}", &self._pins[i].display().to_string());
        self.fleet
            .nodes
            .host(i)
            .ns
            .exec(&format!("{} {args}", self.proxy_bin))
    }

    /// Stops (SIGTERM) or restarts nothing: sends `signal` to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(p) = &self.nodes[i] {
            p.signal(signal);
        }
    }

    /// SIGKILL node `i` (its BIRD dies with it).
    pub fn kill(&self, i: usize) {
        self.signal(i, "KILL");
    }

    /// Changes the router's multipath hash seed (`net.ipv4.fib_multipath_hash_seed`,
    /// Linux 6.11+): the same next hops, flows spread over them anew.
    pub fn rehash(&self, seed: u32) -> anyhow::Result<()> {
        self.fleet.router.exec(&format!(
            "sysctl -qw net.ipv4.fib_multipath_hash_seed={seed}"
        ))?;
        Ok(())
    }

    /// `proxy fleet status --json` of node `i`.
    pub fn node_fleet_status_json(&self, i: usize) -> anyhow::Result<String> {
        self.node_cli(i, "fleet status --json --socket {socket}")
    }

    /// Stops (`up = false`) or restarts every backend.
    pub fn backends_up(&mut self, up: bool) {
        for (i, b) in self.backends.iter_mut().enumerate() {
            let ns = &self.fleet.nodes.host(self.node_count + i).ns;
            if up { b.restart(ns) } else { b.kill(ns) }
        }
    }

    pub fn backend_count(&self) -> usize {
        self.backend_count
    }
}

/// BIRD on the router: a session per node, routes merged into ECMP next hops.
fn start_router(fleet: &Fleet, d: &Path, nodes: usize, ipv6: bool) -> anyhow::Result<Proc> {
    let mut conf = String::from(
        "router id 10.77.0.254;\nprotocol device {}\n\
         protocol kernel { ipv4 { export all; }; merge paths on; }\n\
         protocol kernel { ipv6 { export all; }; merge paths on; }\n",
    );
    for i in 0..nodes {
        let (neighbor, channel) = match ipv6 {
            false => (fleet.nodes.host(i).ipv4.clone(), "ipv4"),
            true => (fleet.nodes.host(i).ipv6.clone(), "ipv6"),
        };
        conf += &format!(
            "protocol bgp lb{i} {{ local as {ROUTER_AS}; neighbor {neighbor} as {NODE_AS}; hold time 3; \
             keepalive time 1; connect retry time 1; error wait time 1, 10; \
             {channel} {{ import all; export none; }}; }}\n"
        );
    }
    let path = d.join("router.conf");
    std::fs::write(&path, conf)?;
    // ECMP on the 5-tuple (addresses, protocol, ports). Policy 3 (these fields), not
    // policy 1: with 1 Linux takes a forwarded packet's L4 hash from the packet when
    // it has one (here the client socket's, across veth; on hardware the NIC's RSS
    // hash), and then `fib_multipath_hash_seed` (a rehash, `FleetSite::rehash`)
    // changes nothing.
    fleet.router.exec(
        "sysctl -qw net.ipv4.fib_multipath_hash_policy=3 && sysctl -qw net.ipv4.fib_multipath_hash_fields=0x37 \
         && sysctl -qw net.ipv6.fib_multipath_hash_policy=3 && sysctl -qw net.ipv6.fib_multipath_hash_fields=0x37",
    )?;
    fleet.router.start(&format!(
        "bird -f -c {} -s {}",
        path.display(),
        d.join("router.ctl").display()
    ))
}
