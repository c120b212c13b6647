//! A real DNS server (Debian's dnsmasq) in a namespace, authoritative for one test
//! domain: A/AAAA records from a hosts file (changed in place, re-read on SIGHUP)
//! and SRV records (changed by a restart), a short TTL, NXDOMAIN for every other
//! name of the domain, no recursion.

use std::path::{Path, PathBuf};

use crate::{Netns, Proc};

pub struct Dnsmasq {
    pub proc: Option<Proc>,
    /// `ip name` lines.
    pub hosts: PathBuf,
    conf: PathBuf,
    listen: String,
}

/// An SRV record: target host, port, weight (priority 0).
pub struct SrvRecord<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub port: u16,
    pub weight: u16,
}

impl Dnsmasq {
    /// Serves `domain` on `listen` (an address of `ns`), port 53, TTL `ttl` seconds.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        listen: &str,
        domain: &str,
        ttl: u32,
        hosts: &[(&str, &str)],
        srv: &[SrvRecord<'_>],
    ) -> anyhow::Result<Dnsmasq> {
        std::fs::create_dir_all(dir)?;
        let mut d = Dnsmasq {
            proc: None,
            hosts: dir.join("hosts"),
            conf: dir.join("dnsmasq.conf"),
            listen: listen.to_owned(),
        };
        d.set_hosts(hosts)?;
        d.write_conf(domain, ttl, srv)?;
        d.run(ns)?;
        Ok(d)
    }

    /// Rewrites the A/AAAA records: `(address, name)` pairs (then [`Dnsmasq::reload`]).
    pub fn set_hosts(&self, hosts: &[(&str, &str)]) -> anyhow::Result<()> {
        let text: String = hosts
            .iter()
            .map(|(ip, name)| format!("{ip} {name}\n"))
            .collect();
        std::fs::write(&self.hosts, text)?;
        Ok(())
    }

    /// dnsmasq re-reads the hosts file.
    pub fn reload(&self) {
        if let Some(p) = &self.proc {
            p.signal("HUP");
        }
    }

    /// Stops it (SIGTERM, by PID): the resolver then times out.
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }

    /// Restarts with these SRV records (the configuration file holds them).
    pub fn restart(
        &mut self,
        ns: &Netns,
        domain: &str,
        ttl: u32,
        srv: &[SrvRecord<'_>],
    ) -> anyhow::Result<()> {
        self.stop();
        self.write_conf(domain, ttl, srv)?;
        self.run(ns)
    }

    fn write_conf(&self, domain: &str, ttl: u32, srv: &[SrvRecord<'_>]) -> anyhow::Result<()> {
        let mut conf = format!(
            "no-resolv\nno-hosts\nno-poll\nbind-interfaces\nlisten-address={}\nport=53\n\
             local=/{domain}/\naddn-hosts={}\nlocal-ttl={ttl}\nauth-ttl={ttl}\nneg-ttl={ttl}\n\
             log-queries\n",
            self.listen,
            self.hosts.display()
        );
        for r in srv {
            conf += &format!(
                "srv-host={},{},{},0,{}\n",
                r.name, r.target, r.port, r.weight
            );
        }
        std::fs::write(&self.conf, conf)?;
        Ok(())
    }

    fn run(&mut self, ns: &Netns) -> anyhow::Result<()> {
        let proc = ns.start(&format!(
            "dnsmasq --keep-in-foreground --log-facility=- --conf-file={}",
            self.conf.display()
        ))?;
        self.proc = Some(proc);
        crate::try_wait_for(
            "dnsmasq to answer",
            std::time::Duration::from_secs(10),
            || {
                let out = ns
                    .run(&format!("ss -lunH 'sport = :53' src {}", self.listen))
                    .ok()?;
                (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
            },
        )
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}
