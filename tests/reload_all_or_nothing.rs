//! A reload changes all or nothing: a configuration that one part rejects (here BGP:
//! BIRD refuses a link-local peer without an interface) leaves the kernel half
//! exactly as it was (lists, rate limits, SYN cookie settings and their sysctl, read
//! back from the pinned maps with bpftool), although the XDP part of the same file
//! was valid. The same file without the bad peer then applies. Needs root and bird2.

use std::net::SocketAddr;
use std::time::Duration;

use lab::config::*;
use lab::proxyd::ProxyD;
use lab::{PinDir, Topology};

/// The pinned maps a configuration writes (lists, limits, ports, service settings).
const WRITTEN_MAPS: [&str; 5] = ["BLOCK_V4", "BLOCK_V6", "ALLOW_V4", "CONFIG", "PORTS"];

struct Node {
    topo: Topology,
    pins: PinDir,
    dir: tempfile::TempDir,
}

impl Node {
    /// `new_policy`: a longer blocklist, other limits and SYN cookies on; `bad_peer`:
    /// a BGP peer BIRD refuses.
    fn config(&self, new_policy: bool, bad_peer: bool) -> String {
        let lb = &self.topo.host(0).ipv4;
        let bind: SocketAddr = addr(format!("{lb}:8443"));
        let mut xdp = XdpSection::on(&["eth0"], &self.pins.0)
            .block(list_entry("192.0.2.1"))
            .rate_limit(RateLimitConfig {
                packets_per_second: if new_policy { 200 } else { 100 },
                ports: vec![8443],
                ..RateLimitConfig::default()
            });
        if new_policy {
            xdp = xdp.block(list_entry("203.0.113.0/24"));
        }
        let cookies = if new_policy {
            SynCookieMode::On
        } else {
            SynCookieMode::Off
        };
        let mut peers = vec![BgpPeer {
            address: "10.77.0.254".parse().unwrap(),
            asn: 65000,
        }];
        if bad_peer {
            peers.push(BgpPeer {
                address: "fe80::1".parse().unwrap(),
                asn: 65000,
            });
        }
        let vip = Vip::new(lb.parse().unwrap(), &["web"]);
        let router_id = lb.parse().unwrap();
        Config::new()
            .with_listener(Listener::new("web", bind, "p").syn_cookies(cookies))
            .with_pool(Pool::new("p", [addr("10.77.0.9:80")]).health(Health::off()))
            .with_xdp(xdp)
            .with_bgp(BgpSection {
                bird_dir: self.dir.path().join("bird"),
                ..BgpSection::new(65001, router_id, peers, vec![vip])
            })
            .to_toml()
    }

    /// Every written map's entries (bpftool's JSON) and the namespace's
    /// tcp_syncookies.
    fn kernel_state(&self) -> Vec<String> {
        let ns = &self.topo.host(0).ns;
        let mut state: Vec<String> = WRITTEN_MAPS
            .iter()
            .map(|map| {
                let path = self.pins.0.join(map);
                let dump = ns.sh(&format!("bpftool -j map dump pinned {}", path.display()));
                format!("{map}: {dump}")
            })
            .collect();
        state.push(ns.sh("sysctl -n net.ipv4.tcp_syncookies"));
        state
    }
}

#[test]
fn a_reload_rejected_by_bgp_leaves_the_kernel_half_unchanged() {
    lab::require_root();
    lab::ensure_tools(&["bird", "bpftool"], "run `cargo xtask setup`").unwrap();
    let node = Node {
        topo: Topology::new(&["lb"]),
        pins: PinDir::new("all-or-nothing"),
        dir: tempfile::tempdir().unwrap(),
    };
    let daemon = ProxyD::start(
        &node.topo.host(0).ns,
        node.dir.path(),
        &node.config(false, false),
    );
    let before = node.kernel_state();

    // Valid XDP policy, but a peer BIRD refuses: rejected, nothing changed.
    daemon.write_config(&node.config(true, true));
    daemon.signal("HUP");
    daemon.wait_log("the rejection", "reload rejected");
    let log = daemon.log();
    assert!(
        log.contains("Link-local addresses require defined interface"),
        "BIRD's own reason is in the rejection:\n{log}"
    );
    assert_eq!(
        node.kernel_state(),
        before,
        "a rejected reload changed the kernel half"
    );

    // The same policy without the bad peer applies.
    daemon.write_config(&node.config(true, false));
    daemon.signal("HUP");
    lab::wait_for("the good reload", Duration::from_secs(10), || {
        (daemon.count_log("reload succeeded") == 1).then_some(())
    });
    let after = node.kernel_state();
    assert_ne!(after, before, "the good reload changed the kernel half");
    assert!(
        after[0].contains("203") && after[0].contains("113"),
        "203.0.113.0/24 is blocked: {}",
        after[0]
    );
    assert_eq!(
        after.last().map(String::as_str),
        Some("2\n"),
        "SYN cookies set tcp_syncookies = 2"
    );
}
