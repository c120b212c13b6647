//! Differential target for the XDP program: frames (structured and mutated) through
//! BPF_PROG_TEST_RUN, the verdict and every counter's delta compared with the host
//! reference model (`proxy_fuzz::xdp_model`). Needs root (CAP_BPF).
#![no_main]

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use aya::programs::{TestRun, TestRunOptions};
use libfuzzer_sys::fuzz_target;
use proxy::config::cidr;
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use proxy::ebpf::maps::{List, Maps, Origin, RateLimits};
use proxy_common::Reason;
use proxy_fuzz::xdp_model::{self, Policy};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
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
}

fn loaded() -> &'static Mutex<Loaded> {
    static LOADED: OnceLock<Mutex<Loaded>> = OnceLock::new();
    LOADED.get_or_init(|| {
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
        Mutex::new(Loaded {
            program,
            maps,
            policy,
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
    let expected = xdp_model::verdict(&bytes, &loaded.policy);
    let before = loaded.maps.verdicts(TEST_RUN_IFINDEX).unwrap();
    let opts = TestRunOptions {
        data_in: Some(&bytes),
        ..TestRunOptions::new()
    };
    let action = loaded
        .program
        .program()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value;
    let after = loaded.maps.verdicts(TEST_RUN_IFINDEX).unwrap();
    let want_action = if expected.is_drop() {
        XDP_DROP
    } else {
        XDP_PASS
    };
    assert_eq!(
        action, want_action,
        "verdict for {expected:?}: {bytes:02x?}"
    );
    for reason in Reason::ALL {
        let (b, a) = (before.get(reason), after.get(reason));
        let want = if reason == expected {
            (1, bytes.len() as u64)
        } else {
            (0, 0)
        };
        assert_eq!(
            (a.packets - b.packets, a.bytes - b.bytes),
            want,
            "{reason:?} counter (model says {expected:?}): {bytes:02x?}"
        );
    }
});
