//! The `proxy` binary under test, run inside a namespace with its log in a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Netns, Proc};

/// The `proxy` binary: `$PROXY_BIN`, else the one cargo built next to the running
/// executable (integration tests run from `target/<profile>/deps`, examples from
/// `target/<profile>/examples`).
pub fn proxy_bin() -> String {
    try_proxy_bin().unwrap_or_else(|e| panic!("{e:#}"))
}

pub fn try_proxy_bin() -> anyhow::Result<String> {
    if let Ok(bin) = std::env::var("PROXY_BIN") {
        return Ok(bin);
    }
    let exe = std::env::current_exe()?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("proxy"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no proxy binary at {candidates:?}: build it (cargo build -p proxy) or set PROXY_BIN"
            )
        })
}

/// Runs `proxy <args>` inside `ns`; its stdout (panics on failure).
pub fn cli(ns: &Netns, args: &str) -> String {
    ns.sh(&format!("{} {args}", proxy_bin()))
}

/// Each daemon gets its own admin socket in `dir` unless the configuration names one
/// (the default path is host-wide, and tests run side by side).
fn own_admin_socket(config: &str, dir: &Path) -> anyhow::Result<String> {
    let mut table: toml::Table = config.parse()?;
    let admin = table
        .entry("admin")
        .or_insert_with(|| toml::Table::new().into());
    let default = proxy_schema::config::admin::AdminSection::default().socket;
    if let Some(admin) = admin.as_table_mut() {
        let named = admin
            .get("socket")
            .and_then(|s| s.as_str())
            .is_some_and(|s| Path::new(s) != default);
        if !named {
            let socket = dir.join("admin.sock").display().to_string();
            admin.insert("socket".into(), socket.into());
        }
    }
    Ok(table.to_string())
}

pub struct ProxyD {
    pub proc: Option<Proc>,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl ProxyD {
    /// Like [`ProxyD::try_start`]; panics on failure.
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> ProxyD {
        ProxyD::try_start(ns, dir, config).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Writes `config` to `dir/proxy.toml` and starts `proxy run` (the binary of
    /// [`try_proxy_bin`]); waits until it reports that it is running.
    pub fn try_start(ns: &Netns, dir: &Path, config: &str) -> anyhow::Result<ProxyD> {
        ProxyD::try_start_bin(&try_proxy_bin()?, ns, dir, config)
    }

    /// Like [`ProxyD::try_start`] with the binary `bin`.
    pub fn try_start_bin(
        bin: &str,
        ns: &Netns,
        dir: &Path,
        config: &str,
    ) -> anyhow::Result<ProxyD> {
        let path = dir.join("proxy.toml");
        std::fs::write(&path, own_admin_socket(config, dir)?)?;
        let log = dir.join("proxy.log");
        // A restart must not find the previous run's "running" line.
        let _ = std::fs::remove_file(&log);
        let cmd = format!(
            "env NO_COLOR=1 RUST_LOG=${{PROXY_TEST_LOG:-info}} {} --log-format json run --config {} 2>{}",
            bin,
            path.display(),
            log.display()
        );
        let proc = ns.start(&cmd)?;
        let p = ProxyD {
            proc: Some(proc),
            config: path,
            log,
        };
        p.try_wait_log("proxy to start", "running; SIGHUP reloads")?;
        Ok(p)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (10 s at most) until the log contains `needle`.
    pub fn try_wait_log(&self, what: &str, needle: &str) -> anyhow::Result<()> {
        crate::try_wait_for(what, Duration::from_secs(10), || {
            self.log().contains(needle).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e} ({needle:?} in the proxy log):\n{}", self.log()))
    }

    /// Like [`ProxyD::try_wait_log`]; panics on the timeout.
    pub fn wait_log(&self, what: &str, needle: &str) {
        self.try_wait_log(what, needle)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Number of log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Stops the daemon (SIGTERM, SIGKILL after 5 s); its exit code. The log stays.
    pub fn stop(&mut self) -> Option<i32> {
        self.proc.take().and_then(|p| p.stop().2)
    }

    pub fn signal(&self, sig: &str) {
        self.proc.as_ref().expect("running").signal(sig);
    }

    /// Rewrites the config file (then `signal("HUP")` to reload it).
    pub fn write_config(&self, config: &str) {
        let dir = self
            .config
            .parent()
            .expect("the config file is in a directory");
        let config = own_admin_socket(config, dir).unwrap_or_else(|e| panic!("{e:#}"));
        std::fs::write(&self.config, config).unwrap();
    }
}
