//! What loading needs from the host: capabilities, BTF, the memlock limit, a bpffs
//! mount for the pins, and interface names ↔ indices.

use std::ffi::CString;
use std::path::Path;

use tracing::info;

use super::EbpfError;

pub fn if_index(interface: &str) -> Result<u32, EbpfError> {
    let name = CString::new(interface).map_err(|_| EbpfError::NoSuchInterface(interface.into()))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(EbpfError::NoSuchInterface(interface.into())),
        index => Ok(index),
    }
}

/// Interface name for an index, if it exists.
pub fn if_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, the size if_indextoname writes at most.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    Some(
        // SAFETY: on success `p` points into `buf`, which now holds a NUL-terminated name.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON, and kernel BTF.
pub(super) fn preflight() -> Result<(), EbpfError> {
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
pub(super) fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the valid local `unlimited`.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK (only kernels before 5.11 need it)");
    }
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statfs.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Pins need a bpffs; mount the conventional one at /sys/fs/bpf if nothing is there.
pub(super) fn ensure_bpffs(pin_dir: &Path) -> Result<(), EbpfError> {
    let existing = pin_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if is_bpffs(existing) {
        return Ok(());
    }
    let root = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(root) && !is_bpffs(root) {
        // SAFETY: every pointer is a NUL-terminated static string or null (no data).
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
