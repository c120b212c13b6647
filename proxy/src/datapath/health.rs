//! Active health checks: a TCP connect to each backend every `interval`, with
//! `timeout` (none while the operator holds it in maintenance); results feed [`Backend::record`] together with the passive results of
//! real traffic (see `connection.rs`). Pools that speak the PROXY protocol send a
//! LOCAL (v2) / UNKNOWN (v1) header on each check, so the backend logs no error.
//! Pools with `[pool.tls]` complete a TLS handshake too (verification included), and
//! wait a moment for the alert a TLS 1.3 server sends after the handshake when it
//! refuses the client certificate.

use std::sync::Arc;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, interval, timeout};

use super::balance::{Backend, Pool, Source};
use super::proxy_protocol;
use super::upstream_tls;

/// The running checks of one pool; dropping it stops them.
pub struct HealthChecks {
    _tasks: JoinSet<()>,
}

/// Starts checking every backend of `pool` (nothing if checks are disabled): one
/// loop per backend, started and stopped as the pool's backends change (DNS).
pub fn start(pool: &Arc<Pool>) -> HealthChecks {
    let mut tasks = JoinSet::new();
    if pool.settings.health.enabled {
        tasks.spawn(follow_members(pool.clone()));
    }
    HealthChecks { _tasks: tasks }
}

/// Keeps one check loop per current backend, looking at the members every
/// `interval` (a backend found by DNS is checked from the next look on).
async fn follow_members(pool: Arc<Pool>) {
    let header = proxy_protocol::health_check(pool.settings.proxy_protocol);
    let mut loops = std::collections::HashMap::new();
    let mut tasks = JoinSet::new();
    let mut tick = interval(pool.settings.health.interval);
    loop {
        tick.tick().await;
        let members = pool.backends();
        loops.retain(|address, handle: &mut tokio::task::AbortHandle| {
            let stays = members.iter().any(|b| b.address == *address);
            if !stays {
                handle.abort();
            }
            stays
        });
        for backend in members {
            if !loops.contains_key(&backend.address) {
                let address = backend.address;
                let handle = tasks.spawn(check_loop(pool.clone(), backend, header.clone()));
                loops.insert(address, handle);
            }
        }
        // Reap finished (aborted) loops.
        while tasks.try_join_next().is_some() {}
    }
}

async fn check_loop(pool: Arc<Pool>, backend: Arc<Backend>, header: Option<Vec<u8>>) {
    let rules = &pool.settings.health;
    let mut tick = interval(rules.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if backend.in_maintenance() {
            continue;
        }
        let check = check(&pool, &backend, header.as_deref());
        let result = match timeout(rules.timeout, check).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", rules.timeout)),
        };
        match result {
            Ok(()) => backend.record(true, Source::Check, rules, ""),
            Err(e) => backend.record(false, Source::Check, rules, &e),
        }
    }
}

/// Connects, sends the PROXY header if the pool uses one, completes a TLS handshake
/// for a TLS pool, and closes.
async fn check(pool: &Pool, backend: &Backend, header: Option<&[u8]>) -> Result<(), String> {
    let mut stream = TcpStream::connect(backend.address)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(header) = header {
        stream.write_all(header).await.map_err(|e| e.to_string())?;
    }
    let Some(tls) = &pool.tls else {
        if header.is_some() {
            let _ = stream.shutdown().await;
        }
        return Ok(());
    };
    let failed = |e: std::io::Error| {
        let reason = upstream_tls::failure_reason(&e);
        backend.metrics.tls_failed(reason);
        format!("TLS handshake failed ({reason}): {e}")
    };
    let mut stream = tls
        .connect(backend.address, backend.host(), stream)
        .await
        .map_err(failed)?;
    // A refused client certificate (TLS 1.3) arrives as an alert right after; some
    // servers (NGINX's stream module) just close the connection instead.
    let mut byte = [0u8; 1];
    match timeout(ALERT_WAIT, stream.read(&mut byte)).await {
        Ok(Err(e)) => return Err(failed(e)),
        Ok(Ok(0)) => {
            backend.metrics.tls_failed("closed");
            return Err(
                "TLS handshake failed (closed): the backend closed the connection \
                        right after the handshake (does it refuse the client certificate? \
                        see its log)"
                    .into(),
            );
        }
        Ok(Ok(_)) | Err(_) => {}
    }
    let _ = stream.shutdown().await;
    Ok(())
}

/// How long a TLS check waits after the handshake for the server to refuse it.
const ALERT_WAIT: Duration = Duration::from_millis(200);
