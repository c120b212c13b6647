//! etcd (Debian's `etcd-server`) in lab namespaces: one member or a cluster of three,
//! each with its own data directory and log, stopped and started again by tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::{Host, Proc};

/// One member: where it runs and how to start it again with its data.
pub struct EtcdMember {
    pub name: String,
    pub ip: String,
    /// The host's namespace (the topology owns and deletes it).
    ns: String,
    dir: PathBuf,
    proc: Option<Proc>,
}

pub struct Etcd {
    pub members: Vec<EtcdMember>,
    cluster: String,
    tls: Option<EtcdTls>,
    /// `user:password` for etcdctl once authentication is on.
    ctl_user: Option<String>,
}

/// TLS on the client port: a CA, a server certificate per member (for its address)
/// and the client certificate etcdctl uses; clients must present a certificate.
pub struct EtcdTls {
    pub ca: PathBuf,
    pub servers: Vec<crate::certs::CertFiles>,
    pub client: crate::certs::CertFiles,
}

const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

impl Etcd {
    /// Starts one member on each of `hosts` (one cluster), data under `dir`; waits
    /// until the cluster answers.
    pub fn start(hosts: &[&Host], dir: &Path) -> anyhow::Result<Etcd> {
        Etcd::start_with(hosts, dir, None)
    }

    /// Like [`Etcd::start`]; with `tls`, the client port speaks TLS and asks for
    /// client certificates.
    pub fn start_with(hosts: &[&Host], dir: &Path, tls: Option<EtcdTls>) -> anyhow::Result<Etcd> {
        crate::ensure_tools(
            &["etcd", "etcdctl"],
            "cargo xtask setup (Debian etcd-server and etcd-client)",
        )?;
        let cluster = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("e{i}=http://{}:{PEER_PORT}", h.ipv4))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members: Vec::new(),
            cluster,
            tls,
            ctl_user: None,
        };
        for (i, h) in hosts.iter().enumerate() {
            let member_dir = dir.join(format!("etcd{i}"));
            std::fs::create_dir_all(&member_dir)?;
            etcd.members.push(EtcdMember {
                name: format!("e{i}"),
                ip: h.ipv4.clone(),
                ns: h.ns.name.clone(),
                dir: member_dir,
                proc: None,
            });
        }
        for i in 0..etcd.members.len() {
            etcd.start_member(i)?;
        }
        etcd.wait_healthy(Duration::from_secs(30))?;
        Ok(etcd)
    }

    fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let scheme = self.scheme();
        let tls = match &self.tls {
            None => String::new(),
            Some(t) => format!(
                "--client-cert-auth --trusted-ca-file {} --cert-file {} --key-file {} ",
                t.ca.display(),
                t.servers[i].cert.display(),
                t.servers[i].key.display()
            ),
        };
        let cmd = format!(
            "etcd --name {name} --data-dir {data} {tls}\
             --listen-client-urls {scheme}://{ip}:{CLIENT_PORT} --advertise-client-urls {scheme}://{ip}:{CLIENT_PORT} \
             --listen-peer-urls http://{ip}:{PEER_PORT} --initial-advertise-peer-urls http://{ip}:{PEER_PORT} \
             --initial-cluster {cluster} --initial-cluster-state new --initial-cluster-token lab \
             --heartbeat-interval 100 --election-timeout 1000 >>{log} 2>&1",
            name = m.name,
            data = m.dir.join("data").display(),
            ip = m.ip,
            cluster = self.cluster,
            log = m.dir.join("etcd.log").display(),
        );
        let mut command = in_namespace(&m.ns, &format!("exec {cmd}"));
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let proc = Proc::spawn(command, &format!("etcd {}", m.name))?;
        self.members[i].proc = Some(proc);
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://{}:{CLIENT_PORT}", self.scheme(), m.ip))
            .collect()
    }

    /// Turns authentication on: a `root` user (etcdctl's from now on) and `user` with
    /// read-write access to keys under `prefix` only.
    pub fn enable_auth(&mut self, user: &str, password: &str, prefix: &str) -> anyhow::Result<()> {
        self.ctl("user add root --new-user-password root-secret")?;
        self.ctl("role add fleet")?;
        self.ctl(&format!(
            "role grant-permission fleet --prefix=true readwrite {prefix}"
        ))?;
        self.ctl(&format!("user add {user} --new-user-password {password}"))?;
        self.ctl(&format!("user grant-role {user} fleet"))?;
        self.ctl("auth enable")?;
        self.ctl_user = Some("root:root-secret".into());
        Ok(())
    }

    /// Stops member `i` with SIGKILL (a crash: nothing flushed, nothing said).
    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.members[i].proc.take() {
            p.signal("KILL");
            let _ = p.wait_output(Duration::from_secs(5));
        }
    }

    /// Starts member `i` again on its data; waits until the cluster answers.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.start_member(i)?;
        self.wait_healthy(Duration::from_secs(30))
    }

    /// Starts every stopped member again (a cluster needs a quorum back before it
    /// answers); waits until it does.
    pub fn restart_stopped(&mut self) -> anyhow::Result<()> {
        for i in 0..self.members.len() {
            if self.members[i].proc.is_none() {
                self.start_member(i)?;
            }
        }
        self.wait_healthy(Duration::from_secs(30))
    }

    /// Writes many keys fast: transactions of 128 puts (etcd's default limit)
    /// through etcd's JSON gateway, from one Python process.
    pub fn bulk_put(&self, pairs: &[(String, String)]) -> anyhow::Result<()> {
        let file = self.members[0].dir.join("bulk.jsonl");
        let lines: Vec<String> = pairs
            .iter()
            .map(|(k, v)| serde_json::json!([k, v]).to_string())
            .collect();
        std::fs::write(&file, lines.join("\n"))?;
        let script = self.members[0].dir.join("bulk.py");
        std::fs::write(&script, BULK_PUT)?;
        let cmd = format!(
            "python3 {} {} {}:{CLIENT_PORT}",
            script.display(),
            file.display(),
            self.members[0].ip
        );
        let out = in_namespace(&self.members[0].ns, &cmd).output()?;
        anyhow::ensure!(
            out.status.success(),
            "bulk put failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// `etcdctl <args>` against the running members, from member 0's namespace.
    pub fn ctl(&self, args: &str) -> anyhow::Result<String> {
        let running: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.proc.is_some())
            .map(|m| format!("{}://{}:{CLIENT_PORT}", self.scheme(), m.ip))
            .collect();
        let mut flags = String::new();
        if let Some(t) = &self.tls {
            flags += &format!(
                "--cacert {} --cert {} --key {} ",
                t.ca.display(),
                t.client.cert.display(),
                t.client.key.display()
            );
        }
        if let Some(user) = &self.ctl_user {
            flags += &format!("--user {user} ");
        }
        let cmd = format!(
            "ETCDCTL_API=3 etcdctl --dial-timeout 2s --command-timeout 5s {flags}--endpoints {} {args}",
            running.join(",")
        );
        let out = in_namespace(&self.members[0].ns, &cmd)
            .output()
            .with_context(|| format!("running {cmd}"))?;
        anyhow::ensure!(
            out.status.success(),
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until a write and a read through the running members succeed.
    pub fn wait_healthy(&self, within: Duration) -> anyhow::Result<()> {
        crate::try_wait_for("etcd to answer", within, || {
            self.ctl("put /lab/health ok").ok()?;
            self.ctl("get /lab/health")
                .ok()
                .filter(|o| o.contains("ok"))
        })
        .with_context(|| {
            let logs: Vec<String> = self
                .members
                .iter()
                .map(|m| {
                    let log = std::fs::read_to_string(m.dir.join("etcd.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    format!("{}: {}", m.name, tail.join(" | "))
                })
                .collect();
            format!("etcd logs: {}", logs.join("\n"))
        })?;
        Ok(())
    }
}

/// `sh -c cmd` in the namespace called `ns`.
fn in_namespace(ns: &str, cmd: &str) -> std::process::Command {
    let mut c = std::process::Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .args(["--", "sh", "-c", cmd]);
    c
}

/// Reads `[key, value]` JSON lines and puts them with /v3/kv/txn, 128 at a time.
const BULK_PUT: &str = r#"
import base64, http.client, json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
conn = http.client.HTTPConnection(sys.argv[2], timeout=30)
b64 = lambda s: base64.b64encode(s.encode()).decode()
for i in range(0, len(lines), 128):
    ops = [{"requestPut": {"key": b64(k), "value": b64(v)}} for k, v in lines[i:i + 128]]
    conn.request("POST", "/v3/kv/txn", json.dumps({"success": ops}))
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"txn failed: {r.status} {body[:200]}")
"#;
