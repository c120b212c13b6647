//! Network namespaces driven through iproute2 and nsenter. The core is fallible
//! (`anyhow::Result`); the short names (`new`, `sh`, `spawn`) panic with the cause,
//! for tests.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::process::Proc;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Runs a shell command on the host; its stdout, or an error with its output.
pub fn host_sh(cmd: &str) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .context("spawning sh")?;
    ensure!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`host_sh`]; panics on failure.
pub fn sh(cmd: &str) -> String {
    host_sh(cmd).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A network namespace, deleted (with everything still running in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `role` must be short: the full name is `lab<pid>-<n>-<role>`.
    pub fn create(role: &str) -> anyhow::Result<Netns> {
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let name = format!("lab{}-{}-{}", std::process::id(), id, role);
        host_sh(&format!("ip netns add {name}"))?;
        let ns = Netns { name };
        ns.exec("ip link set lo up")?;
        Ok(ns)
    }

    /// Like [`Netns::create`]; panics on failure.
    pub fn new(role: &str) -> Netns {
        Netns::create(role).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `<program>` run inside the namespace, as a Command ready to run or spawn.
    ///
    /// Uses `nsenter --net` rather than `ip netns exec`: the latter also gives the
    /// process a private /sys, which hides the host's bpffs (/sys/fs/bpf) and so the
    /// daemon's pinned maps from the CLI.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        c
    }

    /// A shell command inside, pinned to `cpu` (a `taskset -c` list), as a Command.
    pub fn command_on_cpu(&self, cpu: &str, cmd: &str) -> Command {
        let mut c = self.command("taskset");
        c.args(["-c", cpu, "sh", "-c"]).arg(format!("exec {cmd}"));
        c
    }

    /// Runs a shell command inside and returns its output, whatever its status.
    pub fn run(&self, cmd: &str) -> anyhow::Result<Output> {
        self.command("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .with_context(|| format!("[{}] spawning `{cmd}`", self.name))
    }

    /// Runs a shell command inside; its stdout, or an error with its output.
    pub fn exec(&self, cmd: &str) -> anyhow::Result<String> {
        let out = self.run(cmd)?;
        ensure!(
            out.status.success(),
            "[{}] `{cmd}` failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`Netns::exec`]; panics on failure.
    pub fn sh(&self, cmd: &str) -> String {
        self.exec(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Like [`Netns::run`]; panics only if the command cannot start.
    pub fn try_sh(&self, cmd: &str) -> Output {
        self.run(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts a long-running shell command inside (output captured); stopped when
    /// the `Proc` drops.
    pub fn start(&self, cmd: &str) -> anyhow::Result<Proc> {
        let mut c = self.command("sh");
        c.arg("-c")
            .arg(format!("exec {cmd}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Proc::spawn(c, cmd)
    }

    /// Like [`Netns::start`]; panics on failure.
    pub fn spawn(&self, cmd: &str) -> Proc {
        self.start(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts a long-running command pinned to `cpu`, stdout discarded and stderr
    /// passed through (benchmarks).
    pub fn start_on_cpu(&self, cpu: &str, cmd: &str) -> anyhow::Result<Proc> {
        let mut c = self.command_on_cpu(cpu, cmd);
        c.stdout(Stdio::null()).stderr(Stdio::inherit());
        Proc::spawn(c, cmd)
    }

    /// Runs a command pinned to `cpu` to completion (bounded by the program's own
    /// duration); its stdout.
    pub fn output_on_cpu(&self, cpu: &str, cmd: &str) -> anyhow::Result<String> {
        let out = self
            .command_on_cpu(cpu, cmd)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("[{}] spawning `{cmd}`", self.name))?;
        ensure!(
            out.status.success(),
            "[{}] `{cmd}` failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits (10 s at most) until every TCP port in `ports` listens inside.
    pub fn wait_listening(&self, ports: &[u16]) -> anyhow::Result<()> {
        self.poll_ss("ss -ltnH", |text| {
            ports.iter().all(|p| text.contains(&format!(":{p} ")))
        })
        .with_context(|| format!("ports {ports:?} not listening"))
    }

    /// Waits (10 s at most) until every TCP port in `ports` listens on `ip` inside
    /// (for several servers on one namespace, each on its own address).
    pub fn wait_listening_at(&self, ip: &str, ports: &[u16]) -> anyhow::Result<()> {
        self.poll_ss("ss -ltnH", |text| {
            ports.iter().all(|p| text.contains(&format!("{ip}:{p} ")))
        })
        .with_context(|| format!("ports {ports:?} not listening on {ip}"))
    }

    /// Waits (10 s at most) until nothing listens on TCP `port` inside.
    pub fn wait_closed(&self, port: u16) -> anyhow::Result<()> {
        self.poll_ss(&format!("ss -ltnH 'sport = :{port}'"), |text| {
            text.trim().is_empty()
        })
        .with_context(|| format!("port {port} still listening"))
    }

    /// Runs `cmd` every 50 ms until `done(stdout)`, for 10 s at most.
    fn poll_ss(&self, cmd: &str, done: impl Fn(&str) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.exec(cmd)?;
            if done(&text) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "after 10 s in {}, `{cmd}` shows:\n{text}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A kernel network counter inside (`nstat`, absolute value), e.g. `TcpOutSegs`.
    pub fn nstat(&self, name: &str) -> anyhow::Result<u64> {
        let out = self.exec(&format!("nstat -saz {name}"))?;
        out.lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(name)).then(|| cols.next()?.parse().ok())?
            })
            .with_context(|| format!("nstat printed no {name}: {out}"))
    }

    /// Moves `ifname`'s receive processing (the IP and TCP input of every packet the
    /// device receives) from the sender's softirq into kernel threads pinned to `cpu`:
    /// GRO on, which gives a veth its NAPI instance, then threaded NAPI. Returns the
    /// threads' PIDs, for their CPU time. The threads end with the device.
    pub fn threaded_napi(&self, ifname: &str, cpu: &str) -> anyhow::Result<Vec<u32>> {
        let napi_threads = || crate::process::pids_named("napi/");
        let before = napi_threads();
        self.exec(&format!("ethtool -K {ifname} gro on"))?;
        // `ip netns exec`, not `nsenter`: it mounts the namespace's own /sys, where
        // `ifname` is this namespace's device and not the host's of the same name.
        host_sh(&format!(
            "ip netns exec {} sh -c 'echo 1 > /sys/class/net/{ifname}/threaded'",
            self.name
        ))
        .with_context(|| format!("threaded NAPI on {ifname} in {}", self.name))?;
        let new: Vec<u32> = napi_threads()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        ensure!(
            !new.is_empty(),
            "no NAPI thread appeared for {ifname} in {}",
            self.name
        );
        for pid in &new {
            host_sh(&format!("taskset -pc {cpu} {pid}"))?;
        }
        Ok(new)
    }

    /// The MAC address of `ifname` inside.
    pub fn mac_of(&self, ifname: &str) -> anyhow::Result<[u8; 6]> {
        let out = self.exec(&format!("ip -o link show dev {ifname}"))?;
        let hex = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .with_context(|| format!("no MAC address in {out:?}"))?;
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = hex.split(':').collect();
        ensure!(parts.len() == 6, "{hex:?} is not a MAC address");
        for (b, part) in mac.iter_mut().zip(parts) {
            *b = u8::from_str_radix(part, 16)
                .with_context(|| format!("{hex:?} is not a MAC address"))?;
        }
        Ok(mac)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Stop whatever is still running in here (all started by this lab), then
        // remove the namespace (its veth ends and XDP attachments go with it).
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                // A process may exit between the listing and the kill: not an error.
                let _ = Command::new("kill")
                    .args(["-9", pid])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
