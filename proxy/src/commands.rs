//! Admin commands that work on the pinned maps directly, so they also work while the
//! daemon restarts: block/allow lists, kernel counters, XDP detach/unpin.

use std::path::Path;

use anyhow::Context;
use proxy_common::Reason;

use crate::cli::{ListAction, OutputArgs, XdpAction};
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

pub fn stats_command(out: &OutputArgs) -> anyhow::Result<()> {
    let maps = Maps::from_pins(&out.pin_path)?;
    let counters = maps.all_counters()?;
    if out.json {
        let interfaces: Vec<_> = counters
            .iter()
            .map(|c| {
                let reasons: serde_json::Map<String, serde_json::Value> = Reason::ALL
                    .iter()
                    .map(|r| {
                        let v = c.get(*r);
                        (r.name().to_string(), serde_json::json!({"packets": v.packets, "bytes": v.bytes}))
                    })
                    .collect();
                serde_json::json!({"ifindex": c.ifindex, "interface": c.interface, "verdicts": reasons})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"xdp": interfaces}))?
        );
        return Ok(());
    }
    if counters.is_empty() {
        println!("no packets seen by the XDP program yet");
    }
    for c in &counters {
        let name = c
            .interface
            .clone()
            .unwrap_or_else(|| format!("ifindex {}", c.ifindex));
        println!("XDP verdicts on {name}:");
        println!("  {:<12} {:>14} {:>16}", "REASON", "PACKETS", "BYTES");
        for r in Reason::ALL {
            let v = c.get(r);
            println!("  {:<12} {:>14} {:>16}", r.name(), v.packets, v.bytes);
        }
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
