//! `proxy fleet status`: the shared policy store as the daemon sees it.

use super::DaemonArgs;
use crate::api::{FleetPolicyStatus, Request, Response};
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
}
