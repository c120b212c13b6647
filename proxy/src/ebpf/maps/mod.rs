//! Typed handles on the XDP program's maps, opened from a freshly loaded program or
//! from the pins (so CLI commands work against a running daemon without talking to
//! it). One file per job:
//!
//! - [`lists`]: allow/block list edits and reads (both address families, one code path).
//! - `summary`: the IPv4 /16 and /24 summary bitmaps kept in step with the IPv4 tries.
//! - [`rate`]: rate limits, sampling and hash seeds (the `CONFIG` and `PORTS` maps).
//! - `counters`: per-interface verdict counters.
//! - [`services`]: listeners with their SYN cookie state, served ports, service
//!   addresses (only from a loaded program: not pinned).
//! - [`steering`]: connection steering's state, VIPs, members and table slots (only
//!   from a loaded program: not pinned).

mod counters;
pub mod fleet;
pub mod lists;
pub mod rate;
pub mod services;
pub mod steering;
mod summary;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use aya::maps::{Array, Map, MapData, MapError, PerCpuArray};
use proxy_common::{Counter, PortSet, XdpConfig, map_names};

pub use self::lists::ListTries;
pub use self::rate::RateLimits;
pub use self::services::{ServiceMaps, ServiceSettings};
pub use self::steering::SteerMaps;
pub use crate::api::{List, ListEntry, Origin};

use super::EbpfError;
use super::pins::map_name_static;

pub struct Maps {
    allow: ListTries,
    block: ListTries,
    config: Array<MapData, XdpConfig>,
    ports: Array<MapData, PortSet>,
    counters: PerCpuArray<MapData, Counter>,
    pub(super) policy_gen: Array<MapData, u64>,
    v4_summary: Array<MapData, u64>,
    /// None when opened from the pins of a daemon older than this level.
    v4_summary_16: Option<Array<MapData, u64>>,
    services: Option<ServiceMaps>,
    steering: Option<SteerMaps>,
    /// The pin directory, flock()ed around every list change: the daemon and CLI
    /// commands may write the same maps. None for private (unpinned) maps.
    lock: Option<File>,
}

/// Holds the writers' lock (an flock on the pin directory's fd) until dropped.
struct WriteLock(Option<std::os::fd::RawFd>);

impl Drop for WriteLock {
    fn drop(&mut self) {
        if let Some(fd) = self.0 {
            // SAFETY: `fd` belongs to the `File` in `Maps::lock`, which outlives this guard
            // (the guard borrows nothing, but is only created and dropped inside `&mut Maps` methods).
            unsafe { libc::flock(fd, libc::LOCK_UN) };
        }
    }
}

/// Wraps an aya map error with the map's name.
fn map_err(name: &str) -> impl Fn(MapError) -> EbpfError + '_ {
    move |source| EbpfError::Map {
        map: map_name_static(name),
        source,
    }
}

impl Maps {
    /// Takes the maps out of a freshly loaded program.
    pub(crate) fn take_from(ebpf: &mut aya::Ebpf) -> Result<Maps, EbpfError> {
        let mut maps = Maps::open(
            |name| {
                ebpf.take_map(name).ok_or_else(|| EbpfError::Io {
                    context: format!("the embedded object has no map {name}"),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })
            },
            true,
        )?;
        maps.services = Some(ServiceMaps::take_from(ebpf)?);
        maps.steering = Some(SteerMaps::take_from(ebpf)?);
        Ok(maps)
    }

    /// Opens the maps a running (or previous) daemon pinned under `dir`.
    pub fn from_pins(dir: &Path) -> Result<Maps, EbpfError> {
        if !dir.join(map_names::CONFIG).exists() {
            return Err(EbpfError::NotPinned(dir.to_path_buf()));
        }
        let has_summary_16 = dir.join(map_names::V4_SUMMARY_16).exists();
        let mut maps = Maps::open(
            |name| {
                let data = MapData::from_pin(dir.join(name)).map_err(map_err(name))?;
                Map::from_map_data(data).map_err(map_err(name))
            },
            has_summary_16,
        )?;
        maps.lock_dir(dir)?;
        Ok(maps)
    }

    /// Serialise list changes with other processes using the maps pinned at `dir`.
    pub(crate) fn lock_dir(&mut self, dir: &Path) -> Result<(), EbpfError> {
        let file = File::open(dir).map_err(|source| EbpfError::Io {
            context: format!("opening {} for locking", dir.display()),
            source,
        })?;
        self.lock = Some(file);
        Ok(())
    }

    fn write_lock(&self) -> WriteLock {
        let fd = self.lock.as_ref().map(|f| f.as_raw_fd());
        if let Some(fd) = fd {
            // SAFETY: `fd` is the open directory `File` held in `self.lock`.
            unsafe { libc::flock(fd, libc::LOCK_EX) };
        }
        WriteLock(fd)
    }

    fn open(
        mut get: impl FnMut(&str) -> Result<Map, EbpfError>,
        has_summary_16: bool,
    ) -> Result<Maps, EbpfError> {
        macro_rules! typed {
            ($name:expr) => {
                get($name)?.try_into().map_err(map_err($name))?
            };
        }
        Ok(Maps {
            allow: ListTries::open(List::Allow, &mut get)?,
            block: ListTries::open(List::Block, &mut get)?,
            config: typed!(map_names::CONFIG),
            ports: typed!(map_names::PORTS),
            counters: typed!(map_names::COUNTERS),
            policy_gen: typed!(map_names::POLICY_GEN),
            v4_summary: typed!(map_names::V4_SUMMARY),
            v4_summary_16: if has_summary_16 {
                Some(typed!(map_names::V4_SUMMARY_16))
            } else {
                None
            },
            services: None,
            steering: None,
            lock: None,
        })
    }

    /// Connection steering's maps (None for maps opened from the pins: not pinned).
    pub fn steering(&mut self) -> Option<&mut SteerMaps> {
        self.steering.as_mut()
    }

    pub fn steering_ref(&self) -> Option<&SteerMaps> {
        self.steering.as_ref()
    }

    fn tries(&self, list: List) -> &ListTries {
        match list {
            List::Allow => &self.allow,
            List::Block => &self.block,
        }
    }

    fn tries_mut(&mut self, list: List) -> &mut ListTries {
        match list {
            List::Allow => &mut self.allow,
            List::Block => &mut self.block,
        }
    }
}

fn is_errno(e: &MapError, errno: i32) -> bool {
    match e {
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(errno),
        MapError::KeyNotFound => errno == libc::ENOENT,
        _ => false,
    }
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid local `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
