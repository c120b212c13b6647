//! Watches the TLS files the configuration uses (certificates, keys, client CA, CRLs,
//! OCSP responses) so a change reloads the configuration like SIGHUP does. Parent
//! directories are watched (inotify), not the files: ACME clients such as certbot
//! replace a file by renaming a new one over it, which a watch on the old file misses.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;

/// Changes arriving within this window after the first are reloaded together (an
/// ACME client writes the certificate and the key one after the other).
const SETTLE: Duration = Duration::from_millis(500);

pub struct TlsFileWatcher {
    watcher: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<PathBuf>,
    dirs: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
}

/// Every TLS file `config` reads.
pub fn tls_files(config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for tls in config.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        for c in &tls.certificates {
            files.extend([c.cert.clone(), c.key.clone()]);
            files.extend(c.ocsp.clone());
        }
        if let Some(auth) = &tls.client_auth {
            files.push(auth.ca.clone());
            files.extend(auth.crl.iter().cloned());
        }
    }
    files
}

/// A path made absolute (against the current directory) without resolving links, so
/// it compares with the paths inotify reports for the watched directory.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl TlsFileWatcher {
    pub fn new() -> notify::Result<TlsFileWatcher> {
        let (tx, events) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            for path in event.paths {
                let _ = tx.send(path);
            }
        })?;
        Ok(TlsFileWatcher {
            watcher,
            events,
            dirs: HashSet::new(),
            files: HashSet::new(),
        })
    }

    /// Watches exactly the files of `config` (call again after every reload).
    pub fn watch(&mut self, config: &Config) {
        self.files = tls_files(config).iter().map(|f| absolute(f)).collect();
        let dirs: HashSet<PathBuf> = self
            .files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for dir in dirs.difference(&self.dirs) {
            if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch TLS files here; changes need SIGHUP");
            }
        }
        self.dirs = dirs;
    }

    /// Waits for a change to one of the watched files (then lets related changes
    /// settle); the first file that changed.
    pub async fn changed(&mut self) -> PathBuf {
        loop {
            let Some(path) = self.events.recv().await else {
                // The watcher is gone: never report a change again.
                std::future::pending::<()>().await;
                unreachable!();
            };
            if !self.files.contains(&path) {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            while self.events.try_recv().is_ok() {}
            return path;
        }
    }
}
