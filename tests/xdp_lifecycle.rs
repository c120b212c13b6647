//! The XDP attachment's life: staying attached after the daemon exits (pinned link)
//! and being taken over by the next start, generic (skb) mode with the program's
//! aya-log lines in the daemon log, and a missing interface named in the error.
//! Needs root.

use std::time::Duration;

use lab::Topology;
use lab::config::*;
use lab::proxyd::ProxyD;

use lab::PinDir as Pins;

fn ping_ok(topo: &Topology) -> bool {
    let lb = &topo.host(0).ipv4;
    topo.host(1)
        .ns
        .try_sh(&format!("ping -c 2 -i 0.2 -W 1 {lb}"))
        .status
        .success()
}

fn xdp_on_lb(topo: &Topology) -> String {
    topo.host(0).ns.sh("ip link show dev eth0")
}

fn cli(topo: &Topology, pins: &Pins, args: &str) -> String {
    lab::proxyd::cli(
        &topo.host(0).ns,
        &format!("{args} --pin-path {}", pins.display()),
    )
}

#[test]
fn stays_attached_after_exit_and_the_next_start_takes_over() {
    lab::require_root();
    let topo = Topology::new(&["lb", "client"]);
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new("stay");
    let client = topo.host(1).ipv4.clone();
    let config = Config::new()
        .with_xdp(XdpSection {
            stay_attached: true,
            ..XdpSection::on(&["eth0"], &pins.0).block(list_entry(&client))
        })
        .to_toml();
    let daemon = ProxyD::start(&topo.host(0).ns, dir.path(), &config);
    assert!(!ping_ok(&topo), "blocked while the daemon runs");
    drop(daemon);
    // The daemon is gone; the program and its policy are not.
    assert!(
        xdp_on_lb(&topo).contains("prog/xdp"),
        "still attached after exit"
    );
    assert!(!ping_ok(&topo), "still blocked after exit");
    cli(&topo, &pins, &format!("block del {client}"));
    assert!(ping_ok(&topo), "policy edits apply with no daemon running");
    cli(&topo, &pins, &format!("block add {client}"));
    assert!(!ping_ok(&topo));

    // The next daemon replaces the program in place.
    let before = xdp_on_lb(&topo);
    let daemon = ProxyD::start(&topo.host(0).ns, dir.path(), &config);
    daemon.wait_log("take-over", "took over the pinned XDP attachment");
    let after = xdp_on_lb(&topo);
    assert!(after.contains("prog/xdp"));
    assert_ne!(
        prog_id(&before),
        prog_id(&after),
        "the new program replaced the old one"
    );
    assert!(!ping_ok(&topo));
    drop(daemon);

    // `proxy xdp detach` removes it for good.
    let out = cli(&topo, &pins, "xdp detach");
    assert!(out.contains("detached from eth0"), "{out}");
    assert!(!xdp_on_lb(&topo).contains("prog/xdp"), "detached");
    assert!(ping_ok(&topo), "nothing filters any more");
}

fn prog_id(link: &str) -> String {
    link.split("prog/xdp id ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn generic_mode_and_program_logs_reach_the_daemon_log() {
    lab::require_root();
    let topo = Topology::new(&["lb", "client"]);
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new("skb");
    let config = Config::new()
        .with_xdp(XdpSection {
            mode: AttachMode::Skb,
            log_every_drop: true,
            ..XdpSection::on(&["eth0"], &pins.0).block(list_entry(&topo.host(1).ipv4))
        })
        .to_toml();
    let daemon = ProxyD::start(&topo.host(0).ns, dir.path(), &config);
    assert!(
        xdp_on_lb(&topo).contains("xdpgeneric"),
        "{}",
        xdp_on_lb(&topo)
    );
    assert!(!ping_ok(&topo));
    // reason 2 = blocklisted, logged by the XDP program through aya-log.
    daemon.wait_log("an aya-log line from the XDP program", "xdp drop: reason=2");
    drop(daemon);
    assert!(!xdp_on_lb(&topo).contains("xdp"), "detached on shutdown");
}

#[test]
fn a_missing_interface_is_named() {
    lab::require_root();
    let topo = Topology::new(&["lb"]);
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new("noif");
    let config = dir.path().join("proxy.toml");
    let text = Config::new()
        .with_admin(AdminSection {
            socket: dir.path().join("a.sock"),
            metrics: None,
        })
        .with_xdp(XdpSection::on(&["nope0"], &pins.0))
        .to_toml();
    std::fs::write(&config, text).unwrap();
    let run = topo.host(0).ns.spawn(&format!(
        "{} run --config {}",
        env!("CARGO_BIN_EXE_proxy"),
        config.display()
    ));
    let (_, log, code) = run.wait_output(Duration::from_secs(10));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("interface \"nope0\" does not exist"), "{log}");
    assert!(
        log.contains("ip link show"),
        "the error says how to list interfaces: {log}"
    );
}

#[test]
fn reload_reapplies_the_lists_and_keeps_runtime_entries() {
    lab::require_root();
    let topo = Topology::new(&["lb"]);
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new("reload");
    let config = |blocklist: &[&str], keep: bool, pps: u32| {
        let mut xdp = XdpSection {
            keep_runtime_entries: keep,
            ..XdpSection::on(&["eth0"], &pins.0).rate_limit(RateLimitConfig {
                packets_per_second: pps,
                ..RateLimitConfig::default()
            })
        };
        for cidr in blocklist {
            xdp = xdp.block(list_entry(cidr));
        }
        Config::new().with_xdp(xdp).to_toml()
    };
    let listed = || -> Vec<String> {
        let out = cli(&topo, &pins, "block list --json");
        let entries: Vec<proxy::api::ListEntry> = serde_json::from_str(&out).unwrap();
        let mut cidrs: Vec<String> = entries
            .iter()
            .map(|e| format!("{}:{}", e.cidr, e.origin.label()))
            .collect();
        cidrs.sort();
        cidrs
    };
    let daemon = ProxyD::start(
        &topo.host(0).ns,
        dir.path(),
        &config(&["192.0.2.1"], true, 100),
    );
    cli(&topo, &pins, "block add 198.51.100.0/24 --reason operator");
    assert_eq!(listed(), ["192.0.2.1/32:config", "198.51.100.0/24:manual"]);

    // The file's list replaces the file's entries; the operator's entry stays.
    daemon.write_config(&config(&["192.0.2.2", "2001:db8::/32"], true, 200));
    daemon.signal("HUP");
    daemon.wait_log("the reload", "reload succeeded");
    assert_eq!(
        listed(),
        [
            "192.0.2.2/32:config",
            "198.51.100.0/24:manual",
            "2001:db8::/32:config"
        ]
    );
    // Without a reachable daemon, `stats` falls back to the pinned maps (and says so
    // in the typed kernel-only answer).
    let out = cli(&topo, &pins, "stats --json --socket /nonexistent");
    serde_json::from_str::<proxy::api::KernelOnlyStats>(&out)
        .unwrap_or_else(|e| panic!("pinned-map fallback: {e}: {out}"));

    // keep_runtime_entries = false: the lists become exactly the file's.
    daemon.write_config(&config(&["192.0.2.2"], false, 200));
    daemon.signal("HUP");
    lab::wait_for("the second reload", Duration::from_secs(10), || {
        (daemon.count_log("reload succeeded") == 2).then_some(())
    });
    assert_eq!(listed(), ["192.0.2.2/32:config"]);

    // A bad file is rejected and changes nothing.
    daemon.write_config(
        &Config::new()
            .with_xdp(XdpSection::for_interfaces(Vec::new()))
            .to_toml(),
    ); // no interfaces
    daemon.signal("HUP");
    daemon.wait_log("the rejection", "reload rejected");
    assert_eq!(listed(), ["192.0.2.2/32:config"]);
}
