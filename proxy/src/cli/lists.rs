//! `proxy block|allow add|del|list`: edits the pinned maps directly, so it also works
//! while the daemon restarts. With `--fleet` the daemon publishes the edit to the
//! fleet store (it holds the connection, and queues while the store is away).

use super::{DaemonArgs, ListAction};
use crate::api::{List, ListEntry, Origin, Request, Response};
use crate::control::admin::client;
use crate::ebpf::maps::Maps;

pub fn list_command(list: List, action: ListAction) -> anyhow::Result<()> {
    let noun = list.noun();
    match action {
        ListAction::Add {
            fleet: true,
            cidr,
            ttl,
            reason,
            out,
            daemon,
        } => {
            let request = Request::FleetAdd {
                list,
                cidr,
                ttl_ms: ttl.map(|t| t.as_millis() as u64),
                reason,
            };
            report(request, &daemon, out.json)?;
        }
        ListAction::Del {
            fleet: true,
            cidr,
            out,
            daemon,
        } => report(Request::FleetDel { list, cidr }, &daemon, out.json)?,
        ListAction::Add {
            cidr,
            ttl,
            reason,
            out,
            ..
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
        ListAction::Del { cidr, out, .. } => {
            let mut maps = Maps::from_pins(&out.pin_path)?;
            if maps
                .exact(list, cidr)?
                .is_some_and(|e| e.origin == Origin::Fleet)
            {
                anyhow::bail!(
                    "{cidr} is a fleet entry (shared by every node): `proxy {} del --fleet {cidr}` removes it fleet-wide",
                    &noun[..5]
                );
            }
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

/// Sends a fleet edit to the daemon and prints what it did.
fn report(request: Request, daemon: &DaemonArgs, json: bool) -> anyhow::Result<()> {
    let Response::Done(what) = client::request(&daemon.socket, &request)? else {
        anyhow::bail!("the daemon answered something else than a confirmation");
    };
    if json {
        println!("{}", serde_json::json!({ "done": what }));
    } else {
        println!("{what} (published through the daemon's fleet store)");
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
        println!(
            "{:<43} {:<14} {:<7} {}",
            e.cidr.to_string(),
            expires,
            e.origin.label(),
            e.reason
        );
    }
}
