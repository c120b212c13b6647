//! Loads the XDP program, pins its maps, attaches it to interfaces and detaches it.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapInfo,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLinkId,
    },
};
use proxy_common::{LpmKey, PROGRAM_NAME, PolicyEntry, XdpConfig, map_names};
use tracing::{info, warn};

use super::{EbpfError, OBJECT, maps::Maps};
use crate::config::xdp::{AttachMode, XdpSection};

/// How to load: where to pin (None = private maps, for tests and benchmarks) and how
/// big the lists are.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub pin_dir: Option<PathBuf>,
    pub max_block_entries: u32,
    pub max_allow_entries: u32,
    /// Keep attachments after this process exits (pinned links under `pin_dir/links`).
    pub stay_attached: bool,
}

impl LoadOptions {
    pub fn private() -> LoadOptions {
        LoadOptions {
            pin_dir: None,
            max_block_entries: 65536,
            max_allow_entries: 4096,
            stay_attached: false,
        }
    }

    pub fn from_config(section: &XdpSection) -> LoadOptions {
        LoadOptions {
            pin_dir: Some(section.pin_path.clone()),
            max_block_entries: section.max_block_entries,
            max_allow_entries: section.max_allow_entries,
            stay_attached: section.stay_attached,
        }
    }
}

/// One interface the program is attached to.
#[derive(Debug)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    /// `native` or `skb`: the mode actually in use.
    pub mode: &'static str,
    link: Option<XdpLinkId>,
}

/// The loaded program. Dropping it detaches every attachment it made, unless
/// `stay_attached` pinned them.
pub struct XdpProgram {
    ebpf: Ebpf,
    options: LoadOptions,
    attachments: Vec<Attachment>,
    /// Links kept alive by their pins (`stay_attached`).
    pinned_links: Vec<PinnedLink>,
}

impl XdpProgram {
    /// Checks the host, loads the object (reusing pinned maps), verifies the program.
    pub fn load(options: LoadOptions) -> Result<(XdpProgram, Maps), EbpfError> {
        preflight()?;
        raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(map_names::BLOCK_V4, options.max_block_entries)
            .map_max_entries(map_names::BLOCK_V6, options.max_block_entries)
            .map_max_entries(map_names::ALLOW_V4, options.max_allow_entries)
            .map_max_entries(map_names::ALLOW_V6, options.max_allow_entries);
        let pin_paths: Vec<(&str, PathBuf)> = match &options.pin_dir {
            Some(dir) => {
                ensure_bpffs(dir)?;
                std::fs::create_dir_all(dir).map_err(|source| EbpfError::Io {
                    context: format!("creating {}", dir.display()),
                    source,
                })?;
                let paths: Vec<_> = map_names::PINNED
                    .iter()
                    .map(|name| (*name, dir.join(name)))
                    .collect();
                check_pins_compatible(dir, &paths, &options)?;
                paths
            }
            None => Vec::new(),
        };
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        let program: &mut Xdp = program_mut(&mut ebpf)?;
        program.load()?;
        let mut maps = Maps::take_from(&mut ebpf)?;
        if let Some(dir) = &options.pin_dir {
            maps.lock_dir(dir)?;
        }
        Ok((
            XdpProgram {
                ebpf,
                options,
                attachments: Vec::new(),
                pinned_links: Vec::new(),
            },
            maps,
        ))
    }

    /// Starts forwarding the program's aya-log records into `tracing` (needs a tokio runtime).
    pub fn forward_logs(&mut self) {
        match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(logger) => {
                tokio::spawn(async move {
                    // SAFETY: the logger owns its fd and lives inside the AsyncFd until the task ends.
                    let registered = unsafe {
                        tokio::io::unix::AsyncFd::register_with_interest(
                            logger,
                            tokio::io::Interest::READABLE,
                        )
                    };
                    let Ok(mut fd) = registered else {
                        return;
                    };
                    loop {
                        let Ok(mut guard) = fd.readable_mut().await else {
                            return;
                        };
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => warn!(error = %e, "XDP program logs are not forwarded"),
        }
    }

    /// The sampled drop events ring buffer (can be taken once).
    pub fn take_drop_events(
        &mut self,
    ) -> Result<aya::maps::RingBuf<aya::maps::MapData>, EbpfError> {
        let map = self
            .ebpf
            .take_map(map_names::DROP_EVENTS)
            .ok_or_else(|| EbpfError::Io {
                context: "the drop events ring buffer was already taken".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?;
        aya::maps::RingBuf::try_from(map).map_err(|source| EbpfError::Map {
            map: "DROP_EVENTS",
            source,
        })
    }

    /// The program itself (for BPF_PROG_TEST_RUN).
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("object contains the XDP program")
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Attaches to `interface`. `Auto` tries native mode, then generic (skb) mode with
    /// a warning naming the mode in use. With `stay_attached`, an attachment pinned by
    /// a previous daemon is taken over atomically (no gap in filtering).
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<&Attachment, EbpfError> {
        let ifindex = if_index(interface)?;
        let link_pin = self
            .options
            .pin_dir
            .as_ref()
            .map(|d| d.join("links").join(interface));
        if self.options.stay_attached
            && let Some(pin) = link_pin.as_ref().filter(|p| p.exists())
        {
            return self.take_over_pinned_link(interface, ifindex, pin);
        }
        let tries: &[(XdpMode, &'static str)] = match mode {
            AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "skb")],
            AttachMode::Native => &[(XdpMode::Driver, "native")],
            AttachMode::Skb => &[(XdpMode::Skb, "skb")],
        };
        let program = program_mut(&mut self.ebpf)?;
        let mut last_error = None;
        for (i, (xdp_mode, name)) in tries.iter().enumerate() {
            match program.attach_to_if_index(ifindex, *xdp_mode) {
                Ok(link) => {
                    if i > 0 {
                        warn!(
                            interface,
                            mode = name,
                            "native XDP was refused ({}); attached in generic (skb) mode, which runs \
                             after the kernel allocates a socket buffer and costs more per packet",
                            last_error
                                .as_ref()
                                .map(|e: &aya::programs::ProgramError| e.to_string())
                                .unwrap_or_default()
                        );
                    } else {
                        info!(interface, ifindex, mode = name, "XDP program attached");
                    }
                    let mut attachment = Attachment {
                        interface: interface.to_string(),
                        ifindex,
                        mode: name,
                        link: Some(link),
                    };
                    if self.options.stay_attached
                        && let Some(pin) = &link_pin
                    {
                        self.pinned_links
                            .push(pin_link(program, &mut attachment, pin)?);
                    }
                    self.attachments.push(attachment);
                    return Ok(self.attachments.last().expect("just pushed"));
                }
                Err(e) => last_error = Some(e),
            }
        }
        let (mode_name, hint) = match mode {
            AttachMode::Auto | AttachMode::Skb => (
                "generic (skb)",
                "Is another XDP program attached (`ip link show dev IFACE`)? Detach it, or check the kernel log.",
            ),
            AttachMode::Native => (
                "native",
                "The driver may not support native XDP: set xdp.mode = \"auto\" or \"skb\".",
            ),
        };
        Err(EbpfError::AttachRefused {
            interface: interface.to_string(),
            mode: mode_name,
            hint,
            source: Box::new(last_error.expect("at least one attempt")),
        })
    }

    fn take_over_pinned_link(
        &mut self,
        interface: &str,
        ifindex: u32,
        pin: &Path,
    ) -> Result<&Attachment, EbpfError> {
        let io = |source: std::io::Error| EbpfError::Io {
            context: format!("taking over the pinned link {}", pin.display()),
            source,
        };
        let pinned = PinnedLink::from_pin(pin).map_err(|e| io(std::io::Error::other(e)))?;
        let link = aya::programs::xdp::XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| io(std::io::Error::other(e)))?;
        let id = program_mut(&mut self.ebpf)?.attach_to_link(link)?;
        info!(
            interface,
            "took over the pinned XDP attachment (program replaced atomically)"
        );
        // The pin keeps the link (and so the attachment) alive after this process exits.
        self.attachments.push(Attachment {
            interface: interface.to_string(),
            ifindex,
            mode: "pinned",
            link: Some(id),
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Detaches from every interface (also removing pinned links).
    pub fn detach_all(&mut self) {
        let Ok(program) = program_mut(&mut self.ebpf) else {
            return;
        };
        for attachment in self.attachments.drain(..) {
            if let Some(link) = attachment.link {
                let _ = program.detach(link);
            }
            info!(interface = attachment.interface, "XDP program detached");
        }
        for link in self.pinned_links.drain(..) {
            let _ = link.unpin();
        }
        if let Some(dir) = &self.options.pin_dir {
            let _ = std::fs::remove_dir_all(dir.join("links"));
        }
    }

    /// Called on shutdown: detach unless configured to stay attached.
    pub fn shutdown(mut self) {
        if self.options.stay_attached {
            info!(
                "leaving the XDP program attached (xdp.stay_attached); `proxy xdp detach` removes it"
            );
            // Forget managed link ids so dropping the program does not detach pinned links.
            self.attachments.clear();
            drop(self.pinned_links.drain(..).collect::<Vec<_>>());
            return;
        }
        self.detach_all();
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, EbpfError> {
    let program = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| EbpfError::Io {
            context: format!("the embedded object has no program {PROGRAM_NAME}"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    Ok(program.try_into()?)
}

fn pin_link(
    program: &mut Xdp,
    attachment: &mut Attachment,
    pin: &Path,
) -> Result<PinnedLink, EbpfError> {
    let io = |source| EbpfError::Io {
        context: format!("pinning the XDP link at {}", pin.display()),
        source,
    };
    let link = program.take_link(attachment.link.take().expect("fresh link"))?;
    let fd_link = FdLink::try_from(link).map_err(|e| io(std::io::Error::other(e)))?;
    if let Some(parent) = pin.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    fd_link.pin(pin).map_err(|e| io(std::io::Error::other(e)))
}

pub fn if_index(interface: &str) -> Result<u32, EbpfError> {
    let name = CString::new(interface).map_err(|_| EbpfError::NoSuchInterface(interface.into()))?;
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(EbpfError::NoSuchInterface(interface.into())),
        index => Ok(index),
    }
}

/// Interface name for an index, if it exists.
pub fn if_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    Some(
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON, and kernel BTF.
fn preflight() -> Result<(), EbpfError> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let effective = effective_capabilities();
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if !has(CAP_SYS_ADMIN) {
        let missing: Vec<&str> = [
            (CAP_BPF, "CAP_BPF"),
            (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
            // Measured: with only CAP_BPF + CAP_NET_ADMIN, BPF_PROG_LOAD fails with EACCES.
            (CAP_PERFMON, "CAP_PERFMON"),
        ]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect();
        if !missing.is_empty() {
            return Err(EbpfError::MissingCapabilities {
                missing: missing.join(", "),
            });
        }
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(EbpfError::NoBtf);
    }
    Ok(())
}

fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK (only kernels before 5.11 need it)");
    }
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Pins need a bpffs; mount the conventional one at /sys/fs/bpf if nothing is there.
fn ensure_bpffs(pin_dir: &Path) -> Result<(), EbpfError> {
    let existing = pin_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if is_bpffs(existing) {
        return Ok(());
    }
    let root = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(root) && !is_bpffs(root) {
        let ret = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                c"/sys/fs/bpf".as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if ret == 0 {
            info!("mounted bpffs at /sys/fs/bpf");
            return Ok(());
        }
        return Err(EbpfError::NoBpffs {
            path: pin_dir.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Err(EbpfError::NoBpffs {
        path: pin_dir.into(),
        source: std::io::Error::other(
            "xdp.pin_path must be below a bpffs mount such as /sys/fs/bpf",
        ),
    })
}

/// Refuses pins made by an incompatible build; warns when a list's capacity differs.
fn check_pins_compatible(
    dir: &Path,
    paths: &[(&str, PathBuf)],
    options: &LoadOptions,
) -> Result<(), EbpfError> {
    for (name, path) in paths {
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(path).map_err(|source| EbpfError::Map {
            map: map_name_static(name),
            source,
        })?;
        let (key, value) = pinned_sizes(name);
        if info.key_size() != key || info.value_size() != value {
            return Err(EbpfError::IncompatiblePin {
                path: path.clone(),
                dir: dir.to_path_buf(),
                what: format!(
                    "key/value size {}/{} bytes, expected {key}/{value}",
                    info.key_size(),
                    info.value_size()
                ),
            });
        }
        let wanted = match *name {
            map_names::BLOCK_V4 | map_names::BLOCK_V6 => Some(options.max_block_entries),
            map_names::ALLOW_V4 | map_names::ALLOW_V6 => Some(options.max_allow_entries),
            _ => None,
        };
        if let Some(wanted) = wanted.filter(|w| *w != info.max_entries()) {
            warn!(
                map = name,
                pinned = info.max_entries(),
                configured = wanted,
                "the pinned map keeps its capacity; to resize, save the list (`proxy block list --json`), \
                 run `proxy xdp unpin`, and restart"
            );
        }
    }
    Ok(())
}

/// (key size, value size) this build uses for a pinned map.
fn pinned_sizes(name: &str) -> (u32, u32) {
    use std::mem::size_of;
    let (key, value) = match name {
        map_names::ALLOW_V4 | map_names::BLOCK_V4 => {
            (size_of::<LpmKey<4>>(), size_of::<PolicyEntry>())
        }
        map_names::ALLOW_V6 | map_names::BLOCK_V6 => {
            (size_of::<LpmKey<16>>(), size_of::<PolicyEntry>())
        }
        map_names::CONFIG => (4, size_of::<XdpConfig>()),
        map_names::PORTS => (4, size_of::<proxy_common::PortSet>()),
        map_names::COUNTERS => (4, size_of::<proxy_common::Counter>()),
        map_names::POLICY_GEN | map_names::V4_SUMMARY => (4, 8),
        other => unreachable!("{other} is not a pinned map"),
    };
    (key as u32, value as u32)
}

pub(crate) fn map_name_static(name: &str) -> &'static str {
    map_names::PINNED
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_map_has_known_sizes() {
        for name in map_names::PINNED {
            let (key, value) = pinned_sizes(name);
            assert!(key > 0 && value > 0, "{name}");
        }
    }
}
