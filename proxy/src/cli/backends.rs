//! `proxy backend list` and `proxy backend set`: backends under the operator's hand,
//! through the admin socket (typed [`crate::api`]).

use super::{BackendAction, BackendSetting, StateArg};
use crate::api::{BackendChange, BackendState, PoolStats, Request, Response};
use crate::control::admin::client;

pub fn backend_command(action: BackendAction) -> anyhow::Result<()> {
    match action {
        BackendAction::List { json, daemon } => {
            let Response::Backends(pools) = client::request(&daemon.socket, &Request::Backends)?
            else {
                anyhow::bail!("the daemon answered a backend list with something else");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&pools)?);
            } else {
                print_backends(&pools);
            }
            Ok(())
        }
        BackendAction::Set {
            pool,
            address,
            setting,
        } => {
            let (change, daemon) = match setting {
                BackendSetting::State {
                    state,
                    close,
                    daemon,
                } => {
                    let state = match state {
                        StateArg::Ready => BackendState::Ready,
                        StateArg::Drain => BackendState::Drain,
                        StateArg::Maint => BackendState::Maint,
                    };
                    (BackendChange::State { state, close }, daemon)
                }
                BackendSetting::Weight { weight, daemon } => {
                    (BackendChange::Weight { weight }, daemon)
                }
            };
            let request = Request::SetBackend {
                pool,
                address,
                change,
            };
            match client::request(&daemon.socket, &request)? {
                Response::Done(done) => println!("{done}"),
                other => anyhow::bail!("the daemon answered a backend change with {other:?}"),
            }
            Ok(())
        }
    }
}

/// One table of every pool's backends.
pub fn print_backends(pools: &[PoolStats]) {
    println!(
        "{:<16} {:<28} {:<6} {:<16} {:<18} {:>8} {:<10} CHANGED BY",
        "POOL", "BACKEND", "HEALTH", "STATE", "WEIGHT", "ACTIVE", "RAMP"
    );
    for p in pools {
        for b in &p.backends {
            let health = if b.healthy { "up" } else { "DOWN" };
            let state = format!("{} ({})", b.state.label(), b.state_origin.label());
            let weight = format!("{} ({})", b.weight, b.weight_origin.label());
            let ramp = b
                .slow_start_percent
                .map_or_else(|| "-".to_string(), |p| format!("{p} %"));
            let changed = b.changed.as_ref().map_or_else(
                || "-".to_string(),
                |c| format!("{} at {}", c.by, time(c.at_unix)),
            );
            println!(
                "{:<16} {:<28} {:<6} {:<16} {:<18} {:>8} {:<10} {changed}",
                p.name,
                b.address.to_string(),
                health,
                state,
                weight,
                b.active_connections,
                ramp
            );
        }
    }
}

/// A Unix time as `2026-12-07T10:00:00Z`.
pub fn time(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}
