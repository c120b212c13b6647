//! Network namespaces, veth links and a bridge, driven through iproute2.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Runs a command on the host; panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with everything still running in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `role` must be short: the full name is `pxt<pid>-<n>-<role>`.
    pub fn new(role: &str) -> Netns {
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let name = format!("pxt{}-{}-{}", std::process::id(), id, role);
        sh(&format!("ip netns add {name}"));
        let ns = Netns { name };
        ns.sh("ip link set lo up");
        ns
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

    /// Runs a shell command inside; panics with its output on failure.
    pub fn sh(&self, cmd: &str) -> String {
        let out = self.try_sh(cmd);
        assert!(
            out.status.success(),
            "[{}] `{cmd}` failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell command inside and returns its output, whatever its status.
    pub fn try_sh(&self, cmd: &str) -> Output {
        self.command("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("spawn nsenter")
    }

    /// Starts a long-running shell command inside; stopped when the `Proc` drops.
    pub fn spawn(&self, cmd: &str) -> Proc {
        let child = self
            .command("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsenter");
        Proc {
            child: Some(child),
            what: cmd.to_string(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Stop whatever the test left running in here, then remove the namespace
        // (its veth ends and XDP attachments go with it).
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process stopped by PID (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct Proc {
    child: Option<Child>,
    pub what: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status();
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits up to `timeout` for exit; returns the output (stdout, stderr) and status.
    pub fn wait_output(mut self, timeout: Duration) -> (String, String, Option<i32>) {
        let mut child = self.child.take().expect("child");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("wait");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    }

    /// Stops it (SIGTERM, SIGKILL after 5 s) and returns (stdout, stderr, exit code).
    pub fn stop(self) -> (String, String, Option<i32>) {
        self.signal("TERM");
        self.wait_output(Duration::from_secs(5))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A switch namespace with a bridge, and hosts each wired to it by a veth pair.
///
/// Host `i` gets `eth0` with `10.77.0.<i+1>/24` and `fd77::<i+1>/64`; the caller
/// decides what each host is (load balancer, client, attacker, backend).
pub struct Topology {
    pub hosts: Vec<Host>,
    // Dropped last: deleting the switch removes the peer veth ends.
    switch: Netns,
}

pub struct Host {
    pub ns: Netns,
    pub ipv4: String,
    pub ipv6: String,
    /// The host side interface name (always `eth0`).
    pub ifname: String,
}

impl Topology {
    pub fn new(roles: &[&str]) -> Topology {
        let switch = Netns::new("sw");
        switch.sh("ip link add br0 type bridge && ip link set br0 up");
        let mut hosts = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let ns = Netns::new(role);
            let n = i + 1;
            let port = format!("p{n}");
            let ipv4 = format!("10.77.0.{n}");
            let ipv6 = format!("fd77::{n}");
            sh(&format!(
                "ip link add {port} netns {sw} type veth peer name eth0 netns {ns}",
                sw = switch.name,
                ns = ns.name
            ));
            switch.sh(&format!(
                "ip link set {port} master br0 && ip link set {port} up"
            ));
            ns.sh(&format!(
                "ip addr add {ipv4}/24 dev eth0 && ip -6 addr add {ipv6}/64 dev eth0 nodad && ip link set eth0 up"
            ));
            hosts.push(Host {
                ns,
                ipv4,
                ipv6,
                ifname: "eth0".into(),
            });
        }
        Topology { hosts, switch }
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The switch namespace's name.
    pub fn switch_name(&self) -> &str {
        &self.switch.name
    }
}
