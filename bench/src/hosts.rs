//! The lab shape the load benchmarks share: the load balancer (10.77.0.1, CPU 0), the
//! generator with its nginx backend (10.77.0.2, CPU 1; on one port or several), and
//! more hosts on the same bridge, tuned for many short connections.

use std::path::Path;

use lab::{Proc, Topology};

pub const LB_IP: &str = "10.77.0.1";
pub const GEN_IP: &str = "10.77.0.2";
pub const LB_CPU: &str = "0";
pub const GEN_CPU: &str = "1";
pub const TLS_PORT: u16 = 443;
pub const BACKEND_PORT: u16 = 8080;
pub const SERVER_NAME: &str = "bench.test";

/// `lb`, `gen` and `extra` hosts on a bridge; nginx on `gen` serving `d/www` at
/// BACKEND_PORT (pinned to GEN_CPU). The backend stops when the process is dropped.
pub fn lb_generator_and(d: &Path, extra: &[&str]) -> anyhow::Result<(Topology, Proc)> {
    lb_generator_with_ports(d, extra, &[BACKEND_PORT])
}

/// Like [`lb_generator_and`], the nginx listening on each of `ports` of GEN_IP.
pub fn lb_generator_with_ports(
    d: &Path,
    extra: &[&str],
    ports: &[u16],
) -> anyhow::Result<(Topology, Proc)> {
    let mut roles = vec!["lb", "gen"];
    roles.extend_from_slice(extra);
    let topo = Topology::star(&roles)?;
    for i in 0..roles.len() {
        topo.host(i).ns.exec(
            "sysctl -qw net.ipv4.tcp_tw_reuse=1 && sysctl -qw net.ipv4.ip_local_port_range='10000 65000' && \
             sysctl -qw net.core.somaxconn=8192",
        )?;
    }
    std::fs::create_dir_all(d.join("www"))?;
    std::fs::write(d.join("www/small"), vec![b's'; 100])?;
    let listen: Vec<String> = ports.iter().map(|p| format!("{GEN_IP}:{p}")).collect();
    std::fs::write(
        d.join("backend.conf"),
        lab::nginx::bench_backend_conf(d, &listen),
    )?;
    let gen_ns = &topo.host(1).ns;
    let backend =
        gen_ns.start_on_cpu(GEN_CPU, &format!("nginx -c {}/backend.conf", d.display()))?;
    gen_ns.wait_listening(ports)?;
    Ok((topo, backend))
}
