//! The admin socket: a Unix socket (mode 0600, root or the daemon's user only)
//! answering one typed [`Request`] per connection with one [`Response`] line.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use super::Admin;
use crate::api::{Request, Response};
use crate::control::backends::Caller;

/// Removes the socket file when the daemon stops, if it is this process's to remove
/// (not when a successor took it over, nor when a take-over of it failed).
pub struct SocketGuard {
    socket: PathBuf,
    handover: Arc<crate::control::handover::Handover>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let owned = self
            .handover
            .owns_socket
            .load(std::sync::atomic::Ordering::SeqCst);
        if owned && !self.handover.is_handed_over() {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// Binds the socket at `path` and answers requests in the background.
pub async fn start(
    path: &Path,
    admin: Arc<Admin>,
    inherited: Option<std::os::unix::net::UnixListener>,
) -> anyhow::Result<SocketGuard> {
    let listener = match inherited {
        Some(l) => {
            l.set_nonblocking(true)?;
            UnixListener::from_std(l)?
        }
        None => {
            let l = bind_socket(path).await?;
            admin
                .handover
                .owns_socket
                .store(true, std::sync::atomic::Ordering::SeqCst);
            l
        }
    };
    *admin.handover.admin.lock().expect("handover lock") =
        Some(std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?);
    info!(socket = %path.display(), "admin socket ready (proxy stats, proxy top)");
    let stop = admin.handover.handed_over.clone();
    let guard = SocketGuard {
        socket: path.to_owned(),
        handover: admin.handover.clone(),
    };
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                // The successor answers from now on.
                _ = stop.cancelled() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let admin = admin.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, admin).await {
                            warn!(error = %e, "admin request failed");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(guard)
}

async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "admin socket {} is in use: is another proxy daemon running? (set admin.socket to run several)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn answer(stream: UnixStream, admin: Arc<Admin>) -> anyhow::Result<()> {
    // The socket is 0600; check the peer too, in case the file mode was changed.
    let cred = stream.peer_cred()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if cred.uid() != 0 && cred.uid() != me {
        anyhow::bail!("refused admin request from uid {}", cred.uid());
    }
    let mut line = String::new();
    let mut reader = BufReader::new(stream).take(64 * 1024);
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await??;
    // The peer sends nothing more before it reads the answer: nothing is buffered.
    let stream = reader.into_inner().into_inner();
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Handover { pid }) => {
            crate::control::handover::offer::serve(stream, &admin.daemon, &admin.handover, pid)
                .await;
            return Ok(());
        }
        Ok(request) => {
            let caller = Caller {
                uid: cred.uid(),
                pid: cred.pid(),
            };
            admin.answer(request, Some(caller)).await
        }
        Err(e) => Response::Error(format!("bad request {:?}: {e}", line.trim_end())),
    };
    let (_read, mut write) = stream.into_split();
    write
        .write_all(serde_json::to_string(&response)?.as_bytes())
        .await?;
    write.write_all(b"\n").await?;
    write.shutdown().await?;
    Ok(())
}
