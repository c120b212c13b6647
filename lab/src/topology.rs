//! Topologies of namespaces: hosts on one bridge ([`Topology::star`]), two hosts on
//! one veth pair ([`Topology::pair`], for benchmarks), and N load-balancer nodes
//! behind a router with clients on the other side ([`Fleet`]).

use anyhow::Context;

use crate::netns::{Netns, host_sh};

/// A host: a namespace whose `eth0` has an IPv4 and an IPv6 address.
pub struct Host {
    pub ns: Netns,
    pub ipv4: String,
    pub ipv6: String,
    /// The host's interface (always `eth0`).
    pub ifname: String,
}

/// Hosts numbered from 0; host `i` has `<v4 prefix>.<i+1>/24` and `<v6 prefix>::<i+1>/64`.
pub struct Topology {
    pub hosts: Vec<Host>,
    // Dropped after the hosts: deleting the switch removes the peer veth ends.
    switch: Option<Netns>,
    /// Programs pinned for [`Topology::accept_xdp_tx_from`] (after the switch is gone).
    pins: Vec<crate::PinDir>,
}

/// Addresses of one segment: `10.<n>.0.0/24` and `fd<n>::/64`.
#[derive(Clone, Copy)]
struct Segment(u8);

impl Segment {
    fn ipv4(self, host: usize) -> String {
        format!("10.{}.0.{host}", self.0)
    }
    fn ipv6(self, host: usize) -> String {
        format!("fd{}::{host}", self.0)
    }
}

/// The lab's usual segment: 10.77.0.0/24, fd77::/64.
const LAN: Segment = Segment(77);
/// The client side of a [`Fleet`]: 10.78.0.0/24, fd78::/64.
const OUTSIDE: Segment = Segment(78);

impl Topology {
    /// A switch namespace with a bridge and `roles.len()` hosts wired to it: host `i`
    /// gets 10.77.0.<i+1> and fd77::<i+1>.
    pub fn star(roles: &[&str]) -> anyhow::Result<Topology> {
        Topology::star_on(roles, LAN)
    }

    fn star_on(roles: &[&str], segment: Segment) -> anyhow::Result<Topology> {
        let switch = Netns::create("sw")?;
        switch.exec("ip link add br0 type bridge && ip link set br0 up")?;
        let mut hosts = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let ns = Netns::create(role)?;
            let port = format!("p{}", i + 1);
            host_sh(&format!(
                "ip link add {port} netns {sw} type veth peer name eth0 netns {ns}",
                sw = switch.name,
                ns = ns.name
            ))?;
            switch.exec(&format!(
                "ip link set {port} master br0 && ip link set {port} up"
            ))?;
            hosts.push(Host::configure(ns, segment, i + 1)?);
        }
        Ok(Topology {
            hosts,
            switch: Some(switch),
            pins: Vec::new(),
        })
    }

    /// Like [`Topology::star`]; panics on failure.
    pub fn new(roles: &[&str]) -> Topology {
        Topology::star(roles).unwrap_or_else(|e| panic!("building the lab topology: {e:#}"))
    }

    /// Two hosts joined by one veth pair (no bridge in the path): 10.77.0.1 and .2.
    pub fn pair(a: &str, b: &str) -> anyhow::Result<Topology> {
        let (na, nb) = (Netns::create(a)?, Netns::create(b)?);
        host_sh(&format!(
            "ip link add eth0 netns {} type veth peer name eth0 netns {}",
            na.name, nb.name
        ))?;
        let hosts = vec![Host::configure(na, LAN, 1)?, Host::configure(nb, LAN, 2)?];
        Ok(Topology {
            hosts,
            switch: None,
            pins: Vec::new(),
        })
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Lets host `i` answer with XDP_TX. A veth delivers the frames an XDP program
    /// sends back only if the other end runs an XDP program too (the kernel also
    /// accepts GRO there, but on a bridge port it was not enough here: the frames
    /// vanished). So `xdp_pass` from `object` (an XDP object file, e.g. the project's
    /// `xdp-bench.o`) is attached to the other end of host `i`'s veth: its bridge port
    /// (star; it goes with the switch) or the other host's `eth0` (pair; it goes with
    /// that namespace).
    pub fn accept_xdp_tx_from(&mut self, i: usize, object: &std::path::Path) -> anyhow::Result<()> {
        self.attach_to_peer(i, object, "xdp_pass")
    }

    /// Attaches `program` of `object` to the other end of host `i`'s veth (see
    /// [`Topology::accept_xdp_tx_from`]): e.g. `bare_drop`, so the frames host `i`
    /// sends end there, as on a wire.
    pub fn attach_to_peer(
        &mut self,
        i: usize,
        object: &std::path::Path,
        program: &str,
    ) -> anyhow::Result<()> {
        let (ns, dev) = match &self.switch {
            Some(switch) => (switch.name.clone(), format!("p{}", i + 1)),
            None if self.hosts.len() == 2 => (self.hosts[1 - i].ns.name.clone(), "eth0".into()),
            None => anyhow::bail!("XDP_TX set-up needs a star or a pair topology"),
        };
        let pins = crate::PinDir::new(&format!("xdp-tx-{ns}-{i}"));
        host_sh(&format!(
            "bpftool prog loadall {} {} type xdp",
            object.display(),
            pins.display()
        ))?;
        // nsenter, not `ip netns exec`: that remounts /sys and hides /sys/fs/bpf.
        host_sh(&format!(
            "nsenter --net=/run/netns/{ns} bpftool net attach xdpdrv pinned {}/{program} dev {dev}",
            pins.display(),
        ))?;
        self.pins.push(pins);
        Ok(())
    }

    /// The switch namespace's name (star topologies).
    pub fn switch_name(&self) -> Option<&str> {
        self.switch.as_ref().map(|s| s.name.as_str())
    }
}

impl Host {
    fn configure(ns: Netns, segment: Segment, n: usize) -> anyhow::Result<Host> {
        let (ipv4, ipv6) = (segment.ipv4(n), segment.ipv6(n));
        ns.exec(&format!(
            "ip addr add {ipv4}/24 dev eth0 && ip -6 addr add {ipv6}/64 dev eth0 nodad && ip link set eth0 up"
        ))
        .with_context(|| format!("configuring {}", ns.name))?;
        Ok(Host {
            ns,
            ipv4,
            ipv6,
            ifname: "eth0".into(),
        })
    }
}

/// N load-balancer nodes behind a router, the shape of an edge fleet:
///
/// ```text
/// clients (10.78.0.x) ── bridge ── router ── bridge ── lb nodes (10.77.0.x)
///                         .254 eth-out    eth-lan .254
/// ```
///
/// The router forwards between the two segments; every host routes the other
/// segment through it. What the router learns (static routes, BGP) is the test's
/// business.
pub struct Fleet {
    pub router: Netns,
    pub nodes: Topology,
    pub clients: Topology,
}

/// The router's address on either segment.
pub const ROUTER_HOST: usize = 254;

impl Fleet {
    pub fn build(nodes: usize, clients: usize) -> anyhow::Result<Fleet> {
        let node_roles: Vec<String> = (0..nodes).map(|i| format!("lb{i}")).collect();
        let client_roles: Vec<String> = (0..clients).map(|i| format!("cl{i}")).collect();
        let node_topo = Topology::star(&node_roles.iter().map(String::as_str).collect::<Vec<_>>())?;
        let client_topo = Topology::star_on(
            &client_roles.iter().map(String::as_str).collect::<Vec<_>>(),
            OUTSIDE,
        )?;
        let router = Netns::create("rt")?;
        for (topo, segment, ifname) in [
            (&node_topo, LAN, "eth-lan"),
            (&client_topo, OUTSIDE, "eth-out"),
        ] {
            let sw = topo
                .switch_name()
                .context("star topologies have a switch")?;
            let port = format!("r{}", segment.0);
            host_sh(&format!(
                "ip link add {port} netns {sw} type veth peer name {ifname} netns {}",
                router.name
            ))?;
            host_sh(&format!(
                "ip netns exec {sw} sh -c 'ip link set {port} master br0 && ip link set {port} up'"
            ))?;
            router.exec(&format!(
                "ip addr add {}/24 dev {ifname} && ip -6 addr add {}/64 dev {ifname} nodad && ip link set {ifname} up",
                segment.ipv4(ROUTER_HOST),
                segment.ipv6(ROUTER_HOST)
            ))?;
            let other = if segment.0 == LAN.0 { OUTSIDE } else { LAN };
            for h in &topo.hosts {
                h.ns.exec(&format!(
                    "ip route add 10.{o}.0.0/24 via {} && ip -6 route add fd{o}::/64 via {}",
                    segment.ipv4(ROUTER_HOST),
                    segment.ipv6(ROUTER_HOST),
                    o = other.0
                ))?;
            }
        }
        router.exec(
            "sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.ipv6.conf.all.forwarding=1",
        )?;
        Ok(Fleet {
            router,
            nodes: node_topo,
            clients: client_topo,
        })
    }
}
