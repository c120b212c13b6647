//! Differential target for the XDP program: frames (structured and mutated) through
//! BPF_PROG_TEST_RUN, the verdict and every counter's delta compared with the host
//! reference model (`proxy_fuzz::xdp_model`), connection steering included: the
//! program runs as node 10.77.0.1 of a three-node table, in a network namespace of its
//! own (no socket on the VIPs), and a frame sent on must go to the member the model
//! says. Needs root (CAP_BPF).
#![no_main]

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use aya::programs::{TestRun, TestRunOptions};
use libfuzzer_sys::fuzz_target;
use proxy::config::cidr;
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use std::net::{IpAddr, Ipv4Addr};

use proxy::control::steering::store::{MemberState, TableMember, TableRecord};
use proxy::control::steering::table;
use proxy::ebpf::maps::steering::SlotContent;
use proxy::ebpf::maps::{List, Maps, Origin, RateLimits};
use proxy_common::Reason;
use proxy_fuzz::xdp_model::{self, Policy, Steering};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// BPF_PROG_TEST_RUN runs XDP programs on the loopback device's queue.
const TEST_RUN_IFINDEX: u32 = 1;

const ALLOW: [&str; 2] = ["192.0.2.7", "2001:db8:bad::7"];
const BLOCK: [&str; 4] = [
    "192.0.2.0/24",
    "198.51.100.66",
    "2001:db8:bad::/48",
    "10.0.0.0/8",
];
/// Sources the structured frames pick from: listed, covered, and unlisted.
const SOURCES: [&str; 8] = [
    "192.0.2.7",
    "192.0.2.9",
    "198.51.100.66",
    "198.51.100.67",
    "10.200.3.4",
    "2001:db8:bad::7",
    "2001:db8:bad:1::1",
    "2001:db8:900::1",
];

struct Loaded {
    program: XdpProgram,
    maps: Maps,
    policy: Policy,
    steering: Steering,
}

const ME: [u8; 4] = [10, 77, 0, 1];
/// Members, then a node that is none and this node itself (for GUE sources and next hops).
const NODES: [[u8; 4]; 4] = [[10, 77, 0, 2], [10, 77, 0, 3], [10, 77, 0, 9], ME];
const GUE_PORT: u16 = 19523;
const VIP4: [u8; 4] = [10, 99, 0, 1];
const VIP6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// A new network namespace for this (the fuzzing) thread: no socket on the VIPs.
fn own_netns() {
    // SAFETY: unshare affects only the calling thread.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(up.success());
}

/// Steering on as node 10.77.0.1 of a table of three; the members' probes arrive.
fn steering(program: &XdpProgram, maps: &mut Maps) -> Steering {
    let member = |node: &str, a: [u8; 4], joined| TableMember {
        node: node.into(),
        address: IpAddr::from(a),
        port: GUE_PORT,
        state: MemberState::Active,
        joined,
        drained: None,
    };
    let table = table::compute(&TableRecord {
        generation: 3,
        members: vec![
            member("node0", ME, 1),
            member("node1", NODES[0], 2),
            member("node2", NODES[1], 3),
        ],
        change: String::new(),
    });
    let vips = vec![
        (IpAddr::from(VIP4), vec![443]),
        (IpAddr::from(VIP6), vec![443]),
    ];
    let rows: Vec<(u16, u16)> = table
        .rows
        .iter()
        .map(|r| (r.primary, r.secondary))
        .collect();
    let members: Vec<Ipv4Addr> = table
        .members
        .iter()
        .map(|m| match m.address {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!(),
        })
        .collect();
    let s = maps.steering().expect("steering maps");
    s.configure(Some((IpAddr::from(ME), GUE_PORT, &vips)))
        .unwrap();
    let peers: Vec<(IpAddr, u16)> = NODES[..2]
        .iter()
        .map(|a| (IpAddr::from(*a), GUE_PORT))
        .collect();
    s.set_peers(&peers).unwrap();
    s.install(&SlotContent {
        generation: 3,
        members: &table.addresses(),
        me: table.index_of("node0"),
        rows: &rows,
    })
    .unwrap();
    s.activate(3).unwrap();
    for from in &NODES[..2] {
        let probe = gue_frame(*from, [0x20, 0, 0, 0], &[]);
        let opts = TestRunOptions {
            data_in: Some(&probe),
            ..TestRunOptions::new()
        };
        program.program().test_run(opts).expect("a probe");
    }
    Steering {
        me: Ipv4Addr::from(ME),
        port: GUE_PORT,
        members,
        me_index: table.index_of("node0").unwrap(),
        rows,
        vips,
    }
}

/// Ethernet + IPv4 from `from` to this node's GUE port + UDP + `header` + `body`.
fn gue_frame(from: [u8; 4], header: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut udp = 0xc001u16.to_be_bytes().to_vec();
    udp.extend_from_slice(&GUE_PORT.to_be_bytes());
    udp.extend_from_slice(&((8 + 4 + body.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&header);
    udp.extend_from_slice(body);
    ipv4_frame(from, ME, 17, &udp)
}

fn ipv4_frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0,
    ];
    f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    f
}

fn ipv6_frame(src: [u8; 16], dst: [u8; 16], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60, 0, 0, 0,
    ];
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[proto, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    f
}

fn tcp(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = src_port.to_be_bytes().to_vec();
    t.extend_from_slice(&dst_port.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

/// A client's IP packet (without Ethernet) to a steered VIP, or the VIP's to it.
fn client_packet(
    v6: bool,
    source: u8,
    port: u16,
    vip_port: u16,
    flags: u8,
    to_client: bool,
) -> Vec<u8> {
    let src: IpAddr = SOURCES[usize::from(source) % SOURCES.len()]
        .parse()
        .unwrap();
    let segment = |a, b| tcp(a, b, flags, &[0xab; 8]);
    let frame = match (v6, src) {
        (false, IpAddr::V4(c)) if !to_client => {
            ipv4_frame(c.octets(), VIP4, 6, &segment(port, vip_port))
        }
        (false, IpAddr::V4(c)) => ipv4_frame(VIP4, c.octets(), 6, &segment(vip_port, port)),
        (true, IpAddr::V6(c)) if !to_client => {
            ipv6_frame(c.octets(), VIP6, 6, &segment(port, vip_port))
        }
        (true, IpAddr::V6(c)) => ipv6_frame(VIP6, c.octets(), 6, &segment(vip_port, port)),
        (false, IpAddr::V6(c)) => ipv4_frame(
            c.octets()[12..].try_into().unwrap(),
            VIP4,
            6,
            &segment(port, vip_port),
        ),
        (true, IpAddr::V4(c)) => ipv6_frame(
            c.to_ipv6_mapped().octets(),
            VIP6,
            6,
            &segment(port, vip_port),
        ),
    };
    frame[14..].to_vec()
}

fn loaded() -> &'static Mutex<Loaded> {
    static LOADED: OnceLock<Mutex<Loaded>> = OnceLock::new();
    LOADED.get_or_init(|| {
        own_netns();
        let (program, mut maps) =
            XdpProgram::load(LoadOptions::private()).expect("load the XDP program (root?)");
        let parse = |s: &str| cidr::parse(s).unwrap();
        for net in ALLOW {
            maps.insert(List::Allow, parse(net), None, Origin::Manual, "fuzz")
                .unwrap();
        }
        for net in BLOCK {
            maps.insert(List::Block, parse(net), None, Origin::Manual, "fuzz")
                .unwrap();
        }
        // No rate limits (not modelled), no sampling.
        maps.write_config(&RateLimits::default(), 0, false).unwrap();
        let policy = Policy {
            allow: ALLOW.iter().map(|s| parse(s)).collect(),
            block: BLOCK.iter().map(|s| parse(s)).collect(),
        };
        let steering = steering(&program, &mut maps);
        Mutex::new(Loaded {
            program,
            maps,
            policy,
            steering,
        })
    })
}

/// A frame: either raw bytes, or an Ethernet header with VLAN tags and an IP header
/// whose source is one of SOURCES, with the fuzzer's bytes everywhere else.
#[derive(Arbitrary, Debug)]
enum Frame {
    Raw(Vec<u8>),
    Ip {
        vlans: u8,
        ipv6: bool,
        source: u8,
        /// Bytes from the EtherType on, before the source address is written.
        rest: Vec<u8>,
    },
    /// TCP to a steered VIP (port 443, or 80: not steered) from one of SOURCES, or an
    /// ICMP error about such a flow; then up to two bytes overwritten.
    Steered {
        v6: bool,
        source: u8,
        port: u16,
        flags: u8,
        other_port: bool,
        icmp: bool,
        vlans: u8,
        flips: Vec<(u16, u8)>,
    },
    /// GUE from a member (or a stranger, or this node) to this node's port carrying a
    /// client's packet; then up to two bytes overwritten.
    Gue {
        from: u8,
        control: bool,
        hops: u8,
        next: u8,
        v6: bool,
        source: u8,
        port: u16,
        flags: u8,
        flips: Vec<(u16, u8)>,
    },
}

/// Overwrites up to two bytes (positions wrap around the frame).
fn flip(mut f: Vec<u8>, flips: &[(u16, u8)]) -> Vec<u8> {
    for (at, value) in flips.iter().take(2) {
        let len = f.len();
        f[usize::from(*at) % len] = *value;
    }
    f
}

impl Frame {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Frame::Raw(b) => b.clone(),
            Frame::Ip {
                vlans,
                ipv6,
                source,
                rest,
            } => {
                let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
                for i in 0..(vlans % 4) {
                    let tag: u16 = if i == 0 { 0x88a8 } else { 0x8100 };
                    f.extend_from_slice(&tag.to_be_bytes());
                    f.extend_from_slice(&[0, 10 + i]);
                }
                let (ether_type, version, src_at, len): (u16, u8, usize, usize) = if *ipv6 {
                    (0x86dd, 0x60, 8, 40)
                } else {
                    (0x0800, 0x45, 12, 20)
                };
                f.extend_from_slice(&ether_type.to_be_bytes());
                let ip_start = f.len();
                f.extend_from_slice(rest);
                if f.len() < ip_start + len {
                    f.resize(ip_start + len, 0);
                }
                // Usually a plausible version byte; sometimes the fuzzer's.
                if rest.first().is_none_or(|b| b & 1 == 0) {
                    f[ip_start] = version;
                }
                let src: std::net::IpAddr = SOURCES[usize::from(*source) % SOURCES.len()]
                    .parse()
                    .unwrap();
                let bytes: Vec<u8> = match src {
                    std::net::IpAddr::V4(a) if !ipv6 => a.octets().to_vec(),
                    std::net::IpAddr::V6(a) if *ipv6 => a.octets().to_vec(),
                    std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets().to_vec(),
                    std::net::IpAddr::V6(a) => a.octets()[12..].to_vec(),
                };
                f[ip_start + src_at..ip_start + src_at + bytes.len()].copy_from_slice(&bytes);
                f
            }
            Frame::Steered {
                v6,
                source,
                port,
                flags,
                other_port,
                icmp,
                vlans,
                flips,
            } => {
                let vip_port = if *other_port { 80 } else { 443 };
                let packet = if *icmp {
                    let quoted = client_packet(*v6, *source, *port, vip_port, *flags, true);
                    let mut m = if *v6 {
                        vec![2, 0, 0, 0, 0, 0, 5, 0x78]
                    } else {
                        vec![3, 4, 0, 0, 0, 0, 5, 0x78]
                    };
                    m.extend_from_slice(&quoted[..quoted.len().min(48)]);
                    if *v6 {
                        ipv6_frame(
                            [0xfd, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54],
                            VIP6,
                            58,
                            &m,
                        )
                    } else {
                        ipv4_frame([10, 78, 0, 254], VIP4, 1, &m)
                    }
                } else {
                    let p = client_packet(*v6, *source, *port, vip_port, *flags, false);
                    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
                    f.extend_from_slice(if *v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
                    f.extend_from_slice(&p);
                    f
                };
                let mut tagged = packet[..12].to_vec();
                for i in 0..(vlans % 3) {
                    tagged.extend_from_slice(&[0x81, 0x00, 0, 10 + i]);
                }
                tagged.extend_from_slice(&packet[12..]);
                flip(tagged, flips)
            }
            Frame::Gue {
                from,
                control,
                hops,
                next,
                v6,
                source,
                port,
                flags,
                flips,
            } => {
                let from = NODES[usize::from(*from) % NODES.len()];
                let header = if *control {
                    [0x20, 0, 0, 0]
                } else {
                    [2, if *v6 { 41 } else { 4 }, 0, 0]
                };
                let mut body = vec![0x50, 0x53, hops % 4];
                match next % 5 {
                    4 => body.extend_from_slice(&[0, 0, 0, 0, 0]),
                    n => {
                        body.push(4);
                        body.extend_from_slice(&NODES[usize::from(n)]);
                    }
                }
                body.extend_from_slice(&client_packet(*v6, *source, *port, 443, *flags, false));
                flip(gue_frame(from, header, &body), flips)
            }
        }
    }
}

fuzz_target!(|frame: Frame| {
    let bytes = frame.bytes();
    // BPF_PROG_TEST_RUN wants at least an Ethernet header and at most about a page.
    if bytes.len() < 14 || bytes.len() > 3000 {
        return;
    }
    let loaded = loaded().lock().unwrap();
    let expected = xdp_model::verdict_steered(&bytes, &loaded.policy, &loaded.steering);
    let before = loaded.maps.verdicts(TEST_RUN_IFINDEX).unwrap();
    let mut out = vec![0u8; bytes.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(&bytes),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    };
    let result = loaded
        .program
        .program()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN");
    let after = loaded.maps.verdicts(TEST_RUN_IFINDEX).unwrap();
    let reason = expected.reason;
    let want_action = if reason.is_drop() {
        XDP_DROP
    } else if reason.is_steer() {
        XDP_TX
    } else {
        XDP_PASS
    };
    assert_eq!(
        result.return_value, want_action,
        "verdict for {expected:?}: {bytes:02x?}"
    );
    // Counted with the frame as it leaves (encapsulated or decapsulated).
    let sent = result.data_size_out as usize;
    for r in Reason::ALL {
        let (b, a) = (before.get(r), after.get(r));
        let want = if r == reason {
            (1, sent as u64)
        } else {
            (0, 0)
        };
        assert_eq!(
            (a.packets - b.packets, a.bytes - b.bytes),
            want,
            "{r:?} counter (model says {expected:?}): {bytes:02x?}"
        );
    }
    if let Some(to) = expected.to {
        // Sent in GUE over IPv4: the outer destination is the member.
        assert_eq!(
            &out[30..34],
            &to.octets(),
            "sent to the wrong member: {bytes:02x?}"
        );
    }
});
