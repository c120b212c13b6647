//! Loads the XDP program, pins its maps, attaches it to interfaces and detaches it.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::ProgramArray,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLinkId,
    },
};
use proxy_common::{PROGRAM_NAME, TAIL_PROGRAMS, map_names};
use tracing::{info, warn};

use super::host::{self, if_index};
use super::{EbpfError, OBJECT, maps::Maps, pins};
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
    /// Take over pinned links (an upgrade's predecessor pinned them) even without
    /// `stay_attached`.
    pub take_over_links: bool,
    /// Pin the links while this process runs, so the program keeps running if it
    /// dies (SIGKILL, crash), and take over the links a dead predecessor left; a clean
    /// shutdown still detaches (unless `stay_attached`). For connection steering: a
    /// node whose daemon died keeps steering other nodes' packets that reach it until
    /// the router drops its route, instead of its kernel resetting them.
    pub keep_on_crash: bool,
}

impl LoadOptions {
    pub fn private() -> LoadOptions {
        LoadOptions {
            pin_dir: None,
            max_block_entries: proxy_common::DEFAULT_MAX_BLOCK_ENTRIES,
            max_allow_entries: proxy_common::DEFAULT_MAX_ALLOW_ENTRIES,
            stay_attached: false,
            take_over_links: false,
            keep_on_crash: false,
        }
    }

    pub fn from_config(section: &XdpSection) -> LoadOptions {
        LoadOptions {
            pin_dir: Some(section.pin_path.clone()),
            max_block_entries: section.max_block_entries,
            max_allow_entries: section.max_allow_entries,
            stay_attached: section.stay_attached,
            take_over_links: false,
            keep_on_crash: false,
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
        host::preflight()?;
        host::raise_memlock_limit();
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(map_names::BLOCK_V4, options.max_block_entries)
            .map_max_entries(map_names::BLOCK_V6, options.max_block_entries)
            .map_max_entries(map_names::ALLOW_V4, options.max_allow_entries)
            .map_max_entries(map_names::ALLOW_V6, options.max_allow_entries);
        let pin_paths: Vec<(&str, PathBuf)> = match &options.pin_dir {
            Some(dir) => {
                host::ensure_bpffs(dir)?;
                std::fs::create_dir_all(dir).map_err(|source| EbpfError::Io {
                    context: format!("creating {}", dir.display()),
                    source,
                })?;
                let paths: Vec<_> = map_names::PINNED
                    .iter()
                    .map(|name| (*name, dir.join(name)))
                    .collect();
                pins::check_pins_compatible(
                    dir,
                    &paths,
                    options.max_block_entries,
                    options.max_allow_entries,
                )?;
                paths
            }
            None => Vec::new(),
        };
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        program_mut(&mut ebpf)?.load()?;
        link_tail_programs(&mut ebpf)?;
        let mut maps = Maps::take_from(&mut ebpf)?;
        if let Some(dir) = &options.pin_dir {
            maps.lock_dir(dir)?;
            // Pinned lists may have been edited by a version without the /16 summary
            // level (an upgrade from it, or a rollback to it and back): the level is
            // computed from the tries before this program is attached.
            maps.summary_16_rebuild()?;
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
        let o = &self.options;
        if (o.stay_attached || o.take_over_links || o.keep_on_crash)
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
                    if (self.options.stay_attached || self.options.keep_on_crash)
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

    /// An upgrade starts: every attachment's link gets a pin under `pin_dir/links`
    /// (unless it has one), so the successor can replace the program in it.
    pub fn pin_for_handover(&mut self) -> Result<(), EbpfError> {
        let dir = self.links_dir().ok_or_else(|| EbpfError::Io {
            context: "an upgrade needs xdp.pin_path".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        let program = program_mut(&mut self.ebpf)?;
        for attachment in &mut self.attachments {
            let Some(id) = attachment.link.take() else {
                continue;
            };
            let pin = dir.join(&attachment.interface);
            if pin.exists() {
                // Pinned already (stay_attached): the pin keeps the link alive.
                drop(program.take_link(id)?);
                continue;
            }
            attachment.link = Some(id);
            self.pinned_links.push(pin_link(program, attachment, &pin)?);
        }
        Ok(())
    }

    /// The upgrade failed: this program takes its attachments back (replacing the
    /// program in the same links) and, without `stay_attached`, removes the pins.
    pub fn retake_after_handover(&mut self) -> Result<(), EbpfError> {
        let Some(dir) = self.links_dir() else {
            return Ok(());
        };
        let interfaces: Vec<(String, u32)> = self
            .attachments
            .drain(..)
            .map(|a| (a.interface, a.ifindex))
            .collect();
        self.pinned_links.clear();
        for (interface, ifindex) in interfaces {
            self.take_over_pinned_link(&interface, ifindex, &dir.join(&interface))?;
        }
        if !self.options.stay_attached {
            self.remove_link_pins();
        }
        Ok(())
    }

    /// After taking over without `stay_attached`: the links live as long as this
    /// process holds them, as after a plain start.
    pub fn remove_link_pins(&mut self) {
        self.pinned_links.clear();
        if let Some(dir) = self.links_dir() {
            for a in &self.attachments {
                let _ = std::fs::remove_file(dir.join(&a.interface));
            }
        }
    }

    /// The successor took the attachments over: leave them to it.
    pub fn leave_attached(mut self) {
        self.attachments.clear();
        self.pinned_links.clear();
    }

    fn links_dir(&self) -> Option<PathBuf> {
        self.options.pin_dir.as_ref().map(|d| d.join("links"))
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
    named_program_mut(ebpf, PROGRAM_NAME)
}

fn named_program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, EbpfError> {
    let program = ebpf.program_mut(name).ok_or_else(|| EbpfError::Io {
        context: format!("the embedded object has no program {name}"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    Ok(program.try_into()?)
}

/// Loads the service filter and SYN cookie programs and puts them where the chain
/// tail-calls them (SERVICES[i]).
fn link_tail_programs(ebpf: &mut Ebpf) -> Result<(), EbpfError> {
    let mut fds = Vec::new();
    for name in TAIL_PROGRAMS {
        let program = named_program_mut(ebpf, name)?;
        program.load()?;
        let fd = program.fd()?.try_clone().map_err(|e| EbpfError::Io {
            context: format!("duplicating the fd of {name}"),
            source: std::io::Error::other(e.to_string()),
        })?;
        fds.push(fd);
    }
    let map = ebpf
        .map_mut(map_names::SERVICES)
        .ok_or_else(|| EbpfError::Io {
            context: format!("the embedded object has no map {}", map_names::SERVICES),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    let map_err = |source| EbpfError::Map {
        map: "SERVICES",
        source,
    };
    let mut array = ProgramArray::try_from(map).map_err(map_err)?;
    for (index, fd) in fds.iter().enumerate() {
        array.set(index as u32, fd, 0).map_err(map_err)?;
    }
    Ok(())
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
