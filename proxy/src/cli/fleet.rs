//! `proxy fleet status`: the shared policy store as the daemon sees it, and the
//! fleet's members and forwarding table (connection steering).

use super::DaemonArgs;
use crate::api::{FleetPolicyStatus, Request, Response, SteeringStatus};
use crate::control::admin::client;

pub fn status_command(json: bool, daemon: &DaemonArgs) -> anyhow::Result<()> {
    let Response::FleetStatus(status) = client::request(&daemon.socket, &Request::FleetStatus)?
    else {
        anyhow::bail!("the daemon answered something else than the fleet status");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(())
}

fn print_status(s: &FleetPolicyStatus) {
    let state = if s.connected {
        "connected".to_string()
    } else {
        format!(
            "UNREACHABLE ({})",
            s.last_error.as_deref().unwrap_or("not connected yet")
        )
    };
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(s.since_unix);
    println!(
        "node {} · prefix {} · store {state} for {since}s",
        s.node, s.prefix
    );
    println!("endpoints: {}", s.endpoints.join(", "));
    if !s.members.is_empty() {
        println!("members:   {}", s.members.join("; "));
    }
    let lag = s
        .apply_lag_seconds
        .map_or_else(|| "-".to_string(), |l| format!("{:.3}s", l));
    println!(
        "applied revision {} · last apply lag {lag} · {} writes pending · {} malformed entries skipped",
        s.revision, s.pending, s.bad_entries
    );
    println!(
        "entries: {} block, {} allow ({} stood in for by a local entry at the same prefix)",
        s.block_entries, s.allow_entries, s.hidden_entries
    );
    if !s.by_origin.is_empty() {
        println!("{:<24} {:>8} {:>8}", "ORIGIN", "BLOCK", "ALLOW");
        for o in &s.by_origin {
            println!("{:<24} {:>8} {:>8}", o.origin, o.block, o.allow);
        }
    }
    if let Some(steering) = &s.steering {
        print_steering(steering);
    }
}

fn print_steering(s: &SteeringStatus) {
    let generation = |g: Option<u64>| g.map_or_else(|| "none".to_string(), |g| g.to_string());
    println!();
    println!(
        "steering: node {} at {}:{} · {} · store {}",
        s.node,
        s.address,
        s.port,
        s.state,
        if s.connected {
            "connected".to_string()
        } else {
            format!(
                "UNREACHABLE ({})",
                s.last_error.as_deref().unwrap_or("not yet")
            )
        }
    );
    println!(
        "table: generation {} in use, {} installed beside it, {} in the store ({}); {} rows, {} moved at the last switch",
        generation(s.active_generation),
        generation(s.installed_generation),
        generation(s.table_generation),
        s.last_change.as_deref().unwrap_or("-"),
        s.rows,
        s.rows_moved
            .map_or_else(|| "-".to_string(), |m| m.to_string()),
    );
    println!(
        "this node: {} rows as primary, {} as secondary",
        s.rows_primary, s.rows_secondary
    );
    if let Some(w) = &s.waiting {
        println!("waiting: {w}");
    }
    if s.bad_entries > 0 {
        println!("{} malformed keys skipped", s.bad_entries);
    }
    println!(
        "{:<20} {:<28} {:<9} {:>9} {:>8} {:>9} {:>11}",
        "MEMBER", "ADDRESS", "STATE", "INSTALLED", "PRIMARY", "SECONDARY", "LAST PROBE"
    );
    for m in &s.members {
        println!(
            "{:<20} {:<28} {:<9} {:>9} {:>8} {:>9} {:>11}",
            m.node,
            format!("{}:{}", m.address, m.port),
            m.state,
            generation(m.installed),
            m.rows_primary,
            m.rows_secondary,
            m.last_probe_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms ago")),
        );
    }
}
