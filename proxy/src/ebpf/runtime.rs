//! The XDP fast path inside the running daemon: load and attach, apply policy from
//! the config (again on reload), summarise sampled drops, sweep expired entries,
//! switch `auto` SYN cookies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use std::net::IpAddr;

use ipnet::IpNet;

use super::EbpfError;
use super::events::{self, DropAggregator};
use super::loader::{Attachment, LoadOptions, XdpProgram};
use super::maps::fleet::FleetSlot;
use super::maps::steering::SlotContent;
use super::maps::{List, Maps, RateLimits, ServiceSettings};
use super::services::{self, CookieSwitch, ServicePlan};
use super::tcp_sysctl::{self, CookieSysctls};
use crate::api::{InterfaceStats, ListEntry, Origin, Top, XdpStats};
use crate::config::Config;
use crate::config::xdp::{ListEntryConfig, XdpSection};
use crate::control::policy::{
    FleetKernel, KernelPolicy, KernelView, SteeringKernel, SteeringSetup,
};
use crate::control::steering::table::Table;
use crate::control::subsystem::{Commit, Subsystem};

/// How often expired list entries are deleted from the maps. The kernel already
/// ignores them (and the program deletes those it meets); this only frees their
/// slots, and each sweep reads every entry (about 0.25 s of CPU at 100,000).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How often `auto` SYN cookie listeners are re-decided from their SYN counters: a
/// flood is answered in XDP at most about two intervals after it starts.
const COOKIE_SWITCH_INTERVAL: Duration = Duration::from_millis(250);

/// The service filter and SYN cookie state (lock it before the maps, never after).
struct Services {
    plan: ServicePlan,
    switch: CookieSwitch,
    /// Set while a listener has cookies `on` or `auto`; restored when dropped.
    sysctls: Option<CookieSysctls>,
}

pub struct XdpRuntime {
    program: XdpProgram,
    maps: Arc<Mutex<Maps>>,
    services: Arc<Mutex<Services>>,
    /// Every sampled drop since start (for `proxy top`).
    recent_drops: Arc<Mutex<DropAggregator>>,
    section: XdpSection,
    tasks: Vec<JoinHandle<()>>,
    /// A successor took the attachments and sysctls over.
    handed_over: bool,
}

/// The XDP program loaded on its (pinned) maps, with nothing written or attached.
pub struct Loaded {
    program: XdpProgram,
    maps: Maps,
}

/// What a configuration will write into the maps, checked before anything is.
pub struct Planned {
    section: XdpSection,
    services: ServicePlan,
}

impl Loaded {
    /// Loads the program and opens (or creates) its pinned maps, taking over a
    /// predecessor's pinned links with `take_over`.
    pub fn load(section: &XdpSection, take_over: bool, steering: bool) -> anyhow::Result<Loaded> {
        let options = LoadOptions {
            take_over_links: take_over,
            keep_on_crash: steering,
            ..LoadOptions::from_config(section)
        };
        let (program, maps) = XdpProgram::load(options)?;
        Ok(Loaded { program, maps })
    }
}

/// Checks `section`'s lists against the maps' room and whether SYN cookies can have
/// the sysctls they need (`cookies_held`: this process already holds them).
fn plan(
    maps: &Maps,
    config: &Config,
    section: &XdpSection,
    cookies_held: bool,
) -> anyhow::Result<Planned> {
    for (list, entries, capacity) in [
        (List::Allow, &section.allowlist, section.max_allow_entries),
        (List::Block, &section.blocklist, section.max_block_entries),
    ] {
        maps.check_config_entries(
            list,
            &wanted(entries),
            section.keep_runtime_entries,
            capacity,
        )
        .map_err(anyhow::Error::msg)?;
    }
    let services =
        ServicePlan::from_config(config, &services::interface_addresses(&section.interfaces));
    if services.cookie_listeners() > 0 && !cookies_held {
        CookieSysctls::check()?;
    }
    Ok(Planned {
        section: section.clone(),
        services,
    })
}

/// The config's list entries as the maps take them.
fn wanted(entries: &[ListEntryConfig]) -> Vec<(IpNet, Option<Duration>, String)> {
    entries
        .iter()
        .map(|e| (e.cidr(), e.ttl(), e.reason().to_string()))
        .collect()
}

impl XdpRuntime {
    /// Applies the planned policy to the loaded program's maps and attaches. Must
    /// run inside a tokio runtime.
    pub fn start(loaded: Loaded, planned: Planned) -> anyhow::Result<XdpRuntime> {
        let Loaded {
            mut program,
            mut maps,
        } = loaded;
        let section = &planned.section;
        program.forward_logs();
        apply_policy(&mut maps, section)?;
        let services = Arc::new(Mutex::new(apply_services(
            &mut maps,
            planned.services,
            section,
            None,
        )?));
        for interface in &section.interfaces {
            program.attach(interface, section.mode)?;
        }
        let ring = program.take_drop_events()?;
        let maps = Arc::new(Mutex::new(maps));
        let recent_drops = Arc::new(Mutex::new(DropAggregator::default()));
        let tasks = vec![
            tokio::spawn(summarise_drops(
                ring,
                section.drop_log_interval,
                recent_drops.clone(),
            )),
            tokio::spawn(sweep_expired(maps.clone())),
            tokio::spawn(switch_syn_cookies(services.clone(), maps.clone())),
        ];
        Ok(XdpRuntime {
            program,
            maps,
            services,
            recent_drops,
            section: section.clone(),
            tasks,
            handed_over: false,
        })
    }

    /// Checks a new configuration's policy against the running maps, writing nothing.
    fn plan(&self, config: &Config, section: &XdpSection) -> anyhow::Result<Planned> {
        let held = self
            .services
            .lock()
            .expect("services lock")
            .sysctls
            .is_some();
        let capacities = XdpSection {
            // The maps keep the sizes they were created with until a restart.
            max_block_entries: self.section.max_block_entries,
            max_allow_entries: self.section.max_allow_entries,
            ..section.clone()
        };
        let maps = self.maps.lock().expect("maps lock");
        let mut planned = plan(&maps, config, &capacities, held)?;
        planned.section = section.clone();
        Ok(planned)
    }

    /// Writes a planned policy. Attachment settings need a restart.
    fn reload(&mut self, planned: Planned) -> anyhow::Result<()> {
        let section = &planned.section;
        let old = &self.section;
        if old.interfaces != section.interfaces
            || old.mode != section.mode
            || old.pin_path != section.pin_path
            || old.max_block_entries != section.max_block_entries
            || old.max_allow_entries != section.max_allow_entries
        {
            warn!(
                "xdp interfaces, mode, pin_path and map sizes change only on restart; applying the policy part"
            );
        }
        let mut services = self.services.lock().expect("services lock");
        let mut maps = self.maps.lock().expect("maps lock");
        apply_policy(&mut maps, section)?;
        let next = apply_services(&mut maps, planned.services, section, Some(&mut services))?;
        *services = next;
        self.section = section.clone();
        Ok(())
    }

    /// SYN cookie mode and counters per listener.
    fn listener_stats(&self) -> (Vec<crate::api::ListenerXdpStats>, bool) {
        let services = self.services.lock().expect("services lock");
        let maps = self.maps.lock().expect("maps lock");
        let read = |index| maps.services_ref()?.listener_counters(index).ok();
        (services.switch.stats(read), services.plan.service_filter)
    }

    pub fn maps(&self) -> Arc<Mutex<Maps>> {
        self.maps.clone()
    }

    pub fn recent_drops(&self) -> Arc<Mutex<DropAggregator>> {
        self.recent_drops.clone()
    }

    pub fn attachments(&self) -> &[Attachment] {
        self.program.attachments()
    }

    /// Stops the background tasks and detaches (unless `stay_attached`); restores the
    /// TCP sysctls set for SYN cookies.
    pub fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        if self.handed_over {
            info!("XDP attachments left to the process that took over");
            self.program.leave_attached();
            return;
        }
        self.program.shutdown();
        if let Some(mut sysctls) = self.services.lock().expect("services lock").sysctls.take() {
            sysctls.restore();
        }
    }
}

/// Writes the listeners, served ports, service addresses and cookie settings; sets
/// (or keeps, or restores) the TCP sysctls cookies need. `previous`: the state before
/// a reload (its `auto` decisions and sysctl changes carry over).
fn apply_services(
    maps: &mut Maps,
    plan: ServicePlan,
    section: &XdpSection,
    previous: Option<&mut Services>,
) -> anyhow::Result<Services> {
    let (previous_switch, previous_sysctls) = match previous {
        Some(p) => (Some(&p.switch), p.sysctls.take()),
        None => (None, None),
    };
    let switch = CookieSwitch::new(&plan, &section.syn_cookies, previous_switch);
    let sysctls = match (plan.cookie_listeners() > 0, previous_sysctls) {
        (true, Some(kept)) => Some(kept),
        (true, None) => Some(CookieSysctls::apply()?),
        (false, Some(mut kept)) => {
            kept.restore();
            None
        }
        (false, None) => None,
    };
    let Some(service_maps) = maps.services() else {
        anyhow::bail!("the XDP program's service maps are missing (opened from pins?)");
    };
    service_maps.set_listeners(&switch.entries())?;
    service_maps.set_served_ports(&plan.tcp_ports, &plan.udp_ports)?;
    service_maps.set_service_addrs(&plan.addresses)?;
    maps.write_service_settings(&ServiceSettings {
        service_filter: plan.service_filter,
        syn_cookie_listeners: plan.cookie_listeners(),
        syn_cookies_active: switch.active_count(),
        synack_wscale: tcp_sysctl::synack_wscale(),
        ephemeral_ports: tcp_sysctl::ephemeral_ports(),
    })?;
    if plan.service_filter {
        info!(
            addresses = plan.addresses.len(),
            "XDP service filter on: TCP/UDP to unserved ports of the service addresses is dropped"
        );
    }
    for l in plan
        .listeners
        .iter()
        .filter(|l| l.mode != crate::config::SynCookieMode::Off)
    {
        info!(listener = l.name, bind = %l.bind, mode = l.mode.name(), "XDP SYN cookies");
    }
    Ok(Services {
        plan,
        switch,
        sysctls,
    })
}

/// Every interval: SYN rates per listener → `auto` listeners switch cookies on or off.
async fn switch_syn_cookies(services: Arc<Mutex<Services>>, maps: Arc<Mutex<Maps>>) {
    let mut tick = tokio::time::interval(COOKIE_SWITCH_INTERVAL);
    loop {
        tick.tick().await;
        let mut services = services.lock().expect("services lock");
        let mut maps = maps.lock().expect("maps lock");
        let Some(service_maps) = maps.services() else {
            return;
        };
        let switches = services.switch.observe(std::time::Instant::now(), |index| {
            service_maps
                .listener_counters(index)
                .inspect_err(|e| warn!(error = %e, "cannot read the listener counters"))
                .ok()
        });
        if switches.is_empty() {
            continue;
        }
        for s in &switches {
            let result = service_maps.set_listener(&s.key, services::state(s.on, s.index));
            match result {
                Ok(()) if s.on => warn!(
                    listener = s.name,
                    syn_per_second = s.syn_per_second.round(),
                    "SYN cookies switched on (auto): SYN rate reached the threshold"
                ),
                Ok(()) => info!(
                    listener = s.name,
                    syn_per_second = s.syn_per_second.round(),
                    "SYN cookies switched off (auto): quiet period over"
                ),
                Err(e) => warn!(listener = s.name, error = %e, "cannot switch SYN cookies"),
            }
        }
        let settings = ServiceSettings {
            service_filter: services.plan.service_filter,
            syn_cookie_listeners: services.plan.cookie_listeners(),
            syn_cookies_active: services.switch.active_count(),
            synack_wscale: tcp_sysctl::synack_wscale(),
            ephemeral_ports: tcp_sysctl::ephemeral_ports(),
        };
        if let Err(e) = maps.write_service_settings(&settings) {
            warn!(error = %e, "cannot update the SYN cookie settings");
        }
    }
}

/// Writes the section's lists and limits into the maps.
pub fn apply_policy(maps: &mut Maps, section: &XdpSection) -> Result<(), EbpfError> {
    let rl = &section.rate_limit;
    let limits = RateLimits {
        packets_per_second: rl.packets_per_second,
        packets_burst: rl.packets_burst.unwrap_or(0),
        syn_per_second: rl.syn_per_second,
        syn_burst: rl.syn_burst.unwrap_or(0),
        ipv6_prefix: rl.ipv6_prefix,
        ports: rl.ports.clone(),
    };
    maps.write_config(&limits, section.drop_sample_rate, section.log_every_drop)?;
    for (list, entries) in [
        (List::Allow, &section.allowlist),
        (List::Block, &section.blocklist),
    ] {
        maps.sync_config_entries(list, &wanted(entries), section.keep_runtime_entries)?;
    }
    info!(
        allow = section.allowlist.len(),
        block = section.blocklist.len(),
        pps = rl.packets_per_second,
        syn_per_second = rl.syn_per_second,
        "XDP policy applied"
    );
    Ok(())
}

/// Reads drop samples as they arrive; logs one summary per interval.
async fn summarise_drops(
    ring: RingBuf<MapData>,
    interval: Duration,
    recent: Arc<Mutex<DropAggregator>>,
) {
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd for the whole task.
    let registered =
        unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut ring = match registered {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "cannot watch the drop events ring buffer; no drop summaries");
            return;
        }
    };
    let mut window = DropAggregator::default();
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let Ok(mut guard) = guard else { return };
                let mut recent = recent.lock().expect("drops lock");
                events::drain(guard.get_inner_mut(), |s| {
                    window.add(s);
                    recent.add(s);
                });
                guard.clear_ready();
            }
            _ = tick.tick() => {
                if let Some(line) = window.take_summary(interval) {
                    info!(target: "proxy::xdp_drops", "{line}");
                }
            }
        }
    }
}

async fn sweep_expired(maps: Arc<Mutex<Maps>>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        let mut maps = maps.lock().expect("maps lock");
        for list in [List::Block, List::Allow] {
            match maps.remove_expired(list) {
                Ok(0) => {}
                Ok(n) => info!(list = ?list, removed = n, "expired entries removed"),
                Err(e) => warn!(error = %e, "sweeping expired entries failed"),
            }
        }
    }
}

/// The XDP fast path as a daemon subsystem: started by the first configuration with
/// an `[xdp]` section, re-applied on each reload, shut down with the daemon.
#[derive(Default)]
pub struct XdpSubsystem {
    runtime: Mutex<Option<XdpRuntime>>,
    /// This process takes over from a running daemon: attach into its pinned links.
    taking_over: std::sync::atomic::AtomicBool,
}

impl XdpSubsystem {
    /// `proxy run --takeover`: the first start replaces the predecessor's program in
    /// its links instead of attaching anew.
    pub fn take_over_attachments(&self) {
        self.taking_over
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The running fast path's maps, if any.
    pub fn maps(&self) -> Option<Arc<Mutex<Maps>>> {
        self.runtime
            .lock()
            .expect("xdp lock")
            .as_ref()
            .map(|r| r.maps())
    }

    /// (interface, ifindex, mode) of each attachment.
    pub fn attachments(&self) -> Vec<(String, u32, &'static str)> {
        let runtime = self.runtime.lock().expect("xdp lock");
        runtime
            .iter()
            .flat_map(|r| {
                r.attachments()
                    .iter()
                    .map(|a| (a.interface.clone(), a.ifindex, a.mode))
            })
            .collect()
    }

    /// SYN cookie mode, state and counters per listener; whether the service filter is on.
    pub fn listener_stats(&self) -> (Vec<crate::api::ListenerXdpStats>, bool) {
        self.runtime
            .lock()
            .expect("xdp lock")
            .as_ref()
            .map(|r| r.listener_stats())
            .unwrap_or_default()
    }

    /// Verdicts of every attached interface.
    pub fn interface_stats(&self) -> Option<Vec<InterfaceStats>> {
        // The runtime lock before the maps lock, as `apply` takes them: never both
        // the other way round.
        let attachments = self.attachments();
        let maps = self.maps()?;
        let maps = maps.lock().expect("maps lock");
        let stats = attachments
            .into_iter()
            .filter_map(|(interface, ifindex, mode)| {
                let verdicts = maps
                    .verdicts(ifindex)
                    .inspect_err(|e| warn!(error = %e, interface, "cannot read XDP counters"))
                    .ok()?;
                Some(InterfaceStats {
                    interface: Some(interface),
                    ifindex,
                    mode: Some(mode.to_owned()),
                    verdicts,
                })
            })
            .collect();
        Some(stats)
    }
}

impl KernelPolicy for XdpSubsystem {
    fn enforcing(&self) -> bool {
        self.maps().is_some()
    }

    fn allowlisted(&self, addr: IpAddr) -> anyhow::Result<Option<ListEntry>> {
        let Some(maps) = self.maps() else {
            return Ok(None);
        };
        let entry = maps
            .lock()
            .expect("maps lock")
            .matching(List::Allow, addr)?;
        Ok(entry)
    }

    fn auto_block(&self, net: IpNet, ttl: Duration, reason: &str) -> anyhow::Result<()> {
        let Some(maps) = self.maps() else {
            anyhow::bail!("no XDP program runs: cannot block {net}");
        };
        maps.lock().expect("maps lock").insert(
            List::Block,
            net,
            Some(ttl),
            Origin::Auto,
            reason,
        )?;
        Ok(())
    }
}

impl XdpSubsystem {
    fn require_maps(&self) -> anyhow::Result<Arc<Mutex<Maps>>> {
        self.maps()
            .ok_or_else(|| anyhow::anyhow!("no XDP program runs: fleet entries need [xdp]"))
    }
}

impl FleetKernel for XdpSubsystem {
    fn apply_fleet(
        &self,
        list: List,
        net: IpNet,
        expires_in: Option<Duration>,
        reason: &str,
    ) -> anyhow::Result<bool> {
        let maps = self.require_maps()?;
        let slot = maps
            .lock()
            .expect("maps lock")
            .apply_fleet(list, net, expires_in, reason)?;
        Ok(slot == FleetSlot::Applied)
    }

    fn remove_fleet(&self, list: List, nets: &[IpNet]) -> anyhow::Result<usize> {
        let maps = self.require_maps()?;
        let removed = maps.lock().expect("maps lock").remove_fleet(list, nets)?;
        Ok(removed)
    }

    fn fleet_entries(&self, list: List) -> anyhow::Result<Vec<ListEntry>> {
        let maps = self.require_maps()?;
        let entries = maps.lock().expect("maps lock").fleet_entries(list)?;
        Ok(entries)
    }

    fn policy_generation(&self) -> Option<u64> {
        self.maps()?
            .lock()
            .expect("maps lock")
            .policy_generation()
            .ok()
    }
}

impl XdpSubsystem {
    /// Runs `f` on the steering maps (an error without a running program).
    fn with_steering<T>(
        &self,
        f: impl FnOnce(&mut super::maps::SteerMaps) -> Result<T, EbpfError>,
    ) -> anyhow::Result<T> {
        let maps = self.maps().ok_or_else(|| {
            anyhow::anyhow!("no XDP program runs: connection steering needs [xdp]")
        })?;
        let mut maps = maps.lock().expect("maps lock");
        let steering = maps
            .steering()
            .ok_or_else(|| anyhow::anyhow!("the XDP program's steering maps are missing"))?;
        Ok(f(steering)?)
    }
}

impl SteeringKernel for XdpSubsystem {
    fn steering_configure(&self, setup: Option<&SteeringSetup>) -> anyhow::Result<()> {
        let setup = setup.map(|s| (s.address, s.port, s.vips.as_slice()));
        self.with_steering(|m| m.configure(setup))
    }

    fn steering_peers(&self, peers: &[(IpAddr, u16)]) -> anyhow::Result<()> {
        self.with_steering(|m| m.set_peers(peers))
    }

    fn steering_reachable(&self) -> Vec<(IpAddr, Option<Duration>)> {
        let now = super::maps::monotonic_ns();
        self.with_steering(|m| Ok(m.reachable(now)))
            .unwrap_or_default()
    }

    fn steering_install(&self, table: &Table, me: Option<u16>) -> anyhow::Result<()> {
        let members = table.addresses();
        let rows: Vec<(u16, u16)> = table
            .rows
            .iter()
            .map(|r| (r.primary, r.secondary))
            .collect();
        let content = SlotContent {
            generation: table.generation,
            members: &members,
            me,
            rows: &rows,
        };
        self.with_steering(|m| m.install(&content))
    }

    fn steering_activate(&self, generation: u64) -> anyhow::Result<()> {
        self.with_steering(|m| m.activate(generation))
    }
}

impl KernelView for XdpSubsystem {
    fn attached(&self) -> bool {
        !self.attachments().is_empty()
    }

    fn xdp_stats(&self) -> Option<XdpStats> {
        let interfaces = self.interface_stats()?;
        let maps = self.maps()?;
        let blocks = maps
            .lock()
            .expect("maps lock")
            .entries(List::Block)
            .inspect_err(|e| warn!(error = %e, "cannot read the blocklist"))
            .unwrap_or_default();
        let (listeners, service_filter) = self.listener_stats();
        Some(XdpStats {
            interfaces,
            blocklist_entries: blocks.len(),
            auto_blocks_active: blocks.iter().filter(|e| e.origin == Origin::Auto).count(),
            listeners,
            service_filter,
        })
    }

    fn blocklist(&self) -> Option<Vec<ListEntry>> {
        let maps = self.maps()?;
        let entries = maps.lock().expect("maps lock").entries(List::Block);
        entries
            .inspect_err(|e| warn!(error = %e, "cannot read the blocklist"))
            .ok()
    }

    fn top_sources(&self, n: usize) -> Option<Top> {
        let runtime = self.runtime.lock().expect("xdp lock");
        let drops = runtime.as_ref()?.recent_drops();
        let sources = drops.lock().expect("drops lock").top(n);
        Some(Top { sources })
    }
}

impl Subsystem for XdpSubsystem {
    fn name(&self) -> &str {
        "xdp"
    }

    /// At start: loads the program and checks the policy against its maps; on
    /// reload: checks the policy against the running maps. Nothing is written or
    /// attached before the commit.
    fn prepare<'a>(&'a self, config: &Arc<Config>) -> anyhow::Result<Commit<'a>> {
        let runtime = self.runtime.lock().expect("xdp lock");
        let nothing: Commit<'a> = Box::new(|| Ok(()));
        match (runtime.as_ref(), &config.xdp) {
            (None, Some(section)) => {
                let take_over = self.taking_over.load(std::sync::atomic::Ordering::SeqCst);
                let loaded = Loaded::load(section, take_over, config.steering().is_some())?;
                let planned = plan(&loaded.maps, config, section, false)?;
                Ok(Box::new(move || {
                    let started = XdpRuntime::start(loaded, planned)?;
                    *self.runtime.lock().expect("xdp lock") = Some(started);
                    Ok(())
                }))
            }
            (Some(running), Some(section)) => {
                let planned = running.plan(config, section)?;
                Ok(Box::new(move || {
                    let mut runtime = self.runtime.lock().expect("xdp lock");
                    let running = runtime.as_mut().expect("prepared on a running program");
                    running.reload(planned)
                }))
            }
            (Some(_), None) => {
                warn!("the [xdp] section was removed: the XDP program stays until restart");
                Ok(nothing)
            }
            (None, None) => {
                info!("no [xdp] section: running userspace only");
                Ok(nothing)
            }
        }
    }

    fn stop(&self) {
        if let Some(runtime) = self.runtime.lock().expect("xdp lock").take() {
            runtime.shutdown();
        }
    }

    fn prepare_handover(&self) -> anyhow::Result<()> {
        if let Some(r) = self.runtime.lock().expect("xdp lock").as_mut() {
            r.program.pin_for_handover()?;
        }
        Ok(())
    }

    fn abort_handover(&self) {
        if let Some(r) = self.runtime.lock().expect("xdp lock").as_mut()
            && let Err(e) = r.program.retake_after_handover()
        {
            warn!(error = %e, "cannot take the XDP attachments back after a failed upgrade");
        }
    }

    fn hand_over(&self) {
        if let Some(r) = self.runtime.lock().expect("xdp lock").as_mut() {
            r.handed_over = true;
            if let Some(s) = r.services.lock().expect("services lock").sysctls.as_mut() {
                s.hand_over();
            }
        }
    }

    fn handover_sysctls(&self) -> Vec<(std::path::PathBuf, String)> {
        let runtime = self.runtime.lock().expect("xdp lock");
        let Some(r) = runtime.as_ref() else {
            return Vec::new();
        };
        let services = r.services.lock().expect("services lock");
        services
            .sysctls
            .as_ref()
            .map(|s| s.to_restore())
            .unwrap_or_default()
    }

    fn finish_takeover(&self) {
        if let Some(r) = self.runtime.lock().expect("xdp lock").as_mut()
            && !r.section.stay_attached
        {
            r.program.remove_link_pins();
        }
    }
}
