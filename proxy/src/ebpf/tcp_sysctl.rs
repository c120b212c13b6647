//! The TCP settings XDP SYN cookies depend on, in the daemon's network namespace.
//!
//! - `net.ipv4.tcp_syncookies = 2`: the kernel's cookie helper issues a cookie for a
//!   listener whose queue is not full only in this mode (with 1 it returns none).
//! - `net.ipv4.tcp_timestamps = 2` (timestamps without per-connection random offsets):
//!   with 1 the kernel subtracts a secret offset from the echoed timestamp before
//!   decoding the window scale / SACK bits a cookie SYN-ACK carries there, and the
//!   XDP program cannot know it.
//!
//! Both are set while a listener has cookies `on` or `auto`, and restored on shutdown.
//! The window scale the kernel will use for a connection made from a cookie is read
//! from the receive-buffer sysctls, so the SYN-ACK advertises the same one.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";
const TIMESTAMPS: &str = "/proc/sys/net/ipv4/tcp_timestamps";
const TCP_RMEM: &str = "/proc/sys/net/ipv4/tcp_rmem";
const RMEM_MAX: &str = "/proc/sys/net/core/rmem_max";
const LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Largest TCP window shift (RFC 7323).
const MAX_WSCALE: u32 = 14;

fn read(path: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Sysctls changed for SYN cookies, with their previous values.
#[derive(Debug, Default)]
pub struct CookieSysctls {
    changed: Vec<(PathBuf, String)>,
}

/// Values a predecessor changed (an upgrade): this process restores them on exit.
static INHERITED: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

/// Takes over the predecessor's sysctls to restore (`proxy run --takeover`).
pub fn inherit(changed: Vec<(PathBuf, String)>) {
    *INHERITED.lock().expect("sysctl lock") = changed;
}

impl CookieSysctls {
    /// Sets what cookies need; each change is logged. A sysctl that cannot be written
    /// is an error naming it and the value to set.
    pub fn apply() -> anyhow::Result<CookieSysctls> {
        let mut done = CookieSysctls {
            changed: std::mem::take(&mut *INHERITED.lock().expect("sysctl lock")),
        };
        done.set(
            SYNCOOKIES,
            |v| v != "2",
            "2",
            "the cookie helper issues cookies only in mode 2",
        )?;
        done.set(
            TIMESTAMPS,
            |v| v == "1",
            "2",
            "cookie SYN-ACKs carry window scale and SACK in the timestamp, which random \
             per-connection offsets (mode 1) would hide from the kernel",
        )?;
        if read(TIMESTAMPS).is_ok_and(|v| v == "0") {
            warn!(
                "net.ipv4.tcp_timestamps is 0: connections made from SYN cookies get no window \
                 scaling or SACK (set it to 2 to keep them)"
            );
        }
        Ok(done)
    }

    /// Checks, without changing anything, that [`CookieSysctls::apply`] can write
    /// the sysctls it would change (a daemon that dropped its capabilities cannot).
    pub fn check() -> anyhow::Result<()> {
        let needs = [
            (SYNCOOKIES, read(SYNCOOKIES).is_ok_and(|v| v != "2"), "2"),
            (TIMESTAMPS, read(TIMESTAMPS).is_ok_and(|v| v == "1"), "2"),
        ];
        for (path, change, value) in needs {
            if change {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "XDP SYN cookies need {path} = {value} and it cannot be written: {e} \
                         (set it yourself, or turn syn_cookies off on every listener)"
                        )
                    })?;
            }
        }
        Ok(())
    }

    fn set(
        &mut self,
        path: &str,
        needs_change: impl Fn(&str) -> bool,
        value: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        let before = read(path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
        if !needs_change(&before) {
            return Ok(());
        }
        std::fs::write(path, value).map_err(|e| {
            anyhow::anyhow!(
                "setting {path} to {value} for XDP SYN cookies: {e} (set it yourself, or turn \
                 syn_cookies off on every listener)"
            )
        })?;
        info!(
            sysctl = sysctl_name(path),
            from = before,
            to = value,
            "{why}; restored on shutdown"
        );
        self.changed.push((PathBuf::from(path), before));
        Ok(())
    }

    /// For the successor of an upgrade: what to restore; this process restores nothing.
    pub fn hand_over(&mut self) -> Vec<(PathBuf, String)> {
        std::mem::take(&mut self.changed)
    }

    /// The values to restore, without giving them up.
    pub fn to_restore(&self) -> Vec<(PathBuf, String)> {
        self.changed.clone()
    }

    /// Puts the previous values back.
    pub fn restore(&mut self) {
        for (path, before) in self.changed.drain(..).rev() {
            match std::fs::write(&path, &before) {
                Ok(()) => info!(
                    sysctl = sysctl_name(&path.to_string_lossy()),
                    to = before,
                    "restored"
                ),
                Err(e) => warn!(path = %path.display(), error = %e, "cannot restore the sysctl"),
            }
        }
    }
}

impl Drop for CookieSysctls {
    fn drop(&mut self) {
        self.restore();
    }
}

fn sysctl_name(path: &str) -> String {
    Path::new(path)
        .strip_prefix("/proc/sys")
        .map(|p| p.to_string_lossy().replace('/', "."))
        .unwrap_or_else(|_| path.to_string())
}

/// The window scale the kernel picks for a connection created from a cookie:
/// `ilog2(max(tcp_rmem[2], rmem_max)) - 15`, clamped to 0..=14 (as
/// `tcp_select_initial_window`, for listeners without SO_RCVBUF or a window clamp).
pub fn synack_wscale() -> u8 {
    let rmem2 = read(TCP_RMEM)
        .ok()
        .and_then(|v| {
            v.split_whitespace()
                .nth(2)
                .and_then(|x| x.parse::<u64>().ok())
        })
        .unwrap_or(6 << 20);
    let rmem_max = read(RMEM_MAX)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    wscale_for(rmem2.max(rmem_max))
}

fn wscale_for(space: u64) -> u8 {
    let space = space.clamp(1, u64::from(u32::MAX));
    (space.ilog2().saturating_sub(15)).min(MAX_WSCALE) as u8
}

/// `net.ipv4.ip_local_port_range`: the host's own client ports.
pub fn ephemeral_ports() -> (u16, u16) {
    read(LOCAL_PORT_RANGE)
        .ok()
        .and_then(|v| {
            let mut parts = v.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wscale_follows_the_largest_receive_buffer() {
        assert_eq!(wscale_for(6 << 20), 7);
        assert_eq!(wscale_for(32 << 20), 10);
        assert_eq!(wscale_for(104_857_600), 11);
        assert_eq!(wscale_for(4096), 0);
        assert_eq!(wscale_for(u64::MAX), 14);
    }

    #[test]
    fn names_read_like_sysctl() {
        assert_eq!(sysctl_name(SYNCOOKIES), "net.ipv4.tcp_syncookies");
    }
}
