//! The TLS benchmark's figures and its report: medians, min-max and the median of
//! the per-round (paired) ratios against each peer.

use std::collections::BTreeMap;

use anyhow::bail;

use super::products::Product;
use super::{Args, GEN_CPU, LB_CPU, SYSCALL_CONNECTIONS};
use crate::results::{Latency, Outcome, us};
use lab::stats::{median, min_max};

/// A figure measured per product and round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Figure {
    EcdsaHandshakes,
    EcdsaCpu,
    RsaHandshakes,
    RsaCpu,
    TcpConnects,
    TcpConnectCpu,
    TlsBulk,
    TlsBulkCpu,
    TlsBulkCoreCpu,
    TcpUp,
    TcpDown,
    TcpCpu,
    P50,
    P99,
    P999,
    AddedP99,
    TlsP50,
    TlsP99,
    TlsP999,
    Resumed13,
    Resumed13Cpu,
    Resumed12Tickets,
    Resumed12TicketsCpu,
    Resumed12Ids,
    Resumed12IdsCpu,
    Syscalls,
    SyscallsSetsockopt,
    SyscallsEpollCtl,
    SyscallsShutdown,
    SyscallsTls12,
    SyscallsTls12Shutdown,
    SyscallsTls13,
    Segments,
    SegmentsTls12,
    SegmentsTls13,
    PassthroughHandshakes,
    PassthroughCpu,
    UnroutedEcdsaCpu,
    RoutedEcdsaCpu,
    RoutingOverhead,
    Reencrypted,
    ReencryptedCpu,
    ReencryptedBackendResumed,
    ReencryptedFull,
    ReencryptedFullCpu,
    ReencryptedFullBackendResumed,
    IdleMemory,
}

impl Figure {
    pub fn label(self) -> &'static str {
        match self {
            Figure::EcdsaHandshakes => "full ECDSA P-256 handshakes/s",
            Figure::EcdsaCpu => "LB CPU per ECDSA handshake (µs)",
            Figure::RsaHandshakes => "full RSA-2048 handshakes/s",
            Figure::RsaCpu => "LB CPU per RSA handshake (µs)",
            Figure::TcpConnects => "new plain TCP connections/s (connect, GET, close)",
            Figure::TcpConnectCpu => "LB CPU per new TCP connection (µs)",
            Figure::TlsBulk => "TLS bulk, 1 MiB objects (Gbit/s)",
            Figure::TlsBulkCpu => "LB CPU per GB, TLS bulk (s)",
            Figure::TlsBulkCoreCpu => "LB core busy per GB, TLS bulk (s, all of CPU 0)",
            Figure::TcpUp => "plain TCP iperf3 up (Gbit/s)",
            Figure::TcpDown => "plain TCP iperf3 down (Gbit/s)",
            Figure::TcpCpu => "LB CPU per GB, plain TCP (s)",
            Figure::P50 => "small request p50 at 2k/s (µs)",
            Figure::P99 => "small request p99 at 2k/s (µs)",
            Figure::P999 => "small request p99.9 at 2k/s (µs)",
            Figure::AddedP99 => "added p99 vs no LB (µs)",
            Figure::TlsP50 => "TLS small request p50 at 2k/s, 50 conns (µs)",
            Figure::TlsP99 => "TLS small request p99 at 2k/s, 50 conns (µs)",
            Figure::TlsP999 => "TLS small request p99.9 at 2k/s, 50 conns (µs)",
            Figure::Resumed13 => "resumed handshakes + GET /s, TLS 1.3 tickets",
            Figure::Resumed13Cpu => "LB CPU per resumed handshake, TLS 1.3 tickets (µs)",
            Figure::Resumed12Tickets => "resumed handshakes + GET /s, TLS 1.2 tickets",
            Figure::Resumed12TicketsCpu => "LB CPU per resumed handshake, TLS 1.2 tickets (µs)",
            Figure::Resumed12Ids => "resumed handshakes + GET /s, TLS 1.2 session IDs",
            Figure::Resumed12IdsCpu => "LB CPU per resumed handshake, TLS 1.2 session IDs (µs)",
            Figure::Syscalls => "syscalls per proxied plain connection (GET)",
            Figure::SyscallsSetsockopt => "  of which setsockopt",
            Figure::SyscallsEpollCtl => "  of which epoll_ctl",
            Figure::SyscallsShutdown => "  of which shutdown",
            Figure::SyscallsTls12 => "syscalls per resumed TLS 1.2 connection (tickets, GET)",
            Figure::SyscallsTls12Shutdown => "  of which shutdown",
            Figure::SyscallsTls13 => "syscalls per resumed TLS 1.3 connection (tickets, GET)",
            Figure::Segments => "TCP segments the LB sends per plain connection (GET)",
            Figure::SegmentsTls12 => "TCP segments the LB sends per resumed TLS 1.2 connection",
            Figure::SegmentsTls13 => "TCP segments the LB sends per resumed TLS 1.3 connection",
            Figure::PassthroughHandshakes => {
                "passthrough handshakes/s (SNI routed, the backend terminates)"
            }
            Figure::PassthroughCpu => "LB CPU per passthrough connection (µs)",
            Figure::UnroutedEcdsaCpu => "LB CPU per ECDSA handshake, no routes (µs)",
            Figure::RoutedEcdsaCpu => "LB CPU per ECDSA handshake behind 3 SNI routes (µs)",
            Figure::RoutingOverhead => "SNI routing overhead, terminated handshakes (%)",
            Figure::Reencrypted => {
                "re-encrypted connections/s (full client handshake, verified backend TLS, GET)"
            }
            Figure::ReencryptedCpu => "LB CPU per re-encrypted connection (µs)",
            Figure::ReencryptedBackendResumed => "  backend sessions resumed (%)",
            Figure::ReencryptedFull => "re-encrypted connections/s, no backend resumption",
            Figure::ReencryptedFullCpu => {
                "LB CPU per re-encrypted connection, no backend resumption (µs)"
            }
            Figure::ReencryptedFullBackendResumed => "  backend sessions resumed (%)",
            Figure::IdleMemory => "memory per idle TLS connection (KiB)",
        }
    }

    fn decimals(self) -> usize {
        match self {
            Figure::TlsBulk | Figure::TcpUp | Figure::TcpDown => 2,
            Figure::TlsBulkCpu | Figure::TlsBulkCoreCpu | Figure::TcpCpu => 3,
            Figure::RoutingOverhead
            | Figure::ReencryptedBackendResumed
            | Figure::ReencryptedFullBackendResumed => 1,
            Figure::IdleMemory
            | Figure::Syscalls
            | Figure::SyscallsSetsockopt
            | Figure::SyscallsEpollCtl
            | Figure::SyscallsShutdown
            | Figure::SyscallsTls12
            | Figure::SyscallsTls12Shutdown
            | Figure::SyscallsTls13
            | Figure::Segments
            | Figure::SegmentsTls12
            | Figure::SegmentsTls13 => 1,
            _ => 0,
        }
    }
}

#[derive(Default)]
pub struct Results {
    /// (figure, product) → one value per round.
    pub values: BTreeMap<(Figure, Product), Vec<f64>>,
    /// No-LB baseline latency per round.
    pub baseline_p50: Vec<f64>,
    pub baseline_p99: Vec<f64>,
    pub notes: Vec<String>,
    /// Per product, one line per round: the TLS latency histogram.
    pub histograms: BTreeMap<Product, Vec<String>>,
    /// Per product and kind of connection, the `strace -c` table of the syscalls
    /// figures.
    pub strace: Vec<(Product, &'static str, String)>,
}

impl Results {
    pub fn add(&mut self, figure: Figure, product: Product, value: f64) {
        self.values
            .entry((figure, product))
            .or_default()
            .push(value);
    }

    /// Keeps a latency run's histogram (bucket counts by upper bound in µs).
    pub fn histogram(&mut self, product: Product, j: &Latency) {
        let (bounds, counts) = (&j.buckets_us, &j.histogram);
        let mut line = String::new();
        for (i, count) in counts.iter().enumerate() {
            let label = match bounds.get(i) {
                Some(b) => format!("≤{b}"),
                None => ">".to_string() + &bounds.last().map(|b| b.to_string()).unwrap_or_default(),
            };
            line += &format!(" {label}:{count}");
        }
        line += &format!(" (max {} µs)", us(j.max_us));
        self.histograms.entry(product).or_default().push(line);
    }
}

/// Fails when more than 1% of a measurement's operations failed.
pub fn check_errors(j: &impl Outcome, product: Product, figure: Figure) -> anyhow::Result<()> {
    let errors = j.errors();
    if errors as f64 > j.done() * 0.01 {
        bail!(
            "{} {}: {errors} errors: {j:?}",
            product.label(),
            figure.label()
        );
    }
    Ok(())
}

pub fn report(args: &Args, r: &Results) -> String {
    let mut out = String::new();
    if r.values.is_empty() {
        return out;
    }
    let products = &args.products;
    let peers: Vec<Product> = products
        .iter()
        .copied()
        .filter(|p| *p != Product::Proxy)
        .collect();
    out += &format!(
        "\n{} rounds x {} s, LB on CPU {LB_CPU}, generator and backends on CPU {GEN_CPU}; {}; \
         median (min-max)\n\n",
        args.rounds,
        args.seconds,
        crate::cpu::model()
    );
    out += &format!(
        "latency runs: {} s each at 2,000 requests/s; TLS bulk: {} connections\n\n",
        args.latency_seconds, args.bulk_connections
    );
    out += "| figure |";
    for p in products {
        out += &format!(" {} |", p.label());
    }
    for p in &peers {
        out += &format!(" proxy/{} |", p.label());
    }
    out += "\n|---|";
    out += &"---|".repeat(products.len() + peers.len());
    out += "\n";
    let figures: Vec<Figure> = {
        let mut f: Vec<Figure> = r.values.keys().map(|(f, _)| *f).collect();
        f.dedup();
        f
    };
    for fig in figures {
        out += &format!("| {} |", fig.label());
        for p in products {
            match r.values.get(&(fig, *p)) {
                Some(v) => {
                    let (lo, hi) = min_max(v);
                    let k = fig.decimals();
                    out += &format!(" {:.k$} ({lo:.k$}-{hi:.k$}) |", median(v));
                }
                None => out += " - |",
            }
        }
        for peer in &peers {
            // A ratio of differences (added latency) or of shares means nothing:
            // compare medians.
            let (Some(a), Some(b), false) = (
                r.values.get(&(fig, Product::Proxy)),
                r.values.get(&(fig, *peer)),
                matches!(
                    fig,
                    Figure::AddedP99
                        | Figure::ReencryptedBackendResumed
                        | Figure::ReencryptedFullBackendResumed
                ),
            ) else {
                out += " - |";
                continue;
            };
            // Paired: same round, then the median of the ratios.
            let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
            out += &format!(" {:.2} |", median(&ratios));
        }
        out += "\n";
    }
    if !r.baseline_p99.is_empty() {
        out += &format!(
            "\nno LB (client straight to the backend): p50 {:.0} µs, p99 {:.0} µs\n",
            median(&r.baseline_p50),
            median(&r.baseline_p99)
        );
    }
    if !r.histograms.is_empty() {
        out += "\nTLS small-request latency histograms (µs bucket upper bound: requests), per round:\n";
        for (p, lines) in &r.histograms {
            for (round, line) in lines.iter().enumerate() {
                out += &format!("  {} round {}:{line}\n", p.label(), round + 1);
            }
        }
    }
    for (p, kind, table) in &r.strace {
        out += &format!(
            "\nsyscalls per {kind} connection, {} (strace -c, {SYSCALL_CONNECTIONS} connections):",
            p.label()
        );
        for (name, calls) in super::strace::rows(table) {
            let per = calls / SYSCALL_CONNECTIONS as f64;
            if per >= 0.05 {
                out += &format!(" {name} {per:.2};");
            }
        }
        out += "\n";
    }
    for n in &r.notes {
        out += &format!("note: {n}\n");
    }
    out
}
