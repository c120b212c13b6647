//! Zero-downtime binary upgrades (`proxy upgrade`, `proxy run --takeover`) under
//! load, in namespaces: a TLS and a plain TCP listener, rate-limited downloads that
//! outlive an upgrade, and a blocklisted attacker whose every packet must be dropped
//! by XDP throughout. Needs root.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lab::PinDir;
use lab::config::*;
use lab::inside::in_netns;
use lab::process::exited;
use lab::site::{Lab, LabOptions};
use proxy::api::Stats;
use proxy_common::Reason;

const UPGRADES: usize = 10;
/// The downloads: 3 MiB at 1 MiB/s.
const BIG: usize = 3 << 20;

fn config(lab: &Lab, pins: &PinDir) -> String {
    let cert = lab.cert("lb.test");
    Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{}:443", lab.lb_ip())), "p").tls(tls(&cert)),
        )
        .with_listener(Listener::new(
            "tcp",
            addr(format!("{}:80", lab.lb_ip())),
            "p",
        ))
        .with_pool(Pool::new("p", addrs(&lab.backend_addrs())))
        .with_xdp(XdpSection::on(&["eth0"], &pins.0).block(list_entry(&lab.attacker(0).ipv4)))
        .to_toml()
}

fn blocklisted(lab: &Lab) -> u64 {
    let stats: Stats = serde_json::from_str(&lab.stats_json()).unwrap();
    stats
        .xdp
        .expect("xdp")
        .interfaces
        .iter()
        .map(|i| i.verdicts.get(Reason::Blocklisted).packets)
        .sum()
}

/// Packets the kernel dropped on the lab's links before any XDP program saw them:
/// the sum of every link's TX and RX "dropped" in the switch and the attacker's
/// namespace (veth rings full under load), from `ip -s link`.
fn path_drops(lab: &Lab) -> u64 {
    let mut spaces = vec![lab.attacker(0).ns.name.clone()];
    spaces.extend(lab.topo.switch_name().map(str::to_string));
    spaces
        .iter()
        .map(|ns| {
            let out = lab::netns::sh(&format!("ip -n {ns} -s -j link"));
            let links: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            links
                .as_array()
                .map(|links| {
                    links
                        .iter()
                        .map(|l| {
                            let n = |dir: &str| l["stats64"][dir]["dropped"].as_u64().unwrap_or(0);
                            n("rx") + n("tx")
                        })
                        .sum::<u64>()
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Datagrams the LB's kernel received for a port nothing listens on (the attack's
/// port 9999): any would have passed XDP.
fn lb_udp_no_ports(lab: &Lab) -> u64 {
    lab.lb().ns.nstat("UdpNoPorts").unwrap()
}

/// One plain TCP request through the proxy; did it answer?
fn tcp_request(lab: &Lab) -> bool {
    lab.plain_get(format!("{}:80", lab.lb_ip()).parse().unwrap())
}

fn tls_request(lab: &Lab, ca: &str) -> bool {
    lab.client(&format!(
        "curl -sf --max-time 5 --cacert {ca} --resolve lb.test:443:{} https://lb.test/name",
        lab.lb_ip()
    ))
    .status
    .success()
}

/// A connection from the LB's port 80 that has delivered more than 64 KiB: a download
/// (the plain requests' answers are a few hundred bytes).
/// The length of the HTTP response head (through the blank line) at the start of `bytes`.
fn response_head_len(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the response head fits in the first KiB")
        + 4
}

/// Sets the flag when dropped (also while a panic unwinds).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn ten_upgrades_under_load_lose_nothing() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        attackers: 1,
        big_bytes: BIG,
        ..LabOptions::default()
    });
    let pins = PinDir::new("upgrade");
    let conf = config(&lab, &pins);
    lab.start_proxy(&conf);
    let config_path = lab.proxy().config.display().to_string();
    let ca = lab.path("lb.test.pem");
    let first_pid = lab.proxy().proc.as_ref().unwrap().pid();

    let done = AtomicBool::new(false);
    let (tls_ok, tls_failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let (tcp_ok, tcp_failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let (downloads_ok, downloads_failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let sent = AtomicU64::new(0);
    // The attacker knows the LB's MAC: no datagram waits in (or is dropped from) the
    // queue of an unresolved ARP entry, where `send_to` has already succeeded.
    let lb_mac = lab.lb().ns.mac_of("eth0").unwrap();
    let lb_mac: Vec<String> = lb_mac.iter().map(|b| format!("{b:02x}")).collect();
    lab.attacker(0).ns.sh(&format!(
        "ip neigh replace {} lladdr {} dev eth0 nud permanent",
        lab.lb_ip(),
        lb_mac.join(":")
    ));
    let before = blocklisted(&lab);
    let drops_before = path_drops(&lab);
    let stack_before = lb_udp_no_ports(&lab);
    let mut pids = vec![first_pid];
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let c = if tls_request(&lab, &ca) {
                    &tls_ok
                } else {
                    &tls_failed
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let c = if tcp_request(&lab) {
                    &tcp_ok
                } else {
                    &tcp_failed
                };
                c.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // Downloads lasting ~3 s, one after the other: each outlives an upgrade.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let out = lab.client(&format!(
                    "curl -s --max-time 30 --limit-rate 1M -o /dev/null -w '%{{size_download}}' http://{}:80/big",
                    lab.lb_ip()
                ));
                let size: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
                let c = if out.status.success() && size == BIG {
                    &downloads_ok
                } else {
                    &downloads_failed
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The attacker: at most 2,000 datagrams a second, at most 200,000.
        s.spawn(|| {
            let target: SocketAddr = format!("{}:9999", lab.lb_ip()).parse().unwrap();
            in_netns(&lab.attacker(0).ns, || {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                while !done.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 200_000 {
                    for _ in 0..20 {
                        if socket.send_to(b"attack", target).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        });

        // Whatever happens below (a failed assertion too), the load threads stop.
        let _stop = StopOnDrop(&done);
        // The first upgrade must find a download in flight (round 0 checks that the
        // old process drains it). The curl downloads may be near their end, so round 0
        // holds one of its own: a client that asks for /big and reads nothing until the
        // refusal is seen. The proxy cannot hand 3 MiB to a closed window, so it keeps
        // the connection until the client reads.
        let mut held = in_netns(&lab.topo.host(1).ns, || {
            let target: SocketAddr = format!("{}:80", lab.lb_ip()).parse().unwrap();
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
            s
        });
        let mut first = [0u8; 1024];
        held.read_exact(&mut first).unwrap();
        assert!(
            first.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&first)
        );
        for round in 0..UPGRADES {
            let counted = blocklisted(&lab);
            let out = lab.cli(&format!("upgrade --config {config_path}"));
            let line = out
                .lines()
                .find(|l| l.starts_with("upgraded:"))
                .unwrap_or_else(|| panic!("{out}"));
            eprintln!("round {round}: {line}");
            let new_pid: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
            let old_pid = *pids.last().unwrap();
            if round == 0 {
                // The old process still drains a download: a second upgrade now is refused.
                let refused = lab
                    .lb()
                    .ns
                    .run(&format!(
                        "{} upgrade --config {config_path}",
                        lab::proxyd::proxy_bin()
                    ))
                    .unwrap();
                let text = String::from_utf8_lossy(&refused.stderr).into_owned();
                assert!(!refused.status.success(), "{text}");
                assert!(text.contains("still draining"), "{text}");
                // The old process forwards the rest of the held download.
                let mut rest = Vec::new();
                held.read_to_end(&mut rest).unwrap();
                let body = first.len() + rest.len() - response_head_len(&first);
                assert_eq!(body, BIG, "the held download is not complete");
            }
            pids.push(new_pid);
            lab::wait_for("the old process to exit", Duration::from_secs(40), || {
                exited(old_pid).then_some(())
            });
            assert!(
                blocklisted(&lab) > counted,
                "round {round}: no drops counted across the upgrade"
            );
        }
        std::thread::sleep(Duration::from_secs(1));
        done.store(true, Ordering::Relaxed);
    });
    // Every datagram the attacker sent was dropped by an XDP program: no gap.
    let sent = sent.load(Ordering::Relaxed);
    let counted = lab::try_wait_for(
        "the last datagrams to be counted",
        Duration::from_secs(5),
        || (blocklisted(&lab) - before >= sent).then_some(()),
    );
    eprintln!(
        "attack: {sent} sent, {} counted as dropped by XDP, {} dropped by the kernel on the way, \
         {} reached the LB's UDP stack",
        blocklisted(&lab) - before,
        path_drops(&lab) - drops_before,
        lb_udp_no_ports(&lab) - stack_before
    );
    counted.unwrap();
    assert_eq!(
        blocklisted(&lab) - before,
        sent,
        "some attack packets were not dropped"
    );
    let log = lab.proxy().log();
    eprintln!(
        "TLS {} ok {} failed; TCP {} ok {} failed; downloads {} ok {} failed; attack {sent} sent",
        tls_ok.load(Ordering::Relaxed),
        tls_failed.load(Ordering::Relaxed),
        tcp_ok.load(Ordering::Relaxed),
        tcp_failed.load(Ordering::Relaxed),
        downloads_ok.load(Ordering::Relaxed),
        downloads_failed.load(Ordering::Relaxed),
    );
    assert_eq!(tls_failed.load(Ordering::Relaxed), 0, "{log}");
    assert_eq!(tcp_failed.load(Ordering::Relaxed), 0, "{log}");
    assert_eq!(downloads_failed.load(Ordering::Relaxed), 0, "{log}");
    assert!(downloads_ok.load(Ordering::Relaxed) >= 3);
    assert!(tls_ok.load(Ordering::Relaxed) > 50 && tcp_ok.load(Ordering::Relaxed) > 50);
    // Every generation logged to the first one's log, each old one drained and left.
    assert_eq!(log.matches("upgrade: took over").count(), UPGRADES, "{log}");
    assert!(pids[..UPGRADES].iter().all(|p| exited(*p)));
    let last = *pids.last().unwrap();
    assert!(!exited(last));
    // The last one answers the admin socket and stops like any daemon.
    lab.cli(&format!("stats --socket {}", lab.path("admin.sock")));
    let _ = std::process::Command::new("kill")
        .arg(last.to_string())
        .status();
    lab::wait_for("the last process to exit", Duration::from_secs(40), || {
        exited(last).then_some(())
    });
}

#[test]
fn a_failed_takeover_leaves_the_old_process_serving() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        attackers: 1,
        ..LabOptions::default()
    });
    let pins = PinDir::new("upgrade-fail");
    let conf = config(&lab, &pins);
    lab.start_proxy(&conf);
    let ca = lab.path("lb.test.pem");
    let bin = lab::proxyd::proxy_bin();

    // A bad configuration: the new process exits non-zero with the cause and never
    // contacts the old one.
    let bad = lab.path("bad.toml");
    std::fs::write(&bad, conf.replace("pool = \"p\"", "pool = \"nope\"")).unwrap();
    let out = lab
        .lb()
        .ns
        .run(&format!("{bin} run --config {bad} --takeover"))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(text.contains("nope"), "{text}");
    assert!(tls_request(&lab, &ca) && tcp_request(&lab));

    // Two failures in the middle of a take-over: SIGKILL once the new process has
    // the sockets; a [bgp] section it cannot start, after it replaced the XDP program
    // in the link. Neither committed: the old process takes its attachment back.
    let config_path = lab.proxy().config.display().to_string();
    let broken_bgp = lab.path("bgp.toml");
    std::fs::write(
        &broken_bgp,
        format!(
            "{conf}\n[bgp]\nlocal_as = 65001\nrouter_id = \"10.77.0.1\"\nbird_dir = \"/proc/no-such-dir/bird\"\n\
             [[bgp.peer]]\naddress = \"10.77.0.254\"\nas = 65000\n\
             [[bgp.vip]]\naddress = \"{}\"\nlisteners = [\"tls\"]\n[admin]\nsocket = \"{}\"\n",
            lab.lb_ip(),
            lab.path("admin.sock")
        ),
    )
    .unwrap();
    for (attempt, (config, kill_at)) in [
        (
            config_path.as_str(),
            Some("listening on the handed-over socket"),
        ),
        (broken_bgp.as_str(), None),
    ]
    .into_iter()
    .enumerate()
    {
        let log = lab.path(&format!("new{attempt}.log"));
        let new = lab
            .lb()
            .ns
            .start(&format!(
                "{bin} --log-format json run --config {config} --takeover 2>{log}"
            ))
            .unwrap();
        let new_log = || std::fs::read_to_string(&log).unwrap_or_default();
        match kill_at {
            Some(line) => {
                lab::wait_for(
                    "the new process to get the sockets",
                    Duration::from_secs(20),
                    || new_log().contains(line).then_some(()),
                );
                new.signal("KILL");
                let _ = new.wait_output(Duration::from_secs(5));
            }
            None => {
                let (_, _, code) = new.wait_output(Duration::from_secs(20));
                assert_ne!(code, Some(0));
                assert!(
                    new_log().contains("took over the pinned XDP attachment"),
                    "{}",
                    new_log()
                );
                assert!(new_log().contains("bird"), "{}", new_log());
            }
        }
        let noticed =
            lab::try_wait_for("the old process to notice", Duration::from_secs(10), || {
                (lab.proxy().count_log("upgrade aborted") == attempt + 1).then_some(())
            });
        assert!(
            noticed.is_ok(),
            "old:\n{}\nnew:\n{}",
            lab.proxy().log(),
            new_log()
        );
        // The old process took its attachment back and serves.
        assert!(
            std::path::Path::new(&lab.path("admin.sock")).exists(),
            "admin socket gone; old:\n{}\nnew:\n{}",
            lab.proxy().log(),
            new_log()
        );
        let before = blocklisted(&lab);
        let target: SocketAddr = format!("{}:9999", lab.lb_ip()).parse().unwrap();
        in_netns(&lab.attacker(0).ns, || {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..100 {
                socket.send_to(b"attack", target).unwrap();
            }
        });
        let start = Instant::now();
        while blocklisted(&lab) - before < 100 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "attack packets not dropped after the abort"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for _ in 0..5 {
            assert!(tls_request(&lab, &ca) && tcp_request(&lab));
        }
    }
    // After each failure the old process put its program back into the link.
    assert_eq!(
        lab.proxy().count_log("took over the pinned XDP attachment"),
        2,
        "{}",
        lab.proxy().log()
    );
    let attached = lab.lb().ns.sh("ip link show dev eth0");
    assert!(attached.contains("xdp"), "{attached}");
}
