//! BPF_PROG_TEST_RUN fixtures for the XDP program, katran style: a table of
//! `{description, packet, expected verdict, expected counter delta}` run in order
//! against one loaded program with known policy. Needs root (CAP_BPF).

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};
use lab::packets::{self, ACK, PSH_ACK, SYN, v4, v6};
use proxy::config::cidr;
use proxy::ebpf::events::{self, DropSample};
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use proxy::ebpf::maps::{List, Maps, Origin, RateLimits};
use proxy_common::Reason;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// BPF_PROG_TEST_RUN runs XDP programs on the loopback device's queue.
const TEST_RUN_IFINDEX: u32 = 1;

struct Fixture {
    description: String,
    packet: Vec<u8>,
    /// Which counter must move (by one packet and the frame's bytes); the verdict follows
    /// from it (drop reasons drop, the others pass).
    reason: Reason,
}

fn fx(description: impl Into<String>, packet: Vec<u8>, reason: Reason) -> Fixture {
    Fixture {
        description: description.into(),
        packet,
        reason,
    }
}

fn run(program: &XdpProgram, packet: &[u8]) -> u32 {
    let opts = TestRunOptions {
        data_in: Some(packet),
        ..TestRunOptions::new()
    };
    program
        .program()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

fn block(maps: &mut Maps, net: &str, ttl: Option<Duration>) {
    maps.insert(
        List::Block,
        cidr::parse(net).unwrap(),
        ttl,
        Origin::Manual,
        "fixture",
    )
    .unwrap();
}

fn allow(maps: &mut Maps, net: &str) {
    maps.insert(
        List::Allow,
        cidr::parse(net).unwrap(),
        None,
        Origin::Manual,
        "fixture",
    )
    .unwrap();
}

fn load_with_policy(sample_every: u32) -> (XdpProgram, Maps) {
    lab::require_root();
    let (program, mut maps) = XdpProgram::load(LoadOptions::private()).expect("load XDP program");
    block(&mut maps, "192.0.2.66", None);
    block(&mut maps, "198.51.100.0/24", None);
    block(&mut maps, "2001:db8::66", None);
    block(&mut maps, "2001:db8:bad::/48", None);
    allow(&mut maps, "198.51.100.7");
    allow(&mut maps, "2001:db8:bad::7");
    // Expired on its own, and expired inside a live covering prefix.
    block(&mut maps, "203.0.113.5", Some(Duration::from_millis(1)));
    block(&mut maps, "100.100.0.0/16", None);
    block(&mut maps, "100.100.1.1", Some(Duration::from_millis(1)));
    std::thread::sleep(Duration::from_millis(20));
    // Slow rates so no token refills while the table runs.
    let limits = RateLimits {
        packets_per_second: 10,
        packets_burst: 5,
        syn_per_second: 1,
        syn_burst: 2,
        ipv6_prefix: 64,
        ports: vec![],
    };
    maps.write_config(&limits, sample_every, false).unwrap();
    (program, maps)
}

#[test]
fn fixture_table() {
    let (program, maps) = load_with_policy(0);
    let mut table = vec![
        fx(
            "IPv4 TCP from an unlisted source",
            v4("10.1.1.1").build(),
            Reason::Passed,
        ),
        fx(
            "IPv6 TCP from an unlisted source",
            v6("2001:db8:1::1").build(),
            Reason::Passed,
        ),
        fx("IPv4 UDP", v4("10.1.1.2").udp(53).build(), Reason::Passed),
        fx(
            "IPv4 ICMP echo",
            v4("10.1.1.3").icmp().build(),
            Reason::Passed,
        ),
        fx(
            "IPv6 ICMPv6 echo",
            v6("2001:db8:1::3").icmp().build(),
            Reason::Passed,
        ),
        fx(
            "IPv4 blocklisted exact /32",
            v4("192.0.2.66").build(),
            Reason::Blocklisted,
        ),
        fx(
            "IPv4 blocklisted by /24 prefix",
            v4("198.51.100.9").build(),
            Reason::Blocklisted,
        ),
        fx(
            "IPv6 blocklisted exact /128",
            v6("2001:db8::66").build(),
            Reason::Blocklisted,
        ),
        fx(
            "IPv6 blocklisted by /48 prefix",
            v6("2001:db8:bad::1234").build(),
            Reason::Blocklisted,
        ),
        fx(
            "IPv4 allowlisted inside a blocklisted prefix",
            v4("198.51.100.7").build(),
            Reason::Allowlisted,
        ),
        fx(
            "IPv6 allowlisted inside a blocklisted prefix",
            v6("2001:db8:bad::7").build(),
            Reason::Allowlisted,
        ),
        fx(
            "expired block entry passes",
            v4("203.0.113.5").build(),
            Reason::Passed,
        ),
        fx(
            "expired /32 inside a live /16 still drops",
            v4("100.100.1.1").build(),
            Reason::Blocklisted,
        ),
    ];
    for i in 1..=5 {
        table.push(fx(
            format!("packet {i}/5 of the burst passes"),
            v4("100.64.0.1").tcp(443, ACK).build(),
            Reason::Passed,
        ));
    }
    table.extend([
        fx(
            "packet after the burst is over rate",
            v4("100.64.0.1").tcp(443, ACK).build(),
            Reason::RatePps,
        ),
        fx(
            "another source is unaffected",
            v4("100.64.0.9").tcp(443, ACK).build(),
            Reason::Passed,
        ),
        fx(
            "SYN 1/2 within the SYN burst",
            v4("100.64.0.2").tcp(443, SYN).build(),
            Reason::Passed,
        ),
        fx(
            "SYN 2/2 within the SYN burst",
            v4("100.64.0.2").tcp(443, SYN).build(),
            Reason::Passed,
        ),
        fx(
            "SYN over the SYN rate",
            v4("100.64.0.2").tcp(443, SYN).build(),
            Reason::RateSyn,
        ),
        fx(
            "non-SYN from the SYN-limited source passes",
            v4("100.64.0.2").tcp(443, ACK).build(),
            Reason::Passed,
        ),
    ]);
    for i in 1..=5 {
        table.push(fx(
            format!("IPv6 /64 burst {i}/5 (::1)"),
            v6("2001:db8:7:7::1").build(),
            Reason::Passed,
        ));
    }
    table.extend([
        fx(
            "another address in the same /64 shares the limit",
            v6("2001:db8:7:7::2").build(),
            Reason::RatePps,
        ),
        fx(
            "single VLAN tag (802.1Q)",
            v4("10.1.1.4").vlan(100).build(),
            Reason::Passed,
        ),
        fx(
            "double VLAN tag (802.1ad + 802.1Q), blocklisted source",
            v4("192.0.2.66").vlan(10).vlan(20).build(),
            Reason::Blocklisted,
        ),
        fx(
            "IPv4 with options (IHL 8)",
            v4("10.1.1.5").ipv4_options(3).build(),
            Reason::Passed,
        ),
        fx(
            "IPv4 with options from a blocklisted source",
            v4("198.51.100.1").ipv4_options(10).build(),
            Reason::Blocklisted,
        ),
        fx(
            "IPv6 with a hop-by-hop header",
            v6("2001:db8:1::5").hop_by_hop().build(),
            Reason::Passed,
        ),
        fx(
            "IPv6 first fragment",
            v6("2001:db8:1::6").fragment(0, true).build(),
            Reason::Passed,
        ),
        fx(
            "IPv6 later fragment from a blocklisted source",
            v6("2001:db8::66").fragment(100, false).build(),
            Reason::Blocklisted,
        ),
        fx(
            "IPv4 later fragment",
            v4("10.1.1.6").fragment(100, false).build(),
            Reason::Passed,
        ),
        fx("ARP passes as non-IP", packets::arp(), Reason::NonIp),
        fx("LLDP passes as non-IP", packets::lldp(), Reason::NonIp),
    ]);
    // Malformed: every header cut short, plus invalid fields.
    let tcp = v4("10.1.1.7").build();
    let vlan = v4("10.1.1.8").vlan(7).build();
    let ip6 = v6("2001:db8:1::8").build();
    let mut bad_ihl = v4("10.1.1.9").build();
    bad_ihl[14] = 0x44; // IHL 4 < 5
    let mut triple_vlan = v4("10.1.1.10").vlan(1).vlan(2).build();
    triple_vlan.splice(12..12, [0x81, 0x00, 0x00, 0x03]);
    let mut bad_version = v4("10.1.1.11").build();
    bad_version[14] = 0x65;
    table.extend([
        fx(
            "truncated Ethernet: VLAN tag cut off",
            vlan[..16].to_vec(),
            Reason::Malformed,
        ),
        fx(
            "truncated IPv4 header",
            tcp[..14 + 12].to_vec(),
            Reason::Malformed,
        ),
        fx(
            "truncated IPv6 header",
            ip6[..14 + 30].to_vec(),
            Reason::Malformed,
        ),
        fx(
            "truncated TCP header",
            tcp[..14 + 20 + 10].to_vec(),
            Reason::Malformed,
        ),
        fx("IPv4 IHL below 5", bad_ihl, Reason::Malformed),
        fx(
            "IPv4 header claiming version 6",
            bad_version,
            Reason::Malformed,
        ),
        fx("three VLAN tags", triple_vlan, Reason::Malformed),
    ]);
    assert!(table.len() >= 20);

    for f in &table {
        let before = maps.verdicts(TEST_RUN_IFINDEX).unwrap();
        let verdict = run(&program, &f.packet);
        let after = maps.verdicts(TEST_RUN_IFINDEX).unwrap();
        let expected = if f.reason.is_drop() {
            XDP_DROP
        } else {
            XDP_PASS
        };
        assert_eq!(verdict, expected, "{}: verdict", f.description);
        for reason in Reason::ALL {
            let (b, a) = (before.get(reason), after.get(reason));
            let (packets, bytes) = if reason == f.reason {
                (1, f.packet.len() as u64)
            } else {
                (0, 0)
            };
            assert_eq!(
                a.packets - b.packets,
                packets,
                "{}: {} packets",
                f.description,
                reason.name()
            );
            assert_eq!(
                a.bytes - b.bytes,
                bytes,
                "{}: {} bytes",
                f.description,
                reason.name()
            );
        }
    }
}

#[test]
fn expired_entries_are_deleted_by_the_kernel_and_hidden_from_listings() {
    let (program, maps) = load_with_policy(0);
    let listed = |maps: &Maps| -> Vec<String> {
        maps.entries(List::Block)
            .unwrap()
            .iter()
            .map(|e| e.cidr.to_string())
            .collect()
    };
    assert!(!listed(&maps).contains(&"203.0.113.5/32".to_string()));
    assert_eq!(run(&program, &v4("203.0.113.5").build()), XDP_PASS);
    assert!(listed(&maps).contains(&"100.100.0.0/16".to_string()));
}

#[test]
fn rate_limits_scoped_to_ports_leave_other_ports_alone() {
    let (program, mut maps) = load_with_policy(0);
    let limits = RateLimits {
        packets_per_second: 1,
        packets_burst: 1,
        ipv6_prefix: 64,
        ports: vec![443],
        ..Default::default()
    };
    maps.write_config(&limits, 0, false).unwrap();
    let to_443 = v4("100.65.0.1").tcp(443, PSH_ACK).build();
    let to_22 = v4("100.65.0.1").tcp(22, PSH_ACK).build();
    assert_eq!(run(&program, &to_443), XDP_PASS);
    assert_eq!(
        run(&program, &to_443),
        XDP_DROP,
        "second packet to a protected port is over rate"
    );
    for _ in 0..10 {
        assert_eq!(
            run(&program, &to_22),
            XDP_PASS,
            "unprotected port is not rate limited"
        );
    }
    // A later fragment carries no port: it counts as protected.
    assert_eq!(
        run(&program, &v4("100.65.0.1").fragment(50, false).build()),
        XDP_DROP
    );
}

#[test]
fn drops_are_sampled_into_the_ring_buffer() {
    let (mut program, _maps) = load_with_policy(1);
    let mut ring = program.take_drop_events().unwrap();
    for _ in 0..3 {
        assert_eq!(run(&program, &v4("192.0.2.66").build()), XDP_DROP);
    }
    assert_eq!(run(&program, &v6("2001:db8:bad::1").build()), XDP_DROP);
    assert_eq!(run(&program, &v4("10.2.2.2").build()), XDP_PASS);
    let mut samples: Vec<DropSample> = Vec::new();
    events::drain(&mut ring, |s| samples.push(s));
    assert_eq!(samples.len(), 4, "{samples:?}");
    assert_eq!(samples[0].source, Some("192.0.2.66".parse().unwrap()));
    assert_eq!(samples[0].reason, Reason::Blocklisted);
    assert_eq!(samples[0].ifindex, TEST_RUN_IFINDEX);
    assert_eq!(samples[3].source, Some("2001:db8:bad::1".parse().unwrap()));
}

#[test]
fn verdict_cache_follows_list_changes_and_expiry() {
    let (program, mut maps) = load_with_policy(0);
    let packet = v4("10.3.3.3").build();
    let packet6 = v6("2001:db8:3::3").build();
    // Passed verdicts are now cached on this CPU...
    assert_eq!(run(&program, &packet), XDP_PASS);
    assert_eq!(run(&program, &packet6), XDP_PASS);
    // ...and a block added afterwards still applies at once (exact and by prefix).
    block(&mut maps, "10.3.3.3", None);
    block(&mut maps, "2001:db8:3::/48", None);
    assert_eq!(run(&program, &packet), XDP_DROP);
    assert_eq!(run(&program, &packet6), XDP_DROP);
    // Removing it un-blocks at once too.
    assert!(
        maps.remove(List::Block, cidr::parse("10.3.3.3").unwrap())
            .unwrap()
    );
    assert_eq!(run(&program, &packet), XDP_PASS);
    // An allow entry added later wins over the cached block.
    allow(&mut maps, "2001:db8:3::3");
    assert_eq!(run(&program, &packet6), XDP_PASS);
    // A cached block with a deadline stops applying when it expires.
    block(&mut maps, "10.3.3.0/24", Some(Duration::from_millis(100)));
    assert_eq!(run(&program, &packet), XDP_DROP);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(run(&program, &packet), XDP_PASS);
}

#[test]
fn a_full_list_is_a_clear_error_and_loses_nothing() {
    lab::require_root();
    let options = LoadOptions {
        max_block_entries: 2,
        ..LoadOptions::private()
    };
    let (_program, mut maps) = XdpProgram::load(options).expect("load XDP program");
    block(&mut maps, "192.0.2.1", None);
    block(&mut maps, "192.0.2.2", None);
    let err = maps
        .insert(
            List::Block,
            cidr::parse("192.0.2.3").unwrap(),
            None,
            Origin::Manual,
            "one too many",
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("blocklist (BLOCK_V4) is full (2 entries)"),
        "{err}"
    );
    assert!(err.contains("max_block_entries"), "{err}");
    let listed: Vec<String> = maps
        .entries(List::Block)
        .unwrap()
        .iter()
        .map(|e| e.cidr.to_string())
        .collect();
    assert_eq!(listed, ["192.0.2.1/32", "192.0.2.2/32"]);
    // Replacing an existing entry still works when full.
    maps.insert(
        List::Block,
        cidr::parse("192.0.2.2").unwrap(),
        Some(Duration::from_secs(60)),
        Origin::Manual,
        "x",
    )
    .unwrap();
}

#[test]
fn both_summary_levels_follow_list_changes() {
    lab::require_root();
    let (program, mut maps) = XdpProgram::load(LoadOptions::private()).expect("load XDP program");
    let a = v4("10.9.1.1").build();
    let b = v4("10.9.2.1").build();
    let neighbour = v4("10.9.3.1").build();
    // Two /24s of one /16: both dropped, the /24 between them not.
    block(&mut maps, "10.9.1.0/24", None);
    block(&mut maps, "10.9.2.1", None);
    assert_eq!(run(&program, &a), XDP_DROP);
    assert_eq!(run(&program, &b), XDP_DROP);
    assert_eq!(run(&program, &neighbour), XDP_PASS);
    // Removing one keeps the /16 bit for the other.
    assert!(
        maps.remove(List::Block, cidr::parse("10.9.1.0/24").unwrap())
            .unwrap()
    );
    assert_eq!(run(&program, &a), XDP_PASS);
    assert_eq!(run(&program, &b), XDP_DROP);
    // A prefix wider than a /16 sets several /16 bits at once.
    block(&mut maps, "10.8.0.0/15", None);
    assert_eq!(run(&program, &v4("10.8.200.1").build()), XDP_DROP);
    assert_eq!(run(&program, &v4("10.9.77.1").build()), XDP_DROP);
    assert!(
        maps.remove(List::Block, cidr::parse("10.8.0.0/15").unwrap())
            .unwrap()
    );
    assert_eq!(run(&program, &v4("10.8.200.1").build()), XDP_PASS);
    assert_eq!(run(&program, &b), XDP_DROP);
}

#[test]
fn pins_edited_without_the_slash16_summary_get_it_from_their_lists() {
    lab::require_root();
    let pins = lab::PinDir::new("summary16");
    let options = || LoadOptions {
        pin_dir: Some(pins.0.clone()),
        ..LoadOptions::private()
    };
    let summary_16 = pins.0.join(proxy_common::map_names::V4_SUMMARY_16);
    let packet = v4("10.7.7.7").build();
    {
        let (program, mut maps) = XdpProgram::load(options()).expect("load XDP program");
        block(&mut maps, "10.7.7.0/24", None);
        assert_eq!(run(&program, &packet), XDP_DROP);
    }
    // As after a rollback to a version without the level that added the entry: the
    // tries and the /24 level have it, the pinned /16 level is stale (all clear).
    {
        let data = aya::maps::MapData::from_pin(&summary_16).unwrap();
        let mut level: aya::maps::Array<_, u64> =
            aya::maps::Array::try_from(aya::maps::Map::Array(data)).unwrap();
        for word in 0..proxy_common::V4_SUMMARY_16_WORDS {
            level.set(word, 0, 0).unwrap();
        }
    }
    {
        let (program, _maps) = XdpProgram::load(options()).expect("load XDP program");
        assert_eq!(run(&program, &packet), XDP_DROP);
    }
    // As a pin directory an older version left: the tries and the /24 level, no /16 level.
    std::fs::remove_file(&summary_16).unwrap();
    let (program, maps) = XdpProgram::load(options()).expect("load XDP program");
    assert_eq!(maps.entries(List::Block).unwrap().len(), 1);
    assert_eq!(run(&program, &packet), XDP_DROP);
    assert_eq!(run(&program, &v4("10.7.8.7").build()), XDP_PASS);
}
