//! XDP program cost per packet class, via BPF_PROG_TEST_RUN, next to a bare XDP_DROP
//! measured in the same run. Run with `cargo xtask bench xdp` (root).
//!
//! Each class is measured `rounds` times with `repeat` runs each (the kernel reports
//! the mean ns per run); classes rotate order every round; we print medians, min-max
//! and the ratio to the bare drop.

use std::time::Duration;

use aya::maps::ProgramArray;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use lab::packets;
use proxy::config::cidr;
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use proxy::ebpf::maps::{List, Maps, Origin, RateLimits};

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-bench.o"));

/// Rate limits high enough that the measured source never goes over.
const HIGH: RateLimits = RateLimits {
    packets_per_second: 4_000_000_000,
    packets_burst: 4_000_000_000,
    syn_per_second: 4_000_000_000,
    syn_burst: 4_000_000_000,
    ipv6_prefix: 64,
    ports: Vec::new(),
};

#[derive(Clone, Copy, PartialEq)]
enum Runner {
    Bare,
    Product,
    /// spoof_source tail-calling the product / the bare drop / an LRU-hash design.
    SpoofProduct,
    SpoofBare,
    SpoofLru,
}

struct Class {
    name: &'static str,
    runner: Runner,
    packet: Vec<u8>,
    limits: Option<RateLimits>,
    /// Target ratio to the bare drop, from the issue.
    target: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let (repeat, rounds) = lab::stats::repeat_and_rounds(1_000_000, 15)?;
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "BPF_PROG_TEST_RUN needs root"
    );

    let (product, mut maps) = XdpProgram::load(LoadOptions::private())?;
    let blocklist_size = if std::env::var("EMPTY").is_ok() {
        0
    } else {
        fill_lists(&mut maps)?
    };
    let mut bench = aya::Ebpf::load(BENCH_OBJECT)?;
    for name in ["bare_drop", "spoof_source", "lru_per_source"] {
        let p: &mut Xdp = bench.program_mut(name).expect(name).try_into()?;
        p.load()?;
    }
    let mut target = ProgramArray::try_from(bench.take_map("TARGET").expect("TARGET map"))?;

    let tcp = |src: &str| packets::v4(src).tcp(443, packets::PSH_ACK).build();
    let classes = vec![
        Class {
            name: "bare XDP_DROP (baseline)",
            runner: Runner::Bare,
            packet: tcp("10.1.1.1"),
            limits: None,
            target: None,
        },
        Class {
            name: "passed, no rate limits",
            runner: Runner::Product,
            packet: tcp("10.1.1.1"),
            limits: Some(RateLimits::default()),
            target: None,
        },
        Class {
            name: "blocklisted (/24 of 10k entries)",
            runner: Runner::Product,
            packet: tcp("198.51.100.9"),
            limits: Some(HIGH),
            target: Some(2.5),
        },
        Class {
            name: "blocklisted (exact /32)",
            runner: Runner::Product,
            packet: tcp("203.0.113.77"),
            limits: Some(HIGH),
            target: Some(2.5),
        },
        Class {
            name: "passed with pps + SYN limits (TCP ACK)",
            runner: Runner::Product,
            packet: tcp("10.1.1.1"),
            limits: Some(HIGH),
            target: Some(3.0),
        },
        Class {
            name: "passed with pps + SYN limits (TCP SYN)",
            runner: Runner::Product,
            packet: packets::v4("10.1.1.2").tcp(443, packets::SYN).build(),
            limits: Some(HIGH),
            target: Some(3.0),
        },
        Class {
            name: "dropped over rate (rate_pps)",
            runner: Runner::Product,
            packet: tcp("10.1.1.3"),
            limits: Some(RateLimits {
                packets_per_second: 1,
                packets_burst: 1,
                ..HIGH
            }),
            target: None,
        },
        Class {
            name: "malformed (truncated TCP)",
            runner: Runner::Product,
            packet: tcp("10.1.1.4")[..44].to_vec(),
            limits: Some(HIGH),
            target: None,
        },
        Class {
            name: "spoof driver + bare drop (driver cost)",
            runner: Runner::SpoofBare,
            packet: tcp("10.1.1.5"),
            limits: Some(HIGH),
            target: None,
        },
        Class {
            name: "spoofed-source flood, LRU hash per source (not used; for comparison)",
            runner: Runner::SpoofLru,
            packet: tcp("10.1.1.6"),
            limits: None,
            target: None,
        },
        Class {
            name: "spoofed-source flood, limits on",
            runner: Runner::SpoofProduct,
            packet: tcp("10.1.1.5"),
            limits: Some(HIGH),
            target: Some(5.0),
        },
    ];

    let bare_fd = {
        let p: &Xdp = bench.program("bare_drop").unwrap().try_into()?;
        p.fd()?.try_clone()?
    };
    let product_fd = product.program().fd()?.try_clone()?;
    let lru_fd = {
        let p: &Xdp = bench.program("lru_per_source").unwrap().try_into()?;
        p.fd()?.try_clone()?
    };
    eprintln!(
        "measuring {} classes × {rounds} rounds × {repeat} runs (blocklist: {blocklist_size} entries)",
        classes.len()
    );
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
    for round in 0..rounds {
        for k in 0..classes.len() {
            let i = (k + round) % classes.len();
            let class = &classes[i];
            if let Some(limits) = &class.limits {
                maps.write_config(limits, 0, false)?;
            }
            let prog: &Xdp = match class.runner {
                Runner::Bare => bench.program("bare_drop").unwrap().try_into()?,
                Runner::Product => product.program(),
                Runner::SpoofProduct => {
                    target.set(0, &product_fd, 0)?;
                    bench.program("spoof_source").unwrap().try_into()?
                }
                Runner::SpoofBare => {
                    target.set(0, &bare_fd, 0)?;
                    bench.program("spoof_source").unwrap().try_into()?
                }
                Runner::SpoofLru => {
                    target.set(0, &lru_fd, 0)?;
                    bench.program("spoof_source").unwrap().try_into()?
                }
            };
            let out = prog.test_run(TestRunOptions {
                data_in: Some(&class.packet),
                repeat,
                ..TestRunOptions::new()
            })?;
            samples[i].push(out.duration.as_nanos() as f64);
        }
        eprintln!("  round {}/{rounds} done", round + 1);
    }

    let driver_i = classes
        .iter()
        .position(|c| c.runner == Runner::SpoofBare)
        .unwrap();
    let spoofed = |c: &Class| matches!(c.runner, Runner::SpoofProduct | Runner::SpoofLru);
    // A class's own cost in round r; the spoof driver's cost (measured against the
    // bare drop in the same round) is removed from the spoofed classes.
    let own = |i: usize, r: usize| {
        if spoofed(&classes[i]) {
            samples[i][r] - samples[driver_i][r] + samples[0][r]
        } else {
            samples[i][r]
        }
    };
    let rows: Vec<_> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let note = if spoofed(c) {
                " (driver cost removed)"
            } else {
                ""
            };
            let costs: Vec<f64> = (0..rounds).map(|r| own(i, r)).collect();
            // Paired: each round's ratio to the bare drop measured in that round.
            let ratios: Vec<f64> = (0..rounds).map(|r| own(i, r) / samples[0][r]).collect();
            (format!("{}{note}", c.name), costs, ratios, c.target)
        })
        .collect();
    lab::stats::print_ratio_table(&rows);
    Ok(())
}

/// A realistic policy: 10,000 blocklist prefixes (mixed /24 and /32) and 100 allowlist
/// entries, so LPM lookups walk a populated trie.
fn fill_lists(maps: &mut Maps) -> anyhow::Result<usize> {
    let mut x: u32 = 0x1234_5678;
    let mut n = 0;
    for i in 0..10_000u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let addr = std::net::Ipv4Addr::from(x);
        let net = if i % 2 == 0 {
            format!("{}/24", std::net::Ipv4Addr::from(x & 0xffff_ff00))
        } else {
            format!("{addr}/32")
        };
        maps.insert(
            List::Block,
            cidr::parse(&net).map_err(anyhow::Error::msg)?,
            None,
            Origin::Config,
            "bench",
        )?;
        n += 1;
    }
    maps.insert(
        List::Block,
        cidr::parse("203.0.113.77").unwrap(),
        None,
        Origin::Config,
        "bench",
    )?;
    maps.insert(
        List::Block,
        cidr::parse("198.51.100.0/24").unwrap(),
        None,
        Origin::Config,
        "bench",
    )?;
    for i in 0..100u32 {
        let net = format!("172.16.{}.0/24", i);
        maps.insert(
            List::Allow,
            cidr::parse(&net).unwrap(),
            Some(Duration::from_secs(3600)),
            Origin::Config,
            "bench",
        )?;
    }
    Ok(n + 2)
}
