//! The running daemon's side of an upgrade: answers a `handover` request on the
//! admin socket with its sockets, then waits for the new process to commit.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{COMMIT, Handover, Offer, OfferedListener, STOPPING, fds};
use crate::control::daemon::{Daemon, ForSuccessor};

/// How long the new process may take from the offer to its commit.
const COMMIT_WITHIN: Duration = Duration::from_secs(120);

/// The first answer to a `handover` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Offer(Offer),
    Refused(String),
}

/// Serves one `handover` request from process `new_pid` on `stream` (the admin
/// socket passes it on): `daemon` hands its sockets over, `h` records where it stands.
pub async fn serve(stream: tokio::net::UnixStream, daemon: &Daemon, h: &Handover, new_pid: u32) {
    let stream = match stream.into_std().and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => return warn!(error = %e, "upgrade request: cannot use the connection"),
    };
    let previous = *h.predecessor.lock().expect("handover lock");
    if let Some(pid) = previous.filter(|p| process_alive(*p)) {
        return refuse(
            stream,
            format!(
                "the process this daemon took over from (pid {pid}) is still draining its \
                 connections: upgrade again once it has exited (at the latest after timeouts.drain)"
            ),
        );
    }
    if h.is_handed_over() {
        return refuse(
            stream,
            "this daemon has already handed over and is draining".into(),
        );
    }
    if h.offering.swap(true, Ordering::SeqCst) {
        return refuse(stream, "another upgrade is in progress".into());
    }
    info!(new_pid, "upgrade: a new process asks to take over");
    let parts = match daemon.prepare_handover().await {
        Ok(parts) => parts,
        Err(e) => {
            daemon.abort_handover();
            h.offering.store(false, Ordering::SeqCst);
            return refuse(stream, format!("{e:#}"));
        }
    };
    let result = offer_and_wait(stream, daemon, h, parts).await;
    match result {
        Ok(()) => {
            info!(
                new_pid,
                "upgrade: the new process serves; stopping accepting and draining"
            );
            daemon.hand_over();
            h.handed_over.cancel();
            notify_service_manager(new_pid);
        }
        Err(e) => {
            warn!(
                new_pid,
                error = format!("{e:#}"),
                "upgrade aborted before the new process committed; this process keeps serving"
            );
            daemon.abort_handover();
        }
    }
    h.offering.store(false, Ordering::SeqCst);
}

/// Sends the offer with every descriptor; waits for the commit line.
async fn offer_and_wait(
    stream: std::os::unix::net::UnixStream,
    daemon: &Daemon,
    h: &Handover,
    parts: ForSuccessor,
) -> anyhow::Result<()> {
    let ForSuccessor {
        listeners,
        backends,
    } = parts;
    let admin_fd = h
        .admin
        .lock()
        .expect("handover lock")
        .as_ref()
        .map(|f| f.try_clone())
        .transpose()?
        .context("the admin socket is not registered")?;
    let metrics = match h.metrics.lock().expect("handover lock").as_ref() {
        Some((addr, fd)) => Some((*addr, fd.try_clone()?)),
        None => None,
    };
    let offer = Offer {
        pid: std::process::id(),
        listeners: listeners
            .iter()
            .map(|(name, bind, _)| OfferedListener {
                name: name.clone(),
                bind: *bind,
            })
            .collect(),
        metrics: metrics.as_ref().map(|(a, _)| *a),
        sysctls: daemon.handover_sysctls(),
        backends,
    };
    let mut owned: Vec<OwnedFd> = listeners.into_iter().map(|(_, _, fd)| fd).collect();
    owned.push(admin_fd);
    if let Some((_, fd)) = metrics {
        owned.push(fd);
    }
    let runtime_backends = offer.backends.len();
    let message = serde_json::to_vec(&Reply::Offer(offer))?;
    anyhow::ensure!(
        message.len() <= fds::MAX_MESSAGE,
        "the hand-over does not fit in one message ({} bytes, at most {}): {runtime_backends} \
         backends have runtime settings; return some to the file (`proxy backend set ... state \
         ready`, or the file's weight) and upgrade again",
        message.len(),
        fds::MAX_MESSAGE
    );
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut raw: Vec<RawFd> = owned.iter().map(|f| f.as_raw_fd()).collect();
        raw.extend([1, 2]);
        fds::send(&stream, &message, &raw)?;
        stream.set_read_timeout(Some(COMMIT_WITHIN))?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .context("waiting for the new process")?;
        match line.trim() {
            COMMIT => {
                (&stream).write_all(format!("{STOPPING}\n").as_bytes())?;
                Ok(())
            }
            "" => anyhow::bail!("the new process went away before it committed"),
            other => anyhow::bail!("the new process gave up: {other}"),
        }
    })
    .await
    .context("hand-over task")?
}

fn refuse(stream: std::os::unix::net::UnixStream, why: String) {
    warn!(reason = why, "upgrade refused");
    if let Ok(message) = serde_json::to_vec(&Reply::Refused(why)) {
        let _ = fds::send(&stream, &message, &[]);
    }
}

/// Does `pid` still run? An exited process its parent has not reaped yet (a zombie)
/// does not.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // "pid (comm) S ...": the state follows the last parenthesis.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
    }
}

/// Under systemd (`Type=notify`, `NotifyAccess=all`): the new process is the main one.
fn notify_service_manager(new_pid: u32) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let state = [sd_notify::NotifyState::MainPid(new_pid)];
    if let Err(e) = sd_notify::notify(&state) {
        warn!(error = %e, "cannot tell systemd the new main process");
    }
}
