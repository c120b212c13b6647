//! The kernel half, seen from userspace: the embedded XDP object, its loader
//! (load, attach, pin, detach) and typed handles on its maps. This module is the
//! only code that knows map names.
//!
//! - [`loader`]: preflight checks, load with pinned maps, attach/detach per interface.
//! - [`maps`]: allow/block lists, rate-limit config, counters (from a loaded program
//!   or straight from the pins, for CLI commands).
//! - [`events`]: sampled drop events → aggregated summaries.
//! - [`services`]: listeners, served ports and service addresses for the service
//!   filter and SYN cookies, and the `auto` cookie switch; [`tcp_sysctl`]: the TCP
//!   settings cookies need.

pub mod collector;
pub mod events;
pub mod host;
pub mod loader;
pub mod maps;
mod pins;
pub mod runtime;
pub mod services;
pub mod tcp_sysctl;

use std::path::PathBuf;

/// The XDP program built by `proxy/build.rs`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy-ebpf.o"));
/// The route [`OBJECT`] was built by (`debian` or `nightly`, see `ebpf-build`).
pub const OBJECT_ROUTE: &str = env!("PROXY_EBPF_BUILT_ROUTE");
/// The compiler that built [`OBJECT`]: rustc, its LLVM, bpf-linker.
pub const OBJECT_COMPILER: &str = env!("PROXY_EBPF_BUILT_COMPILER");

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "loading the XDP program needs root or the capabilities CAP_BPF, CAP_NET_ADMIN and \
         CAP_PERFMON (missing: {missing}); run as root, grant them (see the systemd unit), \
         or run userspace-only by removing the [xdp] section"
    )]
    MissingCapabilities { missing: String },
    #[error(
        "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing): the XDP program needs a \
         kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.10+ distributions ship it); or run \
         userspace-only by removing the [xdp] section"
    )]
    NoBtf,
    #[error("interface {0:?} does not exist (list interfaces with `ip link show`)")]
    NoSuchInterface(String),
    #[error("attaching XDP to {interface} in {mode} mode was refused: {source}. {hint}")]
    AttachRefused {
        interface: String,
        mode: &'static str,
        hint: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("{path} is not on a bpffs mount and mounting bpffs at /sys/fs/bpf failed: {source}")]
    NoBpffs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "pinned map {path} does not match this build ({what}); it was created by another \
         version of proxy. Remove the pin directory to start fresh (policy in it is lost): \
         `proxy xdp unpin --pin-path {dir}`"
    )]
    IncompatiblePin {
        path: PathBuf,
        dir: PathBuf,
        what: String,
    },
    #[error(
        "no pinned maps under {0}: is the daemon running with an [xdp] section, and is \
         xdp.pin_path the same? (pass --pin-path)"
    )]
    NotPinned(PathBuf),
    #[error(
        "the {list} ({map}) is full ({capacity} entries): remove entries or raise xdp.max_{kind}_entries and restart"
    )]
    MapFull {
        list: &'static str,
        map: &'static str,
        capacity: u32,
        kind: &'static str,
    },
    #[error("loading the XDP program failed: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("XDP program: {0}")]
    Program(Box<aya::programs::ProgramError>),
    #[error("eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

// Boxed: aya's errors are large, and every fallible call here returns EbpfError.
impl From<aya::EbpfError> for EbpfError {
    fn from(e: aya::EbpfError) -> EbpfError {
        EbpfError::Load(Box::new(e))
    }
}

impl From<aya::programs::ProgramError> for EbpfError {
    fn from(e: aya::programs::ProgramError) -> EbpfError {
        EbpfError::Program(Box::new(e))
    }
}
