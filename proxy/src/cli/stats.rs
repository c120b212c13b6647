//! `proxy stats` and `proxy top`: ask the daemon over the admin socket (typed
//! [`crate::api`]) and print a table or JSON. Without a daemon, `stats` reads the
//! kernel counters from the pins.

use proxy_common::Reason;

use super::{DaemonArgs, OutputArgs};
use crate::api::{
    InterfaceStats, KernelOnlyStats, Request, Response, SettingOrigin, Stats, Top, Verdicts,
    XdpStats,
};
use crate::control::admin::client;
use crate::ebpf::host::if_name;
use crate::ebpf::maps::Maps;

pub fn stats_command(out: &OutputArgs, daemon: &DaemonArgs) -> anyhow::Result<()> {
    let stats = match client::request(&daemon.socket, &Request::Stats) {
        Ok(Response::Stats(stats)) => stats,
        Ok(other) => anyhow::bail!("the daemon answered a stats request with {other:?}"),
        Err(e) => {
            eprintln!("note: {e:#}; showing the kernel counters from the pinned maps only");
            return kernel_stats(out);
        }
    };
    if out.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print_stats(&stats);
    }
    Ok(())
}

fn print_stats(stats: &Stats) {
    println!("open connections: {}", stats.connections_open);
    for l in &stats.listeners {
        println!("listener {}:", l.name);
        let row = |k: &str, v: &dyn std::fmt::Display| println!("  {k:<36} {v}");
        row("connections_active", &l.connections_active);
        row("connections_total", &l.connections_total);
        row("tls_handshakes", &l.tls_handshakes);
        for (reason, n) in l.tls_handshake_failures.iter().filter(|(_, n)| **n > 0) {
            row(&format!("tls_handshake_failed_{}", reason.label()), n);
        }
        for (reason, n) in l.rejected.iter().filter(|(_, n)| **n > 0) {
            row(&format!("rejected_{}", reason.label()), n);
        }
        row("bytes_upstream", &l.bytes_upstream);
        row("bytes_downstream", &l.bytes_downstream);
        row("bytes_spliced", &l.bytes_spliced);
        row("no_backend", &l.no_backend);
        for r in &l.routes {
            let names = match r.sni.is_empty() {
                true => "(every other name)".to_string(),
                false => r.sni.join(" "),
            };
            let alpn = match r.alpn.is_empty() {
                true => String::new(),
                false => format!(" alpn {}", r.alpn.join(",")),
            };
            println!(
                "  route {:<24} {names}{alpn} -> pool {} ({})",
                r.name, r.pool, r.tls
            );
            println!(
                "    connections {} bytes_upstream {} bytes_downstream {} no_backend {}",
                r.connections, r.bytes_upstream, r.bytes_downstream, r.no_backend
            );
        }
    }
    for pool in &stats.pools {
        let ramp = pool
            .slow_start_ms
            .map(|ms| format!(", slow start {ms} ms"))
            .unwrap_or_default();
        println!(
            "pool {} (balance {}{ramp}):",
            pool.name,
            pool.balance.name()
        );
        for b in &pool.backends {
            let health = if b.healthy { "up" } else { "DOWN" };
            let runtime = |origin: SettingOrigin| match origin {
                SettingOrigin::Runtime => "*",
                SettingOrigin::Config => "",
            };
            let ramp = b
                .slow_start_percent
                .map(|p| format!(" (ramp {p} %)"))
                .unwrap_or_default();
            println!(
                "  {:<40} {:<5} {:<7} weight {:<5} active {:<6} failed connects {}{}{ramp}",
                b.address,
                health,
                format!("{}{}", b.state.label(), runtime(b.state_origin)),
                format!("{}{}", b.weight, runtime(b.weight_origin)),
                b.active_connections,
                b.connect_failures,
                b.last_failure
                    .as_deref()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            );
            if let Some(c) = &b.changed {
                println!(
                    "    * set at runtime by {} at {}",
                    c.by,
                    super::backends::time(c.at_unix)
                );
            }
            if b.origin != "config" {
                println!("    from {}", b.origin);
            }
        }
        for d in &pool.discovery {
            let when = d
                .last_resolution_unix
                .map(super::backends::time)
                .unwrap_or_else(|| "never".into());
            let backends: Vec<String> = d.backends.iter().map(|a| a.to_string()).collect();
            println!(
                "  DNS {}: {} (last lookup {when}: {}), {} backends{}",
                d.source,
                d.state,
                d.last_result.as_deref().unwrap_or("-"),
                backends.len(),
                d.last_error
                    .as_deref()
                    .map(|e| format!(" (error: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    match &stats.xdp {
        None => println!("XDP: not running (no [xdp] section)"),
        Some(xdp) => print_xdp(xdp),
    }
    if let Some(fleet) = &stats.fleet {
        for v in &fleet.vips {
            let state = if v.announced {
                "announced"
            } else {
                "withdrawn"
            };
            println!("VIP {}: {state} ({})", v.vip, v.reason);
        }
        for p in &fleet.peers {
            println!("BGP peer {}: {} {}", p.address, p.state, p.info);
        }
    }
    if let Some(p) = &stats.fleet_policy {
        let state = if p.connected {
            "connected".to_string()
        } else {
            format!(
                "UNREACHABLE ({})",
                p.last_error.as_deref().unwrap_or("not yet")
            )
        };
        println!(
            "fleet store: {state}; revision {}, {} block and {} allow entries, {} writes pending \
             (proxy fleet status)",
            p.revision, p.block_entries, p.allow_entries, p.pending
        );
    }
    let ab = &stats.autoblock;
    println!(
        "auto-blocks: {} (failed handshakes {}, handshake timeouts {}, connection rate {}); \
         skipped allowlisted {}, skipped without XDP {}, events dropped {}",
        ab.blocked_total,
        ab.by_trigger.failed_handshakes,
        ab.by_trigger.handshake_timeouts,
        ab.by_trigger.new_connections,
        ab.skipped_allowlisted,
        ab.skipped_no_xdp,
        ab.events_dropped
    );
}

fn print_xdp(xdp: &XdpStats) {
    println!(
        "XDP: {} blocklist entries ({} automatic)",
        xdp.blocklist_entries, xdp.auto_blocks_active
    );
    for ifc in &xdp.interfaces {
        println!(
            "  {} (ifindex {}, {} mode):",
            ifc.interface.as_deref().unwrap_or("?"),
            ifc.ifindex,
            ifc.mode.as_deref().unwrap_or("?")
        );
        print_verdicts(&ifc.verdicts);
    }
    if xdp.service_filter {
        println!("  service filter: on (unserved ports dropped as port_closed)");
    }
    if xdp.listeners.iter().any(|l| l.syn_cookies != "off") {
        println!(
            "  {:<16} {:<22} {:<12} {:>9} {:>12} {:>12} {:>10} {:>10}",
            "LISTENER", "BIND", "SYN COOKIES", "SYN/S", "SYNS", "COOKIES", "ACKS OK", "ACKS BAD"
        );
        for l in &xdp.listeners {
            let mode = match (l.syn_cookies.as_str(), l.cookies_active) {
                ("auto", true) => "auto-active".to_string(),
                (mode, _) => mode.to_string(),
            };
            println!(
                "  {:<16} {:<22} {:<12} {:>9.0} {:>12} {:>12} {:>10} {:>10}",
                l.listener,
                l.bind,
                mode,
                l.syn_per_second,
                l.syns,
                l.cookies_sent,
                l.cookie_acks_ok,
                l.cookie_acks_bad
            );
        }
    }
}

fn print_verdicts(verdicts: &Verdicts) {
    println!("    {:<18} {:>14} {:>16}", "REASON", "PACKETS", "BYTES");
    for r in Reason::ALL {
        let v = verdicts.get(r);
        println!("    {:<18} {:>14} {:>16}", r.name(), v.packets, v.bytes);
    }
}

/// Kernel counters straight from the pinned maps (no daemon needed).
fn kernel_stats(out: &OutputArgs) -> anyhow::Result<()> {
    let maps = Maps::from_pins(&out.pin_path)?;
    let interfaces: Vec<InterfaceStats> = maps
        .all_verdicts()?
        .into_iter()
        .map(|(ifindex, verdicts)| InterfaceStats {
            interface: if_name(ifindex),
            ifindex,
            mode: None,
            verdicts,
        })
        .collect();
    if out.json {
        let stats = KernelOnlyStats {
            xdp: XdpStats {
                interfaces,
                ..XdpStats::default()
            },
        };
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    if interfaces.is_empty() {
        println!("no packets seen by the XDP program yet");
    }
    for ifc in &interfaces {
        let name = ifc
            .interface
            .clone()
            .unwrap_or_else(|| format!("ifindex {}", ifc.ifindex));
        println!("XDP verdicts on {name}:");
        print_verdicts(&ifc.verdicts);
    }
    Ok(())
}

pub fn top_command(n: usize, json: bool, daemon: &DaemonArgs) -> anyhow::Result<()> {
    let top = match client::request(&daemon.socket, &Request::Top { n })? {
        Response::Top(top) => top,
        other => anyhow::bail!("the daemon answered a top request with {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&top)?);
    } else {
        print_top(&top);
    }
    Ok(())
}

fn print_top(top: &Top) {
    if top.sources.is_empty() {
        println!("no drops sampled yet");
        return;
    }
    println!(
        "{:<40} {:>12} {:>14}  {:<12} DROPS BY REASON",
        "SOURCE", "~DROPPED", "~COOKIE-ANSWERS", "LAST SEEN"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for s in &top.sources {
        let ago = now.saturating_sub(s.last_seen_unix);
        println!(
            "{:<40} {:>12} {:>14}  {:<12} {}",
            s.source_label(),
            s.estimated_drops,
            s.estimated_answered,
            format!("{ago}s ago"),
            s.reasons_text(" ")
        );
    }
}
