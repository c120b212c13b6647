//! Floods from trafgen (netsniff-ng): spoofed-source TCP SYNs or UDP datagrams, sent
//! from inside a namespace, always bounded in packets (`-n`) and in time (`timeout`),
//! optionally in rate. Only to addresses inside the test's own namespaces.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::netns::Netns;

/// What to send: every packet from a random source in 10.200.0.0/16 (and a random
/// source port) to `dst:port`.
#[derive(Debug, Clone, Copy)]
pub enum Flood {
    Syn,
    Udp,
}

/// A bounded flood.
#[derive(Debug, Clone)]
pub struct Trafgen {
    pub flood: Flood,
    /// The destination's MAC (the next hop on the attacker's segment).
    pub dst_mac: String,
    pub dst: String,
    pub port: u16,
    pub packets: u64,
    /// Packets per second; None: as fast as trafgen goes.
    pub rate: Option<u32>,
    /// Hard stop, whatever is left to send.
    pub max_time: Duration,
    /// Pin trafgen to this CPU (`taskset -c`).
    pub cpu: Option<String>,
}

impl Trafgen {
    /// The trafgen configuration (checksums are computed by trafgen's header helpers).
    pub fn config(&self) -> String {
        let l4 = match self.flood {
            Flood::Syn => format!(
                "tcp(sp=drnd(1024, 65535), dp={}, seq=drnd(), syn, win=64240)",
                self.port
            ),
            Flood::Udp => format!(
                "udp(sp=drnd(1024, 65535), dp={}), fill(0x41, 32)",
                self.port
            ),
        };
        format!(
            "{{\n  eth(da={}),\n  ipv4(sa=10.200.0.0, sa[2]=drnd(), sa[3]=drnd(1, 254), da={}, id=drnd(), df, ttl=64),\n  {l4}\n}}\n",
            self.dst_mac, self.dst
        )
    }

    /// Runs it on `ifname` in `ns` (config written under `dir`); the packets sent.
    pub fn run(&self, ns: &Netns, ifname: &str, dir: &Path) -> anyhow::Result<u64> {
        let file = dir.join(format!("trafgen-{:?}-{}.cfg", self.flood, self.port));
        std::fs::write(&file, self.config()).context("writing the trafgen config")?;
        let rate = self.rate.map(|r| format!("-b {r}pps")).unwrap_or_default();
        let pin = self
            .cpu
            .as_ref()
            .map(|c| format!("taskset -c {c}"))
            .unwrap_or_default();
        // SIGINT at the deadline: trafgen then still prints what it sent.
        let out = ns.try_sh(&format!(
            "timeout -s INT {secs:.1} {pin} trafgen -c {cfg} -o {ifname} -n {n} -P 1 {rate} 2>&1",
            secs = self.max_time.as_secs_f64().max(0.5),
            cfg = file.display(),
            n = self.packets,
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        let sent = text
            .lines()
            .find(|l| l.contains("packets outgoing"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok());
        match sent {
            Some(n) => Ok(n),
            None => bail!(
                "trafgen printed no packet count ({:?}):\n{text}",
                out.status.code()
            ),
        }
    }
}
