//! The usual set-up of the data-path tests: a load-balancer host, a client host and
//! nginx backends on one bridge, a scratch directory, and helpers to run the real
//! clients (curl, openssl s_client) on the client host.

use std::process::Output;
use std::time::Duration;

#[cfg(feature = "certs")]
use crate::certs::{self, CertFiles, KeyType};
use crate::nginx::{Nginx, NginxOptions};
use crate::proxyd::{self, ProxyD};
use crate::{Host, Topology, require_root};

/// Port every nginx backend listens on.
pub const BACKEND_PORT: u16 = 8080;

pub struct Lab {
    // Fields drop in order: processes first, then the namespaces, then the files.
    pub proxy: Option<ProxyD>,
    pub backends: Vec<Nginx>,
    pub topo: Topology,
    pub dir: tempfile::TempDir,
}

pub struct LabOptions {
    pub backends: usize,
    /// Extra hosts after the backends (`at0`, `at1`...), for attack traffic.
    pub attackers: usize,
    pub proxy_protocol: bool,
    pub big_bytes: usize,
}

impl Default for LabOptions {
    fn default() -> LabOptions {
        LabOptions {
            backends: 2,
            attackers: 0,
            proxy_protocol: false,
            big_bytes: 2 << 20,
        }
    }
}

impl Lab {
    /// Host 0 is the load balancer (10.77.0.1, fd77::1), host 1 the client
    /// (10.77.0.2), hosts 2.. the backends `be0`, `be1`... (10.77.0.3, ...).
    pub fn new(opts: LabOptions) -> Lab {
        require_root();
        let mut roles = vec!["lb", "cl"];
        let names: Vec<String> = (0..opts.backends).map(|i| format!("be{i}")).collect();
        roles.extend(names.iter().map(String::as_str));
        let attackers: Vec<String> = (0..opts.attackers).map(|i| format!("at{i}")).collect();
        roles.extend(attackers.iter().map(String::as_str));
        let topo = Topology::new(&roles);
        let dir = tempfile::Builder::new()
            .prefix("lab-")
            .tempdir()
            .expect("a scratch directory");
        let backends = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Nginx::start(
                    &topo.host(2 + i).ns,
                    &dir.path().join(name),
                    NginxOptions {
                        name,
                        port: BACKEND_PORT,
                        proxy_protocol: opts.proxy_protocol,
                        big_bytes: opts.big_bytes,
                        ..NginxOptions::default()
                    },
                )
            })
            .collect();
        Lab {
            proxy: None,
            backends,
            topo,
            dir,
        }
    }

    /// Attack host `i` (after the backends).
    pub fn attacker(&self, i: usize) -> &Host {
        self.topo.host(2 + self.backends.len() + i)
    }

    pub fn lb_ip(&self) -> &str {
        &self.topo.host(0).ipv4
    }

    pub fn client_ip(&self) -> &str {
        &self.topo.host(1).ipv4
    }

    pub fn backend_addr(&self, i: usize) -> String {
        format!("{}:{BACKEND_PORT}", self.topo.host(2 + i).ipv4)
    }

    /// Every backend's address, for [`crate::config::Pool::new`].
    pub fn backend_addrs(&self) -> Vec<String> {
        (0..self.backends.len())
            .map(|i| self.backend_addr(i))
            .collect()
    }

    /// Starts the proxy on the load-balancer host with this config.
    pub fn start_proxy(&mut self, config: &str) -> &ProxyD {
        let p = ProxyD::start(&self.topo.host(0).ns, self.dir.path(), config);
        self.proxy = Some(p);
        self.proxy()
    }

    pub fn proxy(&self) -> &ProxyD {
        self.proxy.as_ref().expect("proxy started")
    }

    #[cfg(feature = "certs")]
    /// A self-signed ECDSA certificate for `name` (subject and only SAN), written as
    /// `<name>.pem`/`<name>.key` in the lab's directory.
    pub fn cert(&self, name: &str) -> CertFiles {
        certs::write(self.dir.path(), name, KeyType::EcdsaP256, name, &[name])
    }

    /// The load-balancer host.
    pub fn lb(&self) -> &Host {
        self.topo.host(0)
    }

    /// Runs `proxy <args>` (the CLI) on the load-balancer host; its stdout.
    pub fn cli(&self, args: &str) -> String {
        proxyd::cli(&self.lb().ns, args)
    }

    /// `proxy stats --json` from the running daemon's admin socket (parse it with the
    /// product's typed API).
    pub fn stats_json(&self) -> String {
        self.cli(&format!(
            "stats --json --socket {}",
            self.path("admin.sock")
        ))
    }

    /// Runs a shell command on the client host.
    pub fn client(&self, cmd: &str) -> Output {
        self.topo.host(1).ns.try_sh(cmd)
    }

    /// Runs a shell command on the client host; panics unless it succeeds; stdout.
    pub fn client_ok(&self, cmd: &str) -> String {
        let out = self.client(cmd);
        assert!(
            out.status.success(),
            "`{cmd}` failed ({:?}):\n{}{}\nproxy log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.proxy.as_ref().map(|p| p.log()).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One `GET /name` over plain HTTP/1.0 from the client host to `target` (through
    /// the proxy); did a backend answer?
    pub fn plain_get(&self, target: std::net::SocketAddr) -> bool {
        crate::inside::in_netns(&self.topo.host(1).ns, || {
            let Ok(mut s) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
            else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            if std::io::Write::write_all(&mut s, b"GET /name HTTP/1.0\r\n\r\n").is_err() {
                return false;
            }
            let mut answer = String::new();
            std::io::Read::read_to_string(&mut s, &mut answer).is_ok() && answer.contains("be")
        })
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Text of an `openssl s_client` session (handshake details on stdout).
pub fn s_client_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
