//! The verifier's statistics for BPF programs a closure loads (through aya or anything
//! else), for the verifier budget test.
//!
//! aya 0.14 gives BPF_PROG_LOAD a log buffer only when a load has failed (its
//! `verifier_log_level` then applies and the log lands in the error); after a
//! successful load the verifier's numbers are gone. So [`capture`] runs the closure on
//! a thread of its own whose `bpf(BPF_PROG_LOAD)` calls stop in a seccomp user
//! notification; the calling thread, as supervisor, points the request of each named
//! program at a log buffer with `BPF_LOG_STATS` and lets the kernel carry it out. The
//! program loaded is byte for byte the one aya sends.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;

use anyhow::{Context, bail};

/// `BPF_PROG_LOAD` (bpf(2) command) and `BPF_LOG_STATS` (verifier log level).
const BPF_PROG_LOAD: u32 = 5;
const BPF_LOG_STATS: u32 = 4;
/// The kernel truncates program names to 15 bytes.
const BPF_NAME_LEN: usize = 15;
/// Room for a log of statistics only (a few hundred bytes).
const LOG_SIZE: usize = 64 * 1024;

/// What the verifier reported for one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// "processed N insns": instructions the verifier walked, over all paths.
    pub processed_insns: u32,
    /// "stack depth A+B+...": bytes of stack per subprogram (the program first).
    pub stack_depths: Vec<u32>,
}

impl Stats {
    /// Parses the lines `stack depth 24+0+64` and `processed 1234 insns (limit ...`.
    pub fn parse(log: &str) -> anyhow::Result<Stats> {
        let mut processed = None;
        let mut stack = None;
        for line in log.lines() {
            if let Some(rest) = line.strip_prefix("processed ") {
                let n = rest.split_whitespace().next().unwrap_or_default();
                processed = Some(n.parse().with_context(|| format!("in {line:?}"))?);
            } else if let Some(rest) = line.strip_prefix("stack depth ") {
                let depths: Result<Vec<u32>, _> = rest.trim().split('+').map(str::parse).collect();
                stack = Some(depths.with_context(|| format!("in {line:?}"))?);
            }
        }
        match (processed, stack) {
            (Some(processed_insns), Some(stack_depths)) => Ok(Stats {
                processed_insns,
                stack_depths,
            }),
            _ => bail!("no `processed N insns` or `stack depth` line in the log:\n{log}"),
        }
    }

    /// The depths as the verifier prints them ("24+0+64").
    pub fn stack_text(&self) -> String {
        let parts: Vec<String> = self.stack_depths.iter().map(u32::to_string).collect();
        parts.join("+")
    }

    /// All subprograms' frames together: an upper bound of any call chain's stack.
    pub fn stack_total(&self) -> u32 {
        self.stack_depths.iter().sum()
    }
}

/// The head of `union bpf_attr` for BPF_PROG_LOAD, up to the name (uapi/linux/bpf.h).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Runs `load` on a thread of its own and returns its result with the verifier log
/// of every program in `programs` it loaded (by name; a name loaded twice keeps the
/// last log). Requests that already carry a log buffer (aya's retry after a failure)
/// are left alone. Needs root (or CAP_SYS_ADMIN) like the loads themselves.
pub fn capture<T: Send>(
    programs: &[&str],
    load: impl FnOnce() -> T + Send,
) -> anyhow::Result<(T, Vec<(String, String)>)> {
    std::thread::scope(|s| {
        let (listener_tx, listener_rx) = mpsc::channel();
        let loader = s.spawn(move || {
            // The filter stays on this thread until it exits, which is right after `load`.
            match notify_on_prog_load() {
                Ok(fd) => {
                    let _ = listener_tx.send(Ok(fd));
                    Some(load())
                }
                Err(e) => {
                    let _ = listener_tx.send(Err(e));
                    None
                }
            }
        });
        let listener = listener_rx.recv().context("loader thread")??;
        let mut buffers: Vec<(String, Box<[u8]>)> = Vec::new();
        while !loader.is_finished() {
            let mut pfd = libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the timeout bounds the wait.
            if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 && pfd.revents & libc::POLLIN != 0 {
                supervise_one(&listener, programs, &mut buffers)?;
            }
        }
        let result = loader
            .join()
            .map_err(|_| anyhow::anyhow!("the loading closure panicked"))?
            .context("no result")?;
        let logs = buffers
            .into_iter()
            .map(|(name, buf)| {
                let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                (name, String::from_utf8_lossy(&buf[..end]).into_owned())
            })
            .collect();
        Ok((result, logs))
    })
}

/// Installs, on the calling thread only, a seccomp filter that turns its
/// `bpf(BPF_PROG_LOAD, ...)` calls into user notifications; the listener's fd.
fn notify_on_prog_load() -> anyhow::Result<OwnedFd> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter};
    let op = |code: u32, k: u32, jt: u8| sock_filter {
        code: code as u16,
        jt,
        jf: 0,
        k,
    };
    let ret = |action: u32| op(BPF_RET | BPF_K, action, 0);
    let load = |offset: u32| op(BPF_LD | BPF_W | BPF_ABS, offset, 0);
    // Skips the next instruction when the accumulator equals `k`.
    let skip_if = |k: u32| op(BPF_JMP | BPF_JEQ | BPF_K, k, 1);
    // struct seccomp_data: nr at 0, args[0] at 16 (its low half on little endian).
    let mut filter = [
        load(0),
        skip_if(libc::SYS_bpf as u32),
        ret(libc::SECCOMP_RET_ALLOW),
        load(16),
        skip_if(BPF_PROG_LOAD),
        ret(libc::SECCOMP_RET_ALLOW),
        ret(libc::SECCOMP_RET_USER_NOTIF),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, valid for the call; without the TSYNC flag
    // the filter applies to this thread only.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("seccomp(SET_MODE_FILTER)");
    }
    // SAFETY: the kernel just returned this fd to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Receives one notification; gives a named program's request a log buffer; lets the
/// call go on.
fn supervise_one(
    listener: &OwnedFd,
    programs: &[&str],
    buffers: &mut Vec<(String, Box<[u8]>)>,
) -> anyhow::Result<()> {
    // SAFETY: all-zero is a valid seccomp_notif (the kernel requires it zeroed).
    let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `request` is a seccomp_notif the kernel fills.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut request,
        )
    } < 0
    {
        // ENOENT: the call was interrupted before we received it; nothing to answer.
        return Ok(());
    }
    let attr = request.data.args[1] as *mut ProgLoadAttr;
    let size = request.data.args[2] as usize;
    if size >= size_of::<ProgLoadAttr>() && !attr.is_null() {
        // SAFETY: the notifying thread is the loader thread of this process, blocked in
        // bpf() until we answer, and `attr` is the bpf_attr it passed (at least `size`
        // bytes, checked above). The kernel reads it only after our answer, and may
        // write it (aya passes it mutably): we write it as the kernel might.
        let attr = unsafe { &mut *attr };
        let name_len = attr.prog_name.iter().position(|b| *b == 0).unwrap_or(16);
        let name = &attr.prog_name[..name_len];
        let wanted = programs.iter().find(|p| {
            let p = p.as_bytes();
            &p[..p.len().min(BPF_NAME_LEN)] == name
        });
        if let Some(wanted) = wanted
            && attr.log_buf == 0
            && attr.log_size == 0
        {
            let mut buf = vec![0u8; LOG_SIZE].into_boxed_slice();
            attr.log_level = BPF_LOG_STATS;
            attr.log_buf = buf.as_mut_ptr() as u64;
            attr.log_size = LOG_SIZE as u32;
            // The heap block does not move with the Box: the kernel writes it during
            // the call, and it is read only after the loader thread has finished.
            buffers.retain(|(n, _)| n != wanted);
            buffers.push((wanted.to_string(), buf));
        }
    }
    let mut response = libc::seccomp_notif_resp {
        id: request.id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: `response` is a valid seccomp_notif_resp for this listener.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut response,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error()).context("SECCOMP_IOCTL_NOTIF_SEND");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_statistics_lines() {
        let log = "verification time 1042 usec\nstack depth 120+0+72\n\
                   processed 4711 insns (limit 1000000) max_states_per_insn 4 \
                   total_states 321 peak_states 300 mark_read 12\n";
        let stats = Stats::parse(log).unwrap();
        assert_eq!(stats.processed_insns, 4711);
        assert_eq!(stats.stack_depths, vec![120, 0, 72]);
        assert_eq!(stats.stack_text(), "120+0+72");
        assert_eq!(stats.stack_total(), 192);
    }

    #[test]
    fn a_log_without_statistics_is_an_error() {
        assert!(Stats::parse("0: R1=ctx() R10=fp0\n").is_err());
        assert!(Stats::parse("stack depth 8\nprocessed x insns\n").is_err());
    }
}
