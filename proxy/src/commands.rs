//! Admin commands that work on the pinned maps directly, so they also work while the
//! daemon restarts: block/allow lists, kernel counters, XDP detach/unpin.

use std::path::Path;

use anyhow::Context;
use proxy_common::Reason;

use crate::admin;
use crate::cli::{DaemonArgs, ListAction, OutputArgs, XdpAction};
use crate::ebpf::maps::{List, ListEntry, Maps, Origin};

pub fn list_command(list: List, action: ListAction) -> anyhow::Result<()> {
    let noun = match list {
        List::Allow => "allowlist",
        List::Block => "blocklist",
    };
    match action {
        ListAction::Add {
            cidr,
            ttl,
            reason,
            out,
        } => {
            let mut maps = Maps::from_pins(&out.pin_path)?;
            maps.insert(list, cidr, ttl, Origin::Manual, &reason)?;
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({"added": cidr.to_string(), "list": noun, "ttl_seconds": ttl.map(|t| t.as_secs())})
                );
            } else {
                let until = ttl.map_or_else(
                    || "permanently".to_string(),
                    |t| format!("for {}", humantime::format_duration(t)),
                );
                println!("added {cidr} to the {noun} {until}");
            }
        }
        ListAction::Del { cidr, out } => {
            let mut maps = Maps::from_pins(&out.pin_path)?;
            let existed = maps.remove(list, cidr)?;
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({"removed": cidr.to_string(), "list": noun, "existed": existed})
                );
            } else if existed {
                println!("removed {cidr} from the {noun}");
            } else {
                anyhow::bail!(
                    "{cidr} is not in the {noun} (`proxy {} list` shows the entries)",
                    &noun[..5]
                );
            }
        }
        ListAction::List(out) => {
            let maps = Maps::from_pins(&out.pin_path)?;
            let entries = maps.entries(list)?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print_entries(&entries);
            }
        }
    }
    Ok(())
}

fn print_entries(entries: &[ListEntry]) {
    if entries.is_empty() {
        println!("(empty)");
        return;
    }
    println!("{:<43} {:<14} {:<7} REASON", "CIDR", "EXPIRES IN", "ORIGIN");
    for e in entries {
        let expires = e.expires_in.map_or_else(
            || "never".to_string(),
            |d| humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string(),
        );
        let origin = match e.origin {
            Origin::Config => "config",
            Origin::Manual => "manual",
            Origin::Auto => "auto",
            Origin::Unknown => "?",
        };
        println!(
            "{:<43} {:<14} {:<7} {}",
            e.cidr.to_string(),
            expires,
            origin,
            e.reason
        );
    }
}

pub fn stats_command(out: &OutputArgs, daemon: &DaemonArgs) -> anyhow::Result<()> {
    let stats = match admin::request(&daemon.socket, &admin::Request::Stats) {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("note: {e:#}; showing the kernel counters from the pinned maps only");
            return kernel_stats(out);
        }
    };
    if out.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!("open connections: {}", stats["connections_open"]);
    if let Some(listeners) = stats["listeners"].as_object() {
        for (name, l) in listeners {
            println!("listener {name}:");
            if let Some(fields) = l.as_object() {
                for (k, v) in fields {
                    println!("  {k:<36} {v}");
                }
            }
        }
    }
    for pool in stats["pools"].as_array().into_iter().flatten() {
        println!("pool {}:", pool["name"].as_str().unwrap_or("?"));
        for b in pool["backends"].as_array().into_iter().flatten() {
            let health = if b["healthy"].as_bool() == Some(true) {
                "up"
            } else {
                "DOWN"
            };
            println!(
                "  {:<40} {:<5} weight {:<4} active {}",
                b["address"].as_str().unwrap_or("?"),
                health,
                b["weight"],
                b["active_connections"]
            );
        }
    }
    match stats["xdp"].as_object() {
        None => println!("XDP: not running (no [xdp] section)"),
        Some(xdp) => {
            println!(
                "XDP: {} blocklist entries ({} automatic)",
                xdp["blocklist_entries"], xdp["auto_blocks_active"]
            );
            for ifc in xdp["interfaces"].as_array().into_iter().flatten() {
                println!(
                    "  {} (ifindex {}, {} mode):",
                    ifc["interface"].as_str().unwrap_or("?"),
                    ifc["ifindex"],
                    ifc["mode"].as_str().unwrap_or("?")
                );
                print_verdicts(&ifc["verdicts"]);
            }
        }
    }
    let ab = &stats["autoblock"];
    println!(
        "auto-blocks: {} (failed handshakes {}, handshake timeouts {}, connection rate {}); skipped allowlisted {}",
        ab["blocked_total"],
        ab["by_trigger"]["failed_handshakes"],
        ab["by_trigger"]["handshake_timeouts"],
        ab["by_trigger"]["new_connections"],
        ab["skipped_allowlisted"]
    );
    Ok(())
}

fn print_verdicts(verdicts: &serde_json::Value) {
    println!("    {:<12} {:>14} {:>16}", "REASON", "PACKETS", "BYTES");
    for r in Reason::ALL {
        let v = &verdicts[r.name()];
        println!(
            "    {:<12} {:>14} {:>16}",
            r.name(),
            v["packets"],
            v["bytes"]
        );
    }
}

/// Kernel counters straight from the pinned maps (no daemon needed).
fn kernel_stats(out: &OutputArgs) -> anyhow::Result<()> {
    let maps = Maps::from_pins(&out.pin_path)?;
    let counters = maps.all_counters()?;
    let interfaces: Vec<_> = counters
        .iter()
        .map(|c| serde_json::json!({"ifindex": c.ifindex, "interface": c.interface, "verdicts": admin::verdicts_json(c)}))
        .collect();
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"xdp": {"interfaces": interfaces}}))?
        );
        return Ok(());
    }
    if interfaces.is_empty() {
        println!("no packets seen by the XDP program yet");
    }
    for ifc in &interfaces {
        let name = ifc["interface"]
            .as_str()
            .map_or_else(|| format!("ifindex {}", ifc["ifindex"]), String::from);
        println!("XDP verdicts on {name}:");
        print_verdicts(&ifc["verdicts"]);
    }
    Ok(())
}

pub fn top_command(n: usize, json: bool, daemon: &DaemonArgs) -> anyhow::Result<()> {
    let top = admin::request(&daemon.socket, &admin::Request::Top { n })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&top)?);
        return Ok(());
    }
    let sources = top["sources"].as_array().cloned().unwrap_or_default();
    if sources.is_empty() {
        println!("no drops sampled yet");
        return Ok(());
    }
    println!(
        "{:<40} {:>12}  {:<20} BY REASON",
        "SOURCE", "~DROPS", "LAST SEEN"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for s in sources {
        let ago = now.saturating_sub(s["last_seen_unix"].as_u64().unwrap_or(0));
        let reasons: Vec<String> = s["by_reason"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|pair| format!("{}={}", pair[0].as_str().unwrap_or("?"), pair[1]))
            .collect();
        println!(
            "{:<40} {:>12}  {:<20} {}",
            s["source"].as_str().unwrap_or("?"),
            s["estimated_drops"],
            format!("{ago}s ago"),
            reasons.join(" ")
        );
    }
    Ok(())
}

pub fn xdp_command(action: XdpAction) -> anyhow::Result<()> {
    match action {
        XdpAction::Detach(out) => {
            let links = out.pin_path.join("links");
            let mut n = 0;
            if links.is_dir() {
                for entry in std::fs::read_dir(&links)? {
                    let entry = entry?;
                    std::fs::remove_file(entry.path())
                        .with_context(|| format!("unpinning {}", entry.path().display()))?;
                    println!("detached from {}", entry.file_name().to_string_lossy());
                    n += 1;
                }
                std::fs::remove_dir(&links).ok();
            }
            if n == 0 {
                println!("no pinned XDP attachments under {}", links.display());
            }
        }
        XdpAction::Unpin(out) => unpin(&out.pin_path)?,
    }
    Ok(())
}

fn unpin(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        println!("nothing pinned at {}", dir.display());
        return Ok(());
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    println!(
        "removed {} (maps, lists and pinned attachments)",
        dir.display()
    );
    Ok(())
}
