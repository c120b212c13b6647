//! The interleaved cost figure (`--figures costs`): LB CPU per operation, measured
//! in short slices with every product running at once ([`Lineup`]). Each cycle runs
//! every kind of operation against every product back to back (order rotating), so
//! a slow spell of the machine, which lasts seconds to minutes here, falls on all
//! products' slices of that kind alike; the rounds of the other figures measure one
//! product after another, half a minute or more apart. Reported per kind: the median
//! (min-max) of the per-slice costs, the median of the per-cycle paired ratios, and
//! in how many cycles the proxy cost less.

use std::collections::BTreeMap;

use anyhow::ensure;
use lab::stats::{median, min_max};

use super::lineup::{Lineup, peers};
use super::report::{Figure, check_errors};
use super::{Args, Bench, PORT_EC, PORT_PLAIN, Product};
use crate::results::Connections;

/// The operations measured, by the figure whose label names them.
const KINDS: [Figure; 5] = [
    Figure::EcdsaCpu,
    Figure::TcpConnectCpu,
    Figure::Resumed13Cpu,
    Figure::Resumed12TicketsCpu,
    Figure::Resumed12IdsCpu,
];

/// The generator's arguments for one slice of `kind` against `ip`.
fn load(bench: &Bench, kind: Figure, ip: &str, seconds: f64) -> String {
    let tls = bench.tls_args_at(ip, PORT_EC, "ec.pem");
    let what = match kind {
        Figure::EcdsaCpu => format!("handshakes {tls}"),
        Figure::TcpConnectCpu => format!("connects --addr {ip}:{PORT_PLAIN} --get /small"),
        Figure::Resumed13Cpu => format!("handshakes {tls} --resume tickets --get /small"),
        Figure::Resumed12TicketsCpu => {
            format!("handshakes {tls} --resume tickets --tls12 --get /small")
        }
        Figure::Resumed12IdsCpu => format!("handshakes {tls} --resume ids --get /small"),
        other => unreachable!("{other:?} is not a cost kind"),
    };
    format!("{what} --seconds {seconds}")
}

/// Runs `args.cycles` cycles; returns the report.
pub fn run(bench: &Bench, ifname: &str, args: &Args) -> anyhow::Result<String> {
    let products = &args.products;
    let lineup = Lineup::start(bench, ifname, products)?;
    // (kind, product) → µs of LB CPU per operation, one value per cycle.
    let mut costs: BTreeMap<(Figure, Product), Vec<f64>> = BTreeMap::new();
    for cycle in 0..args.cycles {
        eprintln!("interleaved costs: cycle {}/{}", cycle + 1, args.cycles);
        let mut order = products.clone();
        let shift = cycle % order.len().max(1);
        order.rotate_left(shift);
        for kind in KINDS {
            for &p in &order {
                let load = load(bench, kind, lineup.addr(p), args.slice_seconds);
                let (j, cpu): (Connections, f64) = bench.client(lineup.proc(p), &load)?;
                check_errors(&j, p, kind)?;
                let ok = j.ok as f64;
                ensure!(
                    ok > 0.0,
                    "{} {}: no operation completed: {j:?}",
                    p.label(),
                    kind.label()
                );
                if matches!(
                    kind,
                    Figure::Resumed13Cpu | Figure::Resumed12TicketsCpu | Figure::Resumed12IdsCpu
                ) {
                    ensure!(
                        j.resumed as f64 >= ok * 0.9,
                        "{} did not resume ({}): {j:?}",
                        p.label(),
                        kind.label()
                    );
                }
                costs.entry((kind, p)).or_default().push(cpu * 1e6 / ok);
            }
        }
    }
    Ok(table(products, &costs, args))
}

fn table(
    products: &[Product],
    costs: &BTreeMap<(Figure, Product), Vec<f64>>,
    args: &Args,
) -> String {
    let peers = peers(products);
    let mut out = format!(
        "\ninterleaved costs: {} cycles; each cycle runs every kind against every product \
         back to back (order rotating), {} s each, all products running at once on CPU {}. \
         Per product: median (min-max) of the slices; per peer: median of the per-cycle \
         ratios proxy/peer, and the cycles in which the proxy cost less\n\n| LB CPU per operation (µs), interleaved |",
        args.cycles,
        args.slice_seconds,
        super::LB_CPU
    );
    for p in products {
        out += &format!(" {} |", p.label());
    }
    for p in &peers {
        out += &format!(" proxy/{} |", p.label());
    }
    out += &format!("\n|---|{}\n", "---|".repeat(products.len() + peers.len()));
    let empty = Vec::new();
    for kind in KINDS {
        let of = |p: Product| costs.get(&(kind, p)).unwrap_or(&empty);
        out += &format!("| {} |", kind.label().replace(" (µs)", ""));
        for &p in products {
            let (lo, hi) = min_max(of(p));
            out += &format!(" {:.0} ({lo:.0}-{hi:.0}) |", median(of(p)));
        }
        let ours = of(Product::Proxy);
        for &p in &peers {
            let theirs = of(p);
            let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
            let lower = ours.iter().zip(theirs).filter(|(a, b)| a < b).count();
            out += &format!(" {:.2}, {lower} of {} |", median(&ratios), ratios.len());
        }
        out += "\n";
    }
    out
}
