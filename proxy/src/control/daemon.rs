//! The daemon's lifecycle: start, SIGHUP reload, SIGTERM/SIGINT drain.
//!
//! [`Daemon`] owns the current configuration (`ArcSwap<Config>`), the running
//! listeners, the pools and their health checks. Start, reload and take-over go
//! through the same steps, all or nothing:
//!
//! 1. Prepare, without touching what runs: the data path ([`prepare`]: certificates,
//!    Maglev tables), the listening sockets the configuration adds, and every
//!    [`Subsystem`] (the XDP program's maps, BGP, fleet policy, auto-blocking).
//!    Any error rejects the configuration and changes nothing anywhere.
//! 2. Commit: every subsystem, then the data path switches listeners and pools over.
//!
//! Connections keep the listener state they were accepted with, so a reload never
//! cuts them, and certificates are swapped for new handshakes only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::backends::{self, Caller};
use super::subsystem::{Commit, Subsystem};
use super::tls_files::TlsFileWatcher;
use crate::api::{BackendChange, BackendRuntime, PoolStats, Stats};
use crate::config::{self, Config, ConfigError, ConfigIssue, KeyPath};
use crate::datapath::balance::Pool;
use crate::datapath::events::{NoopObserver, SourceObserver};
use crate::datapath::health::{self, HealthChecks};
use crate::datapath::limits::OpenCount;
use crate::datapath::listener::{self, RunningListener};
use crate::datapath::ocsp;
use crate::datapath::routes::Routes;
use crate::datapath::state::{ListenerState, Shared, TlsListener};
use crate::datapath::tls::{self, SessionState};
use crate::datapath::upstream_tls::UpstreamTls;
use crate::metrics::Metrics;

/// What an upgrade hands to the successor from the data path.
pub struct ForSuccessor {
    /// Listening sockets (second descriptors) by name and address.
    pub listeners: Vec<(String, std::net::SocketAddr, std::os::fd::OwnedFd)>,
    /// Backends' runtime settings.
    pub backends: Vec<BackendRuntime>,
}

/// Everything a configuration needs, built but not yet running.
pub struct Prepared {
    pub config: Arc<Config>,
    pools: HashMap<String, Arc<Pool>>,
    listeners: Vec<ListenerState>,
    sessions: HashMap<String, SessionState>,
}

/// Builds pools and TLS settings for `config`. Backends and TLS session state that
/// `previous` already has are reused; new backends take the runtime settings
/// `handed_over` (by the process this one took over from) has for them. Errors name
/// the config key (and line).
pub fn prepare(
    config: Config,
    metrics: &Metrics,
    previous_pools: &HashMap<String, Arc<Pool>>,
    previous_sessions: &HashMap<String, SessionState>,
    handed_over: &[BackendRuntime],
) -> Result<Prepared, ConfigError> {
    let locate = |issue: ConfigIssue| config.locate(issue);
    // TLS first: it reads files and fails most often, and creates no metric series.
    let mut tls_listeners = Vec::new();
    let mut sessions = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let Some(t) = l.tls.as_ref().filter(|_| l.terminates()) else {
            tls_listeners.push(None);
            continue;
        };
        let at = KeyPath::root().key("listener").index(i).key("tls");
        let mut session = previous_sessions.get(&l.name).cloned().unwrap_or_default();
        let mut ocsp_problem = |path: &std::path::Path, problem: ocsp::OcspProblem| {
            tracing::warn!(
                listener = l.name,
                file = %path.display(),
                reason = problem.label(),
                "OCSP response not stapled: {problem}; the certificate is served without it"
            );
            metrics.ocsp_not_stapled(&l.name, problem.label());
        };
        let configs =
            tls::server_config(t, &at, &mut session, &mut ocsp_problem).map_err(locate)?;
        check_route_names(l, &configs, &KeyPath::root().key("listener").index(i))
            .map_err(locate)?;
        sessions.insert(l.name.clone(), session);
        tls_listeners.push(Some(TlsListener {
            acceptor: TlsAcceptor::from(configs.main),
            by_name: configs.by_name,
        }));
    }
    // TLS to backends: files read before any metric series exists.
    let mut upstream_tls = Vec::new();
    for (i, p) in config.pools.iter().enumerate() {
        let Some(settings) = &p.tls else {
            upstream_tls.push(None);
            continue;
        };
        let at = KeyPath::root().key("pool").index(i).key("tls");
        let previous = previous_pools.get(&p.name).and_then(|p| p.tls.as_ref());
        upstream_tls.push(Some(
            UpstreamTls::build(settings, &at, previous).map_err(locate)?,
        ));
        if settings.insecure_skip_verify {
            tracing::warn!(
                pool = p.name,
                "pool.tls.insecure_skip_verify = true: the backends' certificates are not \
                 verified; anyone on the path to them can read and change the traffic"
            );
        }
    }
    let mut pools = HashMap::new();
    for ((i, p), tls) in config.pools.iter().enumerate().zip(upstream_tls) {
        let previous = previous_pools.get(&p.name).map(|p| &**p);
        match Pool::build(p, previous, handed_over, metrics) {
            Ok(pool) => pools.insert(p.name.clone(), Arc::new(pool.with_tls(tls))),
            Err(e) => {
                forget_backends(metrics, &pools, previous_pools);
                let at = KeyPath::root().key("pool").index(i);
                return Err(locate(ConfigIssue::new(at, e.to_string())));
            }
        };
    }
    let mut listeners = Vec::new();
    for (l, tls) in config.listeners.iter().zip(tls_listeners) {
        let Some(pool) = pools.get(&l.pool).cloned() else {
            unreachable!(
                "validate() checked that listener {:?}'s pool exists",
                l.name
            );
        };
        let pool_of = |name: &str| pools[name].clone();
        listeners.push(ListenerState {
            settings: l.clone(),
            pool,
            tls,
            routes: Routes::build(l, pool_of, metrics),
            handshake_timeout: l
                .tls
                .as_ref()
                .map_or(config::default_handshake_timeout(), |t| t.handshake_timeout),
            global_max_connections: config.limits.max_connections,
            idle_timeout: config.timeouts.idle,
            handshake_errors_per_second: config.log.handshake_errors_per_second,
        });
    }
    Ok(Prepared {
        config: Arc::new(config),
        pools,
        listeners,
        sessions,
    })
}

/// Against the certificates the listener loaded: every name of a terminated route is
/// served by one, and no passthrough route takes a name whose certificate checks
/// client certificates (client_auth).
fn check_route_names(
    l: &config::Listener,
    certs: &tls::TlsConfigs,
    at: &KeyPath,
) -> Result<(), ConfigIssue> {
    for (i, r) in l.routes.iter().enumerate() {
        let mode = l.route_tls(Some(r));
        for (j, pattern) in r.sni.iter().enumerate() {
            let here = at.key("route").index(i).key("sni").index(j);
            let covered = |names: &[String]| names.iter().any(|n| tls::name_covers(n, pattern));
            if mode == config::RouteTls::Terminate && !covered(&certs.served) {
                return Err(ConfigIssue::new(
                    here,
                    format!(
                        "no certificate of this listener serves {pattern:?} (they serve {:?}): \
                         add one for it, or pass the route through (tls = \"passthrough\")",
                        certs.served
                    ),
                ));
            }
            if mode == config::RouteTls::Passthrough && covered(&certs.checked) {
                return Err(ConfigIssue::new(
                    here,
                    format!(
                        "{pattern:?} is served by a certificate with client_auth, but this \
                         route passes its TLS through, where no client certificate is checked"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// (listener, route) of every route of `config`, default routes included.
fn route_names(config: &Config) -> std::collections::BTreeSet<(String, String)> {
    config
        .listeners
        .iter()
        .filter(|l| !l.routes.is_empty())
        .flat_map(|l| {
            let names = l.routes.iter().map(|r| r.name().to_owned());
            let all = names.chain([crate::datapath::routes::DEFAULT_ROUTE.to_owned()]);
            all.map(|r| (l.name.clone(), r))
        })
        .collect()
}

/// Removes the metric series of backends in `pools` that `keep` does not share.
fn forget_backends(
    metrics: &Metrics,
    pools: &HashMap<String, Arc<Pool>>,
    keep: &HashMap<String, Arc<Pool>>,
) {
    for (name, pool) in pools {
        for b in pool.backends() {
            let kept = keep
                .get(name)
                .is_some_and(|k| k.backends().iter().any(|o| Arc::ptr_eq(o, &b)));
            if !kept {
                metrics.remove_backend(name, &b.address.to_string());
            }
        }
    }
}

/// `proxy check-config`: parses, validates and loads every certificate.
pub fn check_config(path: &Path) -> Result<Config, ConfigError> {
    let config = config::load(path)?;
    let prepared = prepare(
        config,
        &Metrics::new(),
        &HashMap::new(),
        &HashMap::new(),
        &[],
    )?;
    Ok((*prepared.config).clone())
}

struct Running {
    listeners: HashMap<String, RunningListener>,
    pools: HashMap<String, Arc<Pool>>,
    health: Vec<HealthChecks>,
    /// The DNS lookups of pools with DNS backends.
    discovery: Vec<super::discovery::PoolDiscovery>,
    sessions: HashMap<String, SessionState>,
}

pub struct Daemon {
    config_path: PathBuf,
    config: ArcSwap<Config>,
    shared: Arc<Shared>,
    running: Mutex<Running>,
    subsystems: Vec<Box<dyn Subsystem>>,
    /// Listening sockets received from the process this one takes over from, by
    /// listener name: used instead of binding.
    inherited: std::sync::Mutex<HashMap<String, (std::net::SocketAddr, std::net::TcpListener)>>,
    /// Backends' runtime settings from the process this one takes over from, for
    /// the first configuration.
    backends_handed_over: std::sync::Mutex<Vec<BackendRuntime>>,
    /// An upgrade is being offered: runtime backend changes are refused (the offer
    /// carries the settings as they were).
    offering: std::sync::atomic::AtomicBool,
    /// Set once a successor committed: stop accepting and drain.
    handed_over: tokio_util::sync::CancellationToken,
}

impl Daemon {
    /// A daemon for the configuration file at `config_path` (re-read by each
    /// [`Daemon::reload`]), with its own metrics and no source observer.
    pub fn new(config_path: &Path) -> Daemon {
        Daemon::with(
            config_path,
            Arc::new(Metrics::new()),
            Arc::new(NoopObserver),
        )
    }

    /// A daemon that counts into `metrics` and reports per-source events to `observer`.
    pub fn with(
        config_path: &Path,
        metrics: Arc<Metrics>,
        observer: Arc<dyn SourceObserver>,
    ) -> Daemon {
        Daemon {
            config_path: config_path.to_owned(),
            config: ArcSwap::from_pointee(Config::default()),
            shared: Arc::new(Shared {
                metrics,
                observer,
                connections: Arc::new(OpenCount::default()),
                tracker: TaskTracker::new(),
            }),
            running: Mutex::new(Running {
                listeners: HashMap::new(),
                pools: HashMap::new(),
                health: Vec::new(),
                discovery: Vec::new(),
                sessions: HashMap::new(),
            }),
            subsystems: Vec::new(),
            inherited: std::sync::Mutex::new(HashMap::new()),
            backends_handed_over: std::sync::Mutex::new(Vec::new()),
            offering: std::sync::atomic::AtomicBool::new(false),
            handed_over: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Listening sockets a predecessor handed over; listeners with the same name and
    /// address use them instead of binding.
    pub fn inherit(&self, sockets: HashMap<String, (std::net::SocketAddr, std::net::TcpListener)>) {
        *self.inherited.lock().expect("inherited lock") = sockets;
    }

    /// Backends' runtime settings handed over by the process this one takes over
    /// from; the first configuration applies them.
    pub fn inherit_backends(&self, backends: Vec<BackendRuntime>) {
        *self.backends_handed_over.lock().expect("handed-over lock") = backends;
    }

    /// An upgrade starts: each subsystem prepares; what the data path hands over.
    /// From here until the upgrade ends, runtime backend changes are refused.
    pub async fn prepare_handover(&self) -> anyhow::Result<ForSuccessor> {
        for s in &self.subsystems {
            s.prepare_handover()
                .with_context(|| format!("subsystem {}", s.name()))?;
        }
        let running = self.running.lock().await;
        self.offering
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let listeners = running
            .listeners
            .iter()
            .map(|(name, r)| Ok((name.clone(), r.bind, r.socket.try_clone()?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(ForSuccessor {
            listeners,
            backends: backends::runtime_state(&running.pools),
        })
    }

    /// The upgrade failed before the successor committed.
    pub fn abort_handover(&self) {
        for s in &self.subsystems {
            s.abort_handover();
        }
        self.offering
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sysctls to restore, for the successor.
    pub fn handover_sysctls(&self) -> Vec<(PathBuf, String)> {
        self.subsystems
            .iter()
            .flat_map(|s| s.handover_sysctls())
            .collect()
    }

    /// The successor committed: leave it what it took over, then drain and exit.
    pub fn hand_over(&self) {
        for s in &self.subsystems {
            s.hand_over();
        }
        self.handed_over.cancel();
    }

    /// In the successor, once committed.
    pub fn finish_takeover(&self) {
        for s in &self.subsystems {
            s.finish_takeover();
        }
        let unused: Vec<String> = self
            .inherited
            .lock()
            .expect("inherited lock")
            .drain()
            .map(|(name, (bind, _))| format!("{name} ({bind})"))
            .collect();
        if !unused.is_empty() {
            tracing::info!(
                listeners = unused.join(", "),
                "handed-over sockets of listeners the new configuration does not have: closed"
            );
        }
    }

    /// Registers a subsystem; call before [`Daemon::start`].
    pub fn add_subsystem(&mut self, subsystem: Box<dyn Subsystem>) {
        self.subsystems.push(subsystem);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Changes one backend's state or weight at runtime (`proxy backend set`); the
    /// answer for the operator, or why the change is refused.
    pub async fn set_backend(
        &self,
        pool: &str,
        address: std::net::SocketAddr,
        change: BackendChange,
        caller: &Caller,
    ) -> Result<String, String> {
        // Under the lock a reload and an upgrade's snapshot take too: none of them
        // can miss the change.
        let running = self.running.lock().await;
        if self.offering.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(
                "an upgrade is in progress (the new process takes the backends' \
                        runtime state as it was): try again once `proxy upgrade` has finished"
                    .into(),
            );
        }
        backends::set(&running.pools, pool, address, change, caller)
    }

    /// Each pool's backends: address, weight, health, open connections.
    pub async fn pools(&self) -> Vec<PoolStats> {
        let running = self.running.lock().await;
        let mut pools: Vec<PoolStats> = running.pools.values().map(|p| p.stats()).collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        pools
    }

    /// The data path's part of `proxy stats` (no kernel or auto-block figures).
    pub async fn stats(&self) -> Stats {
        let mut listeners = self.shared.metrics.listener_stats();
        {
            let running = self.running.lock().await;
            for l in &mut listeners {
                let state = running.listeners.get(&l.name).map(|r| r.state.load());
                if let Some(routes) = state.as_ref().and_then(|s| s.routes.as_ref()) {
                    l.routes = routes.all().map(|r| r.stats()).collect();
                }
            }
        }
        Stats {
            connections_open: self.open_connections(),
            listeners,
            pools: self.pools().await,
            ..Stats::default()
        }
    }

    /// What the subsystems must do before anything else of the drain, in order.
    pub async fn begin_drain(&self) {
        for s in &self.subsystems {
            s.begin_drain().await;
        }
    }

    /// What the subsystems need before the drain starts (the longest wait they ask).
    pub fn before_drain(&self) -> Duration {
        self.subsystems
            .iter()
            .map(|s| s.before_drain())
            .max()
            .unwrap_or_default()
    }

    /// Names of the listeners whose sockets are bound now.
    pub async fn listener_names(&self) -> Vec<String> {
        self.running
            .lock()
            .await
            .listeners
            .keys()
            .cloned()
            .collect()
    }

    /// Open client connections.
    pub fn open_connections(&self) -> u32 {
        self.shared.connections.get()
    }

    /// The most client connections open at once since the last call.
    pub fn take_peak_connections(&self) -> u32 {
        self.shared.connections.take_peak()
    }

    /// Starts serving `config` (read from the daemon's configuration file).
    pub async fn start(&self, config: Config) -> anyhow::Result<()> {
        raise_fd_limit();
        self.apply(config).await
    }

    /// Re-reads the configuration file; on any error the old configuration stays.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let result = match config::load(&self.config_path) {
            Ok(config) => self.apply(config).await,
            Err(e) => Err(e.into()),
        };
        self.shared.metrics.reload(result.is_ok());
        result
    }

    async fn apply(&self, config: Config) -> anyhow::Result<()> {
        let mut running = self.running.lock().await;
        let metrics = &self.shared.metrics;
        let handed_over = self
            .backends_handed_over
            .lock()
            .expect("handed-over lock")
            .clone();
        let prepared = prepare(
            config,
            metrics,
            &running.pools,
            &running.sessions,
            &handed_over,
        )?;
        // Bind what is new and prepare every subsystem before changing anything, so
        // an error anywhere changes nothing.
        let (mut new_sockets, commits) = match self.bind_and_prepare_subsystems(&prepared, &running)
        {
            Ok(ready) => ready,
            Err(e) => {
                forget_backends(metrics, &prepared.pools, &running.pools);
                return Err(e);
            }
        };
        for (name, commit) in commits {
            commit().with_context(|| {
                format!("subsystem {name}: applying the prepared configuration failed")
            })?;
        }

        // Switch over.
        let Prepared {
            config,
            pools,
            listeners,
            sessions,
        } = prepared;
        let mut old_listeners = std::mem::take(&mut running.listeners);
        for state in listeners {
            let name = state.settings.name.clone();
            let mss = state.settings.mss;
            let r = match new_sockets.remove(&name) {
                None => {
                    let Some(r) = old_listeners.remove(&name) else {
                        continue;
                    };
                    r.state.store(Arc::new(state));
                    r
                }
                Some(socket) => {
                    let state = Arc::new(ArcSwap::from_pointee(state));
                    listener::start(socket, state, self.shared.clone())?
                }
            };
            // Every time: a kept or handed-over socket may have had another setting.
            if let Err(e) = r.set_mss(mss) {
                tracing::warn!(listener = %name, ?mss, error = %e, "cannot set the listener's MSS");
            }
            running.listeners.insert(name, r);
        }
        for (name, r) in old_listeners {
            tracing::info!(listener = %name, bind = %r.bind, "listener removed; its open connections continue");
            r.stop().await;
        }
        forget_backends(metrics, &running.pools, &pools);
        for pool in pools.values() {
            pool.show_state();
        }
        backends::after_reload(&running.pools, &pools);
        if !handed_over.is_empty() {
            backends::after_takeover(&handed_over, &pools);
            self.backends_handed_over
                .lock()
                .expect("handed-over lock")
                .clear();
        }
        let kept = route_names(&config);
        for (listener, route) in route_names(&self.config.load()).difference(&kept) {
            metrics.remove_route(listener, route);
        }
        running.health = pools.values().map(health::start).collect();
        running.discovery = pools
            .values()
            .filter_map(|p| super::discovery::start(p, metrics))
            .collect();
        for p in pools.values() {
            let (config, dns) = p.origin_counts();
            metrics.pool_backends(p.name(), config, dns);
        }
        running.pools = pools;
        running.sessions = sessions;
        self.config.store(config);
        tracing::info!(
            path = %self.config_path.display(),
            listeners = running.listeners.len(),
            pools = running.pools.len(),
            "configuration applied"
        );
        Ok(())
    }

    /// Binds the listeners `prepared` adds or moves, then lets every subsystem
    /// prepare the configuration; the sockets and the subsystems' commits.
    #[allow(clippy::type_complexity)]
    fn bind_and_prepare_subsystems(
        &self,
        prepared: &Prepared,
        running: &Running,
    ) -> anyhow::Result<(
        HashMap<String, tokio::net::TcpListener>,
        Vec<(&str, Commit<'_>)>,
    )> {
        let mut new_sockets = HashMap::new();
        for l in &prepared.listeners {
            let (name, bind) = (&l.settings.name, l.settings.bind);
            if running.listeners.get(name).is_some_and(|r| r.bind == bind) {
                continue;
            }
            let inherited = {
                let mut map = self.inherited.lock().expect("inherited lock");
                match map.remove(name) {
                    Some((addr, socket)) if addr == bind => Some(socket),
                    Some(other) => {
                        map.insert(name.clone(), other);
                        None
                    }
                    None => None,
                }
            };
            let socket = match inherited {
                Some(socket) => {
                    socket.set_nonblocking(true)?;
                    tracing::info!(listener = %name, %bind, "listening on the handed-over socket");
                    tokio::net::TcpListener::from_std(socket)?
                }
                None => listener::bind(bind)
                    .with_context(|| format!("listener {name:?}: cannot listen on {bind}"))?,
            };
            new_sockets.insert(name.clone(), socket);
        }
        let mut commits = Vec::new();
        for s in &self.subsystems {
            let commit = s
                .prepare(&prepared.config)
                .with_context(|| format!("subsystem {}", s.name()))?;
            commits.push((s.name(), commit));
        }
        Ok((new_sockets, commits))
    }

    /// Stops accepting, waits up to `deadline` for open connections to finish, then
    /// returns how many were still open (they are cut when the process exits).
    pub async fn drain(&self, deadline: Duration) -> u32 {
        let mut running = self.running.lock().await;
        for (_, r) in running.listeners.drain() {
            r.stop().await;
        }
        running.health.clear();
        running.discovery.clear();
        let open = self.open_connections();
        tracing::info!(
            open,
            ?deadline,
            "stopped accepting; draining open connections"
        );
        self.shared.tracker.close();
        let finished = tokio::time::timeout(deadline, self.shared.tracker.wait()).await;
        for s in &self.subsystems {
            s.stop();
        }
        match finished {
            Ok(()) => 0,
            Err(_) => self.open_connections(),
        }
    }
}

/// Starts `daemon` on `config`, calls `started` once it serves, and runs its signal
/// loop until SIGTERM/SIGINT (or a successor's commit) and the drain.
pub async fn serve(daemon: &Daemon, config: Config, started: impl FnOnce()) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    daemon.start(config).await?;
    started();
    notify_ready();
    let mut files = match TlsFileWatcher::new() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch TLS files; certificate changes need SIGHUP");
            None
        }
    };
    if let Some(w) = files.as_mut() {
        w.watch(&daemon.config());
    }
    tracing::info!(
        pid = std::process::id(),
        "running; SIGHUP reloads, SIGTERM drains"
    );
    loop {
        let changed = async {
            match files.as_mut() {
                Some(w) => w.changed().await,
                None => std::future::pending().await,
            }
        };
        let trigger = tokio::select! {
            _ = hup.recv() => "SIGHUP".to_string(),
            path = changed => format!("TLS file {} changed", path.display()),
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = daemon.handed_over.cancelled() => break,
        };
        match daemon.reload().await {
            Ok(()) => tracing::info!(trigger, "reload succeeded"),
            Err(e) => tracing::error!(
                trigger,
                error = format!("{e:#}"),
                "reload rejected; the previous configuration keeps serving"
            ),
        }
        if let Some(w) = files.as_mut() {
            w.watch(&daemon.config());
        }
    }
    let wait = match daemon.handed_over.is_cancelled() {
        // The successor accepts on the same sockets: nothing to withdraw or wait for.
        true => Duration::ZERO,
        false => {
            daemon.begin_drain().await;
            daemon.before_drain()
        }
    };
    if !wait.is_zero() {
        tracing::info!(?wait, "routes withdrawn; waiting before draining");
        tokio::time::sleep(wait).await;
    }
    let deadline = daemon.config().timeouts.drain;
    let cut = tokio::select! {
        cut = daemon.drain(deadline) => cut,
        _ = term.recv() => { tracing::warn!("second signal: exiting now"); daemon.open_connections() }
        _ = int.recv() => { tracing::warn!("second signal: exiting now"); daemon.open_connections() }
    };
    if cut > 0 {
        tracing::warn!(
            cut,
            "drain deadline reached; closing the remaining connections"
        );
    } else {
        tracing::info!("all connections finished; exiting");
    }
    Ok(())
}

/// Under systemd (`Type=notify`): the daemon serves.
fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready])
    {
        tracing::warn!(error = %e, "cannot tell systemd the daemon is ready");
    }
}

/// Two descriptors per connection: raise the soft limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, backends: &[&str], extra: &str) -> String {
        let list: Vec<String> = backends
            .iter()
            .map(|b| format!("{{ address = \"{b}\" }}"))
            .collect();
        format!(
            "[[listener]]\nname = \"l\"\nbind = \"{listen}\"\npool = \"p\"\n{extra}\n\
             [[pool]]\nname = \"p\"\nbackends = [{}]\n[pool.health]\nenabled = false\n",
            list.join(", ")
        )
    }

    /// A loopback address with a port free right now (port 0 is refused by validation).
    fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn series(d: &Daemon) -> Vec<String> {
        d.metrics()
            .encode()
            .lines()
            .filter(|l| l.starts_with("proxy_backend_up{"))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn rejected_reloads_change_nothing_and_leave_no_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        // A port we hold, so that binding it fails.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = taken.local_addr().unwrap().to_string();
        let listen = free_addr();
        std::fs::write(&path, config(&listen, &["127.0.0.1:9"], "")).unwrap();
        let d = Daemon::new(&path);
        d.start(config::load(&path).unwrap()).await.unwrap();
        assert_eq!(series(&d).len(), 1);

        // A certificate that does not exist: rejected while preparing.
        let tls = "[listener.tls]\ncertificates = [{ cert = \"/nonexistent.pem\", key = \"/x\" }]";
        std::fs::write(&path, config(&listen, &["127.0.0.1:10"], tls)).unwrap();
        let e = d.reload().await.unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent.pem"), "{e:#}");
        // An address in use: rejected after preparing (the new backend's series go).
        std::fs::write(&path, config(&taken, &["127.0.0.1:10"], "")).unwrap();
        let e = d.reload().await.unwrap_err();
        assert!(format!("{e:#}").contains("cannot listen on"), "{e:#}");
        assert_eq!(
            series(&d),
            vec!["proxy_backend_up{pool=\"p\",backend=\"127.0.0.1:9\"} 1"]
        );
        assert_eq!(d.pools().await[0].backends[0].address.port(), 9);

        // A good reload replaces the backend and its series.
        std::fs::write(&path, config(&listen, &["127.0.0.1:10"], "")).unwrap();
        d.reload().await.unwrap();
        assert_eq!(
            series(&d),
            vec!["proxy_backend_up{pool=\"p\",backend=\"127.0.0.1:10\"} 1"]
        );
        assert!(
            d.metrics()
                .encode()
                .contains("proxy_config_reloads_total{result=\"error\"} 2")
        );
        assert_eq!(d.drain(Duration::from_secs(1)).await, 0);
    }
}
