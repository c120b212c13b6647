//! Connection steering's cost per packet via BPF_PROG_TEST_RUN, next to a bare
//! XDP_DROP measured in the same rounds. Run by `cargo xtask bench fleet --part
//! steering` (root).
//!
//! The program runs as node 10.77.0.1 of a three-node table (as the daemon computes
//! it, the members' MACs learned from their probes), in a network namespace of its
//! own. A steered packet is encapsulated and a GUE packet decapsulated in place, so
//! those classes run behind the `replay` driver (xdp-bench.o), which writes the frame
//! back (and moves its start back) before tail-calling the program; the driver's own
//! cost, measured against the bare drop in the same round, is removed.

use std::net::IpAddr;

use aya::maps::{Array, ProgramArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use lab::gue;
use lab::packets::{self, PSH_ACK, SYN};
use proxy::control::steering::store::{MemberState, TableMember, TableRecord};
use proxy::control::steering::table::{self, Table};
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use proxy::ebpf::maps::RateLimits;
use proxy::ebpf::maps::steering::SlotContent;
use proxy_common::steering::{flow_hash, row_of};

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-bench.o"));

const PORT: u16 = 19523;
const ME: [u8; 4] = [10, 77, 0, 1];
const N1: [u8; 4] = [10, 77, 0, 2];
const N2: [u8; 4] = [10, 77, 0, 3];
const VIP: [u8; 4] = [10, 99, 0, 1];
const CLIENT: [u8; 4] = [10, 78, 0, 100];
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

/// Mirror of `Template` in proxy-ebpf/src/bin/xdp-bench.rs.
#[repr(C)]
#[derive(Clone, Copy)]
struct Template {
    len: u32,
    rotate_source: u32,
    head_undo: i32,
    runs: u32,
    bytes: [u8; 128],
}

// SAFETY: repr(C) integers and bytes, no padding.
unsafe impl aya::Pod for Template {}

#[derive(Clone, Copy, PartialEq)]
enum Runner {
    Bare,
    /// `replay` → bare drop: the driver's own cost.
    ReplayBare,
    /// `replay` → the product, undoing this move of the frame's start.
    Replay(i32),
}

struct Class {
    name: &'static str,
    runner: Runner,
    packet: Vec<u8>,
}

fn main() -> anyhow::Result<()> {
    let (repeat, rounds) = lab::stats::repeat_and_rounds(200_000, 11)?;
    anyhow::ensure!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "BPF_PROG_TEST_RUN needs root"
    );
    private_netns()?;
    let (product, mut maps) = XdpProgram::load(LoadOptions::private())?;
    maps.write_config(&RateLimits::default(), 0, false)?;
    let table = configure(&product, &mut maps)?;
    let mut bench = aya::Ebpf::load(BENCH_OBJECT)?;
    for name in ["bare_drop", "replay"] {
        let p: &mut Xdp = bench.program_mut(name).expect(name).try_into()?;
        p.load()?;
    }
    let mut target = ProgramArray::try_from(bench.take_map("TARGET").expect("TARGET map"))?;
    let mut template: Array<_, Template> =
        Array::try_from(bench.take_map("TEMPLATE").expect("TEMPLATE map"))?;
    let bare_fd = {
        let p: &Xdp = bench.program("bare_drop").unwrap().try_into()?;
        p.fd()?.try_clone()?
    };
    let product_fd = product.program().fd()?.try_clone()?;

    let to_vip = |port: u16, flags: u8| {
        packets::v4("10.78.0.100")
            .to(IpAddr::from(VIP))
            .tcp(443, flags)
            .src_port(port)
            .payload(16)
            .macs(OUR_MAC, ROUTER_MAC)
            .build()
    };
    let owned_here = port_where(&table, |p, _| p == "node0");
    let elsewhere = port_where(&table, |p, s| p == "node2" && s == Some("node1"));
    let inner = to_vip(elsewhere, PSH_ACK);
    let from = |member: [u8; 4], hops: u8, next: Option<[u8; 4]>, packet: &[u8]| {
        gue::data(
            (OUR_MAC, [0x02, 0, 0, 0, 0, 0x10 + member[3]]),
            IpAddr::from(member),
            IpAddr::from(ME),
            PORT,
            hops,
            next.map(IpAddr::from),
            packet,
        )
    };
    let classes = vec![
        Class {
            name: "bare XDP_DROP (baseline)",
            runner: Runner::Bare,
            packet: to_vip(owned_here, PSH_ACK),
        },
        Class {
            name: "replay driver + bare drop (driver cost)",
            runner: Runner::ReplayBare,
            packet: to_vip(owned_here, PSH_ACK),
        },
        Class {
            name: "TCP to a steered VIP, its row this node's (passed, not steered)",
            runner: Runner::Replay(0),
            packet: to_vip(owned_here, SYN),
        },
        Class {
            name: "steered: data for another node's row (GUE encapsulation, XDP_TX)",
            runner: Runner::Replay(40),
            packet: inner.clone(),
        },
        Class {
            name: "decapsulated: a member's GUE with a SYN for this node (passed)",
            runner: Runner::Replay(-40),
            packet: from(N1, 1, None, &to_vip(owned_here, SYN)),
        },
        Class {
            name: "second chance: a member's GUE unknown here (re-encapsulated, XDP_TX)",
            runner: Runner::Replay(0),
            packet: from(N2, 1, Some(N1), &inner),
        },
    ];
    for c in &classes {
        anyhow::ensure!(
            c.packet.len() <= 127,
            "{}: the replay template holds 127 bytes",
            c.name
        );
    }

    eprintln!(
        "measuring {} classes × {rounds} rounds × {repeat} runs (node 1 of 3, steering on)",
        classes.len()
    );
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
    for round in 0..rounds {
        for k in 0..classes.len() {
            let i = (k + round) % classes.len();
            let class = &classes[i];
            let prog: &Xdp = match class.runner {
                Runner::Bare => bench.program("bare_drop").unwrap().try_into()?,
                Runner::ReplayBare | Runner::Replay(_) => {
                    let (fd, head_undo) = match class.runner {
                        Runner::Replay(undo) => (&product_fd, undo),
                        _ => (&bare_fd, 0),
                    };
                    target.set(0, fd, 0)?;
                    let mut bytes = [0u8; 128];
                    bytes[..class.packet.len()].copy_from_slice(&class.packet);
                    let t = Template {
                        len: class.packet.len() as u32,
                        rotate_source: 0,
                        head_undo,
                        runs: 0,
                        bytes,
                    };
                    template.set(0, t, 0)?;
                    bench.program("replay").unwrap().try_into()?
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
    let verdicts = maps.verdicts(1)?;
    eprintln!(
        "verdicts: steered {}, second_chance {}, decapsulated {}, steer_failed {}",
        verdicts.get(proxy_common::Reason::Steered).packets,
        verdicts.get(proxy_common::Reason::SecondChance).packets,
        verdicts.get(proxy_common::Reason::Decapsulated).packets,
        verdicts.get(proxy_common::Reason::SteerFailed).packets
    );
    anyhow::ensure!(
        verdicts.get(proxy_common::Reason::SteerFailed).packets == 0,
        "a measured packet failed to be steered: the figures would not be steering's"
    );

    let driver = 1;
    let own = |i: usize, r: usize| match classes[i].runner {
        Runner::Replay(_) => samples[i][r] - samples[driver][r] + samples[0][r],
        _ => samples[i][r],
    };
    let rows: Vec<_> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let note = if matches!(c.runner, Runner::Replay(_)) {
                " (driver cost removed)"
            } else {
                ""
            };
            let costs: Vec<f64> = (0..rounds).map(|r| own(i, r)).collect();
            let ratios: Vec<f64> = (0..rounds).map(|r| own(i, r) / samples[0][r]).collect();
            (format!("{}{note}", c.name), costs, ratios, None)
        })
        .collect();
    lab::stats::print_ratio_table(&rows);
    Ok(())
}

/// Node 10.77.0.1 of a table of three, the VIP steered, the members' probes arrived.
fn configure(product: &XdpProgram, maps: &mut proxy::ebpf::maps::Maps) -> anyhow::Result<Table> {
    let member = |node: &str, a: [u8; 4], joined| TableMember {
        node: node.into(),
        address: IpAddr::from(a),
        port: PORT,
        state: MemberState::Active,
        joined,
        drained: None,
    };
    let table = table::compute(&TableRecord {
        generation: 3,
        members: vec![
            member("node0", ME, 1),
            member("node1", N1, 2),
            member("node2", N2, 3),
        ],
        change: String::new(),
    });
    let s = maps.steering().expect("steering maps");
    s.configure(Some((
        IpAddr::from(ME),
        PORT,
        &[(IpAddr::from(VIP), vec![443])],
    )))?;
    s.set_peers(&[(IpAddr::from(N1), PORT), (IpAddr::from(N2), PORT)])?;
    let rows: Vec<(u16, u16)> = table
        .rows
        .iter()
        .map(|r| (r.primary, r.secondary))
        .collect();
    s.install(&SlotContent {
        generation: 3,
        members: &table.addresses(),
        me: table.index_of("node0"),
        rows: &rows,
    })?;
    s.activate(3)?;
    for (from, last) in [(N1, 0x12), (N2, 0x13)] {
        let probe = gue::probe(
            (OUR_MAC, [0x02, 0, 0, 0, 0, last]),
            IpAddr::from(from),
            IpAddr::from(ME),
            PORT,
        );
        product.program().test_run(TestRunOptions {
            data_in: Some(&probe),
            ..TestRunOptions::new()
        })?;
    }
    Ok(table)
}

/// A client port whose row's (primary, secondary) names satisfy `want`.
fn port_where(table: &Table, want: impl Fn(&str, Option<&str>) -> bool) -> u16 {
    let key = |a: [u8; 4]| {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&a);
        k
    };
    let name = |i: u16| table.members.get(usize::from(i)).map(|m| m.node.as_str());
    (20000..60000)
        .find(|p| {
            let row = table.rows[row_of(flow_hash(&key(CLIENT), *p, &key(VIP), 443))];
            want(name(row.primary).unwrap_or(""), name(row.secondary))
        })
        .expect("a port with those owners")
}

/// A network namespace of our own (no socket on the VIP), with `lo` up.
fn private_netns() -> anyhow::Result<()> {
    // SAFETY: unshare on this (still single-threaded) process.
    anyhow::ensure!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    anyhow::ensure!(up.success(), "ip link set lo up");
    Ok(())
}
