//! The new process's side of an upgrade (`proxy run --takeover`): receives the
//! running daemon's sockets, and commits once it serves on them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::offer::Reply;
use super::{COMMIT, STOPPING, fds};
use crate::api::Request;

/// What the running daemon handed over.
pub struct Inherited {
    pub predecessor: u32,
    /// Listening sockets by listener name, with their address.
    pub listeners: HashMap<String, (SocketAddr, std::net::TcpListener)>,
    pub admin: Option<UnixListener>,
    pub metrics: Option<(SocketAddr, std::net::TcpListener)>,
    /// The old process's stdout and stderr (where its logs went).
    pub stdio: (OwnedFd, OwnedFd),
    pub sysctls: Vec<(PathBuf, String)>,
    /// Backends' runtime settings.
    pub backends: Vec<crate::api::BackendRuntime>,
    /// After the commit: print the outcome and log where the old process logged.
    pub adopt_stdio: bool,
    connection: UnixStream,
}

/// Asks the daemon at `socket` for its sockets.
pub fn request(socket: &Path) -> anyhow::Result<Inherited> {
    let connection = UnixStream::connect(socket).with_context(|| {
        format!(
            "--takeover: cannot reach the running daemon at {} (admin.socket); start without --takeover if none runs",
            socket.display()
        )
    })?;
    connection.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = Request::Handover {
        pid: std::process::id(),
    };
    (&connection).write_all(format!("{}\n", serde_json::to_string(&request)?).as_bytes())?;
    let (message, received) = fds::receive(&connection)?;
    anyhow::ensure!(
        !message.is_empty(),
        "the running daemon closed the connection (is it an older version without upgrades?)"
    );
    let offer = match serde_json::from_slice::<Reply>(&message) {
        Ok(Reply::Offer(offer)) => offer,
        Ok(Reply::Refused(why)) => anyhow::bail!("the running daemon refused the upgrade: {why}"),
        Err(e) => anyhow::bail!("the running daemon's answer is not an offer: {e}"),
    };
    let expected = offer.listeners.len() + 1 + usize::from(offer.metrics.is_some()) + 2;
    anyhow::ensure!(
        received.len() == expected,
        "expected {expected} descriptors, received {}",
        received.len()
    );
    let mut fds = received.into_iter();
    let mut next = || fds.next().expect("counted above");
    let listeners = offer
        .listeners
        .iter()
        .map(|l| {
            let socket = std::net::TcpListener::from(next());
            (l.name.clone(), (l.bind, socket))
        })
        .collect();
    let admin = Some(UnixListener::from(next()));
    let metrics = offer
        .metrics
        .map(|addr| (addr, std::net::TcpListener::from(next())));
    let stdio = (next(), next());
    Ok(Inherited {
        predecessor: offer.pid,
        listeners,
        admin,
        metrics,
        stdio,
        sysctls: offer.sysctls,
        backends: offer.backends,
        adopt_stdio: false,
        connection,
    })
}

impl Inherited {
    /// Tells the old process that this one serves; returns once it stops accepting.
    pub fn commit(&self) -> anyhow::Result<()> {
        (&self.connection).write_all(format!("{COMMIT}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(&self.connection)
            .read_line(&mut line)
            .context("waiting for the old process to stop accepting")?;
        anyhow::ensure!(
            line.trim() == STOPPING,
            "the old process did not confirm ({:?})",
            line.trim()
        );
        Ok(())
    }

    /// Writes this process's logs where the old process wrote them.
    pub fn adopt_stdio(&self) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd;
        for (from, to) in [(&self.stdio.0, 1), (&self.stdio.1, 2)] {
            // SAFETY: dup2 onto this process's own stdout/stderr from a descriptor we own.
            if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
                return Err(std::io::Error::last_os_error()).context("dup2 onto stdout/stderr");
            }
        }
        Ok(())
    }
}
