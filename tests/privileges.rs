//! Least privilege: the daemon runs with exactly the capabilities the systemd unit
//! grants (dist/proxy.service), and keeps only CAP_NET_BIND_SERVICE after start;
//! without CAP_BPF it refuses to start and says why. Needs root.

use std::time::{Duration, Instant};

use lab::config::*;
use lab::site::{Lab, LabOptions};

const CAP_NET_BIND_SERVICE: u64 = 1 << 10;

fn unit_capabilities() -> Vec<String> {
    let unit = include_str!("../dist/proxy.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn runs_with_the_unit_capabilities_and_drops_them_after_start() {
    let lab = Lab::new(LabOptions {
        backends: 1,
        ..Default::default()
    });
    let pins = lab::PinDir::new("caps");
    let config = lab.path("proxy.toml");
    let text = Config::new()
        .with_listener(Listener::new(
            "http",
            addr(format!("{}:80", lab.lb_ip())),
            "web",
        ))
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_admin(AdminSection {
            socket: lab.path("admin.sock").into(),
            metrics: None,
        })
        .with_xdp(XdpSection::on(&["eth0"], &pins.0))
        .to_toml();
    std::fs::write(&config, text).unwrap();
    let caps: Vec<String> = unit_capabilities()
        .iter()
        .map(|c| format!("+{c}"))
        .collect();
    let run = |bounding: &str| {
        lab.topo.host(0).ns.spawn(&format!(
            "setpriv --bounding-set -all,{bounding} --inh-caps=-all {} run --config {config}",
            lab::proxyd::proxy_bin()
        ))
    };

    let mut daemon = run(&caps.join(","));
    let start = Instant::now();
    while !lab
        .topo
        .host(0)
        .ns
        .sh("ip link show dev eth0")
        .contains("prog/xdp")
    {
        assert!(
            daemon.alive() && start.elapsed() < Duration::from_secs(10),
            "{:?}",
            daemon.stop()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = daemon.pid();
    // Capabilities are dropped right after the first apply; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while effective_caps(pid) != CAP_NET_BIND_SERVICE && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        effective_caps(pid),
        CAP_NET_BIND_SERVICE,
        "only CAP_NET_BIND_SERVICE stays"
    );
    // Still serving on a privileged port, through XDP, to the backend.
    let body = lab.client_ok(&format!(
        "curl -sf --max-time 5 http://{}:80/name",
        lab.lb_ip()
    ));
    assert_eq!(body.trim(), "be0");
    // Stopping still detaches XDP (through the link it holds, no capability needed).
    let (_, log, code) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("dropped capabilities"), "{log}");
    assert!(
        !lab.topo
            .host(0)
            .ns
            .sh("ip link show dev eth0")
            .contains("prog/xdp"),
        "{log}"
    );

    // Without CAP_BPF: a clear refusal.
    let without_bpf: Vec<&str> = caps
        .iter()
        .map(String::as_str)
        .filter(|c| *c != "+bpf")
        .collect();
    let (_, log, code) = run(&without_bpf.join(",")).wait_output(Duration::from_secs(10));
    assert_ne!(code, Some(0));
    assert!(log.contains("missing: CAP_BPF"), "{log}");
}
