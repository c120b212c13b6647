//! The SYN cookie stage and the service filter, cost per packet via BPF_PROG_TEST_RUN,
//! next to a bare XDP_DROP measured in the same rounds. Run with `cargo xtask bench
//! syn` (root).
//!
//! It runs in a network namespace of its own (unshare), where it sets the TCP sysctls
//! the cookie helper needs and listens on a port the program's lookups find. A SYN
//! answered in XDP is rewritten into a SYN-ACK, so those classes run behind the
//! `replay` driver (xdp-bench.o), which writes the SYN back (with a new source each
//! run: a spoofed flood) before tail-calling the program; the driver's own cost,
//! measured against the bare drop in the same round, is removed.
//!
//! `--only TEXT` measures only the classes whose name contains TEXT (with the
//! baselines), to profile one: `perf record -C 1 -g -- taskset -c 1 <bench> --only
//! 'no options'`.

use std::io::Write;
use std::net::TcpListener;

use aya::maps::{Array, ProgramArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use lab::packets::{self, ACK, SYN, Segment, linux_syn_options};
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use proxy::ebpf::maps::{Maps, ServiceSettings};
use proxy::ebpf::services::{addr_key, state};
use proxy_common::{AddrKey, FAMILY_V4, ListenerKey, PortSet};

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-bench.o"));

const SERVICE: &str = "10.77.0.1";

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
    Product,
    /// `replay` (new source each run) → bare drop: the driver's own cost.
    ReplayBare,
    /// `replay` (new source each run) → the product.
    ReplayProduct,
}

struct Class {
    name: &'static str,
    runner: Runner,
    packet: Vec<u8>,
    /// Target ratio to the bare drop, from the issues (32: ≤ 10× for an answered SYN,
    /// ≤ 6× for a cookie ACK check).
    target: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let lab::stats::TestRunArgs {
        repeat,
        rounds,
        only,
    } = lab::stats::test_run_args(200_000, 11)?;
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "BPF_PROG_TEST_RUN needs root"
    );
    private_netns()?;
    let listener = TcpListener::bind("0.0.0.0:0")?;
    let port = listener.local_addr()?.port();

    let (product, mut maps) = XdpProgram::load(LoadOptions::private())?;
    configure(&mut maps, port)?;
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

    let service: std::net::IpAddr = SERVICE.parse()?;
    let bare_syn = packets::v4("10.1.1.1")
        .to(service)
        .tcp(port, SYN)
        .payload(0)
        .build();
    let linux_syn = packets::v4("10.1.1.1")
        .to(service)
        .tcp(port, SYN)
        .seq(7)
        .payload(0)
        .tcp_options(linux_syn_options(1))
        .build();
    // One real answer gives a cookie the kernel accepts for the ACK classes.
    let mut out = vec![0u8; 256];
    let answer = product.program().test_run(TestRunOptions {
        data_in: Some(&linux_syn),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    })?;
    out.truncate(answer.data_size_out as usize);
    let cookie = Segment::parse(&out).map_err(anyhow::Error::msg)?.seq;
    let ack = |n: u32| {
        packets::v4("10.1.1.1")
            .to(service)
            .tcp(port, ACK)
            .seq(8)
            .ack(n)
            .payload(0)
            .build()
    };
    let mut classes = vec![
        Class {
            name: "bare XDP_DROP (baseline)",
            runner: Runner::Bare,
            packet: bare_syn.clone(),
            target: None,
        },
        Class {
            name: "replay driver + bare drop (driver cost)",
            runner: Runner::ReplayBare,
            packet: bare_syn.clone(),
            target: None,
        },
        Class {
            name: "spoofed SYN (no options) answered with a cookie",
            runner: Runner::ReplayProduct,
            packet: bare_syn.clone(),
            target: Some(10.0),
        },
        Class {
            name: "spoofed SYN (Linux options) answered with a cookie",
            runner: Runner::ReplayProduct,
            packet: linux_syn.clone(),
            target: Some(10.0),
        },
        Class {
            name: "valid cookie ACK (passed to the kernel)",
            runner: Runner::Product,
            packet: ack(cookie.wrapping_add(1)),
            target: Some(6.0),
        },
        Class {
            name: "bad cookie ACK (dropped)",
            runner: Runner::Product,
            packet: ack(cookie.wrapping_add(1) ^ 0x0012_3400),
            target: Some(6.0),
        },
        Class {
            name: "UDP to a closed port (dropped)",
            runner: Runner::Product,
            packet: packets::v4("10.1.1.9").to(service).udp(9999).build(),
            target: None,
        },
    ];

    // The baselines (the first two) always, the others as `--only` says.
    let mut index = 0;
    classes.retain(|c| {
        index += 1;
        index <= 2 || only.as_ref().is_none_or(|o| c.name.contains(o.as_str()))
    });
    eprintln!(
        "measuring {} classes × {rounds} rounds × {repeat} runs (listener on port {port}, cookies on)",
        classes.len()
    );
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
    for round in 0..rounds {
        for k in 0..classes.len() {
            let i = (k + round) % classes.len();
            let class = &classes[i];
            let prog: &Xdp = match class.runner {
                Runner::Bare => bench.program("bare_drop").unwrap().try_into()?,
                Runner::Product => product.program(),
                Runner::ReplayBare | Runner::ReplayProduct => {
                    let fd = if class.runner == Runner::ReplayBare {
                        &bare_fd
                    } else {
                        &product_fd
                    };
                    target.set(0, fd, 0)?;
                    let mut bytes = [0u8; 128];
                    bytes[..class.packet.len()].copy_from_slice(&class.packet);
                    template.set(
                        0,
                        Template {
                            len: class.packet.len() as u32,
                            rotate_source: 1,
                            head_undo: 0,
                            runs: 0,
                            bytes,
                        },
                        0,
                    )?;
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
    let counters = maps
        .services_ref()
        .expect("service maps")
        .listener_counters(0)?;
    eprintln!(
        "listener counters: {} SYNs, {} cookies sent, {} cookie ACKs ok, {} bad",
        counters.syns, counters.cookies_sent, counters.cookie_acks_ok, counters.cookie_acks_bad
    );

    let driver = 1;
    let own = |i: usize, r: usize| match classes[i].runner {
        Runner::ReplayProduct => samples[i][r] - samples[driver][r] + samples[0][r],
        _ => samples[i][r],
    };
    let rows: Vec<_> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let note = if c.runner == Runner::ReplayProduct {
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
    drop(listener);
    Ok(())
}

/// A network namespace of our own (BPF_PROG_TEST_RUN's socket lookups and the
/// sysctls are per namespace), with `lo` up and the sysctls the cookie helper needs.
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
    for (path, value) in [
        ("/proc/sys/net/ipv4/tcp_syncookies", "2"),
        ("/proc/sys/net/ipv4/tcp_timestamps", "2"),
    ] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(value.as_bytes())?;
    }
    Ok(())
}

/// The listener on `port` answering with cookies; the service filter on for SERVICE.
fn configure(maps: &mut Maps, port: u16) -> anyhow::Result<()> {
    let mut tcp = PortSet::empty();
    tcp.insert(port);
    let services = maps.services().expect("service maps");
    let wildcard = ListenerKey {
        addr: AddrKey {
            addr: [0; 16],
            family: FAMILY_V4,
        },
        port: u32::from(port),
    };
    services.set_listeners(&[(wildcard, state(true, 0))])?;
    services.set_served_ports(&tcp, &PortSet::empty())?;
    services.set_service_addrs(&[addr_key(SERVICE.parse()?)])?;
    maps.write_service_settings(&ServiceSettings {
        service_filter: true,
        syn_cookie_listeners: 1,
        syn_cookies_active: 1,
        synack_wscale: 7,
        ephemeral_ports: (32768, 60999),
    })?;
    Ok(())
}
