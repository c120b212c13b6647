//! BPF_PROG_TEST_RUN fixtures for connection steering: a node (10.77.0.1) of a
//! three-node fleet with a table computed as the daemon computes it, the members'
//! MACs learned from their probes, a real listener and a real connection on the VIP.
//! Per crafted frame: the verdict, the counter that moved, and the bytes sent (the
//! GUE encapsulation field by field, the hop count, the next hop, the packet carried)
//! or handed to the stack (after decapsulation). Needs root.

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};

use aya::programs::{TestRun, TestRunOptions};
use lab::gue::{self, GueFrame};
use lab::packets::{ACK, PSH_ACK, SYN, v4, v6};
use proxy::config::cidr;
use proxy::control::steering::store::{MemberState, TableMember, TableRecord};
use proxy::control::steering::table::{self, Table};
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use proxy::ebpf::maps::steering::SlotContent;
use proxy::ebpf::maps::{List, Maps, Origin, RateLimits};
use proxy_common::Reason;
use proxy_common::steering::{flow_hash, outer_source_port, row_of};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// BPF_PROG_TEST_RUN runs XDP programs on the loopback device (ifindex 1).
const LOOPBACK: u32 = 1;
const PORT: u16 = 19523;
const ME: &str = "10.77.0.1";
const N1: &str = "10.77.0.2";
const N2: &str = "10.77.0.3";
const VIP: &str = "10.99.0.1";
const VIP6: &str = "fd99::1";
const CLIENT: &str = "10.78.0.100";
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const N1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
const N2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x13];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Runs `f` on a thread in a new network namespace with `lo` up, the VIPs and the
/// client's address on it.
fn in_own_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    lab::require_root();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects only this thread (a new network namespace for it).
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
            let sh = |cmd: &str| {
                let ok = std::process::Command::new("sh")
                    .args(["-c", cmd])
                    .status()
                    .expect("sh")
                    .success();
                assert!(ok, "{cmd}");
            };
            sh("ip link set lo up && ip addr add 10.99.0.1/32 dev lo && ip addr add 10.78.0.100/32 dev lo \
                && ip -6 addr add fd99::1/128 dev lo nodad");
            sh("sysctl -qw net.ipv4.tcp_syncookies=2");
            f()
        })
        .join()
        .expect("test thread")
    })
}

struct Node {
    program: XdpProgram,
    maps: Maps,
    table: Table,
}

fn member(node: &str, address: &str, joined: u64) -> TableMember {
    TableMember {
        node: node.into(),
        address: ip(address),
        port: PORT,
        state: MemberState::Active,
        joined,
        drained: None,
    }
}

impl Node {
    /// Loads the program, turns steering on, installs and activates the fleet's table
    /// and lets the two other members' probes arrive.
    fn new() -> Node {
        let (program, mut maps) = XdpProgram::load(LoadOptions::private()).expect("load");
        maps.write_config(&RateLimits::default(), 0, false).unwrap();
        maps.insert(
            List::Allow,
            cidr::parse("10.78.0.200").unwrap(),
            None,
            Origin::Manual,
            "fixture",
        )
        .unwrap();
        maps.insert(
            List::Block,
            cidr::parse("10.78.0.66").unwrap(),
            None,
            Origin::Manual,
            "fixture",
        )
        .unwrap();
        let table = table::compute(&TableRecord {
            generation: 3,
            members: vec![
                member("node0", ME, 1),
                member("node1", N1, 2),
                member("node2", N2, 3),
            ],
            change: "node2 joined".into(),
        });
        let s = maps.steering().unwrap();
        s.configure(Some((
            ip(ME),
            PORT,
            &[(ip(VIP), vec![443]), (ip(VIP6), vec![443])],
        )))
        .unwrap();
        s.set_peers(&[(ip(N1), PORT), (ip(N2), PORT)]).unwrap();
        let rows: Vec<(u16, u16)> = table
            .rows
            .iter()
            .map(|r| (r.primary, r.secondary))
            .collect();
        s.install(&SlotContent {
            generation: 3,
            members: &table.addresses(),
            me: table.index_of("node0"),
            rows: &rows,
        })
        .unwrap();
        s.activate(3).unwrap();
        let mut node = Node {
            program,
            maps,
            table,
        };
        for (from, mac) in [(N1, N1_MAC), (N2, N2_MAC)] {
            let probe = gue::probe((OUR_MAC, mac), ip(from), ip(ME), PORT);
            node.expect(
                &format!("a probe from {from}"),
                &probe,
                Reason::Passed,
                XDP_PASS,
            );
        }
        let learned = node
            .maps
            .steering()
            .unwrap()
            .reachable(proxy::ebpf::maps::monotonic_ns());
        assert_eq!(learned.len(), 2);
        assert!(learned.iter().all(|(_, age)| age.is_some()), "{learned:?}");
        node
    }

    /// Runs `frame`: the action must be `action`, exactly the `reason` counter moves.
    fn expect(&mut self, what: &str, frame: &[u8], reason: Reason, action: u32) -> Vec<u8> {
        let before = self.maps.verdicts(LOOPBACK).unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        let result = self
            .program
            .program()
            .test_run(opts)
            .expect("BPF_PROG_TEST_RUN");
        let after = self.maps.verdicts(LOOPBACK).unwrap();
        for r in Reason::ALL {
            let moved = after.get(r).packets - before.get(r).packets;
            assert_eq!(
                moved,
                u64::from(r == reason),
                "{what}: counter {r:?} (expected {reason:?})"
            );
        }
        assert_eq!(result.return_value, action, "{what}: action");
        out.truncate(result.data_size_out as usize);
        out
    }

    /// (primary, secondary) member names of the row of `client:port → vip:443`.
    fn owners(&self, client: &str, port: u16, vip: &str) -> (&str, Option<&str>) {
        let key = |a: IpAddr| {
            let mut k = [0u8; 16];
            match a {
                IpAddr::V4(a) => k[..4].copy_from_slice(&a.octets()),
                IpAddr::V6(a) => k = a.octets(),
            }
            k
        };
        let row = self.table.rows[row_of(flow_hash(&key(ip(client)), port, &key(ip(vip)), 443))];
        let name = |i: u16| {
            self.table
                .members
                .get(usize::from(i))
                .map(|m| m.node.as_str())
        };
        (name(row.primary).unwrap(), name(row.secondary))
    }

    /// A client port whose row has these owners.
    fn port_where(&self, client: &str, vip: &str, want: (&str, Option<&str>)) -> u16 {
        (20000..60000)
            .find(|p| self.owners(client, *p, vip) == want)
            .unwrap_or_else(|| panic!("no port with owners {want:?}"))
    }
}

fn hash_of(client: &str, port: u16, vip: &str) -> u32 {
    let key = |a: IpAddr| {
        let mut k = [0u8; 16];
        match a {
            IpAddr::V4(a) => k[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => k = a.octets(),
        }
        k
    };
    flow_hash(&key(ip(client)), port, &key(ip(vip)), 443)
}

/// Checks the encapsulation of `inner_frame` sent to `to` (MAC `mac`).
fn check_gue(
    out: &[u8],
    inner_frame: &[u8],
    to: &str,
    mac: [u8; 6],
    hops: u8,
    next: Option<&str>,
    hash: u32,
) -> GueFrame {
    let g = GueFrame::parse(out).unwrap();
    assert_eq!(
        (g.dst_mac, g.src_mac),
        (mac, OUR_MAC),
        "MACs from the member's probe"
    );
    assert_eq!((g.outer_src, g.outer_dst), (ip(ME), ip(to)));
    assert_eq!(g.ttl, 64);
    assert!(g.dont_fragment && g.ip_checksum_ok);
    assert_eq!(
        g.src_port,
        outer_source_port(hash),
        "outer source port from the flow hash"
    );
    assert!(g.src_port >= 0xc000);
    assert_eq!(g.dst_port, PORT);
    assert!(g.udp_length_ok);
    assert_eq!(g.udp_checksum, 0);
    assert!(!g.control);
    assert_eq!((g.hlen, g.flags, g.private_type), (2, 0, [0x50, 0x53]));
    let inner_v6 = inner_frame[14] >> 4 == 6;
    assert_eq!(g.proto, if inner_v6 { 41 } else { 4 });
    assert_eq!(g.hops, hops, "hop count");
    assert_eq!(g.next, next.map(ip), "next hop");
    assert_eq!(
        g.inner,
        inner_frame[14..].to_vec(),
        "the packet carried unchanged"
    );
    g
}

#[test]
fn packets_go_to_the_node_that_owns_their_flow() {
    in_own_netns(|| {
        let mut node = Node::new();
        let from_router = |p: lab::packets::Packet| p.macs(OUR_MAC, ROUTER_MAC).build();

        // A SYN whose row another member owns goes there, without a second chance.
        let port = node.port_where(CLIENT, VIP, ("node2", Some("node1")));
        let syn = from_router(
            v4(CLIENT)
                .to(ip(VIP).to_owned())
                .tcp(443, SYN)
                .src_port(port),
        );
        let out = node.expect("a SYN for node2's row", &syn, Reason::Steered, XDP_TX);
        check_gue(&out, &syn, N2, N2_MAC, 1, None, hash_of(CLIENT, port, VIP));

        // Any other packet goes to the primary with the secondary as second chance.
        let ack = from_router(v4(CLIENT).to(ip(VIP)).tcp(443, PSH_ACK).src_port(port));
        let out = node.expect("data for node2's row", &ack, Reason::Steered, XDP_TX);
        check_gue(
            &out,
            &ack,
            N2,
            N2_MAC,
            1,
            Some(N1),
            hash_of(CLIENT, port, VIP),
        );

        // No second chance back to this node.
        let port = node.port_where(CLIENT, VIP, ("node2", Some("node0")));
        let ack = from_router(v4(CLIENT).to(ip(VIP)).tcp(443, ACK).src_port(port));
        let out = node.expect("data, this node second", &ack, Reason::Steered, XDP_TX);
        check_gue(&out, &ack, N2, N2_MAC, 1, None, hash_of(CLIENT, port, VIP));

        // Its own row: a SYN is handled here; other packets without a socket go to
        // the secondary (an ACK that is no cookie of this node's included).
        let _listener = TcpListener::bind("0.0.0.0:443").unwrap();
        let port = node.port_where(CLIENT, VIP, ("node0", Some("node1")));
        let syn = from_router(v4(CLIENT).to(ip(VIP)).tcp(443, SYN).src_port(port));
        node.expect("a SYN for this node's row", &syn, Reason::Passed, XDP_PASS);
        let ack = from_router(
            v4(CLIENT)
                .to(ip(VIP))
                .tcp(443, ACK)
                .src_port(port)
                .seq(7)
                .ack(9),
        );
        let out = node.expect(
            "an unknown ACK in this node's row",
            &ack,
            Reason::SecondChance,
            XDP_TX,
        );
        check_gue(&out, &ack, N1, N1_MAC, 1, None, hash_of(CLIENT, port, VIP));

        // A connection this node has is handled here whatever its row says.
        let port = node.port_where(CLIENT, VIP, ("node1", Some("node0")));
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&std::net::SocketAddr::new(ip(CLIENT), port).into())
            .unwrap();
        socket
            .connect(&std::net::SocketAddr::new(ip(VIP), 443).into())
            .unwrap();
        let _client: TcpStream = socket.into();
        let data = from_router(v4(CLIENT).to(ip(VIP)).tcp(443, PSH_ACK).src_port(port));
        node.expect("data of a connection here", &data, Reason::Passed, XDP_PASS);

        // IPv6 clients: the same, GUE proto 41.
        let client6 = "2001:db8:1::7";
        let port = node.port_where(client6, VIP6, ("node2", Some("node0")));
        let syn6 = from_router(v6(client6).to(ip(VIP6)).tcp(443, SYN).src_port(port));
        let out = node.expect("an IPv6 SYN", &syn6, Reason::Steered, XDP_TX);
        check_gue(
            &out,
            &syn6,
            N2,
            N2_MAC,
            1,
            None,
            hash_of(client6, port, VIP6),
        );

        // ICMP "fragmentation needed" about a flow: by the flow it quotes.
        let port = node.port_where(CLIENT, VIP, ("node2", Some("node1")));
        let sent = v4(VIP)
            .to(ip(CLIENT))
            .tcp(port, ACK)
            .src_port(443)
            .payload(1400)
            .build();
        let icmp = gue::too_big((OUR_MAC, ROUTER_MAC), ip("10.78.0.254"), ip(VIP), &sent);
        let out = node.expect(
            "ICMP frag-needed about node2's flow",
            &icmp,
            Reason::Steered,
            XDP_TX,
        );
        check_gue(
            &out,
            &icmp,
            N2,
            N2_MAC,
            1,
            Some(N1),
            hash_of(CLIENT, port, VIP),
        );
        let port = node.port_where(client6, VIP6, ("node2", Some("node0")));
        let sent6 = v6(VIP6)
            .to(ip(client6))
            .tcp(port, ACK)
            .src_port(443)
            .payload(1200)
            .build();
        let icmp6 = gue::too_big((OUR_MAC, ROUTER_MAC), ip("fd78::254"), ip(VIP6), &sent6);
        let out = node.expect("ICMPv6 packet-too-big", &icmp6, Reason::Steered, XDP_TX);
        check_gue(
            &out,
            &icmp6,
            N2,
            N2_MAC,
            1,
            None,
            hash_of(client6, port, VIP6),
        );

        // Not steered: another port of the VIP, other destinations, UDP.
        let other = from_router(v4(CLIENT).to(ip(VIP)).tcp(80, SYN).src_port(40000));
        node.expect(
            "TCP to a port the VIP does not steer",
            &other,
            Reason::Passed,
            XDP_PASS,
        );
        let elsewhere = from_router(v4(CLIENT).to(ip(ME)).tcp(22, SYN));
        node.expect(
            "TCP to the node's own address",
            &elsewhere,
            Reason::Passed,
            XDP_PASS,
        );

        // The lists still come first: blocked sources are dropped, allowed ones steered.
        let port = node.port_where("10.78.0.66", VIP, ("node2", Some("node1")));
        let blocked = from_router(v4("10.78.0.66").to(ip(VIP)).tcp(443, SYN).src_port(port));
        node.expect(
            "a blocklisted source",
            &blocked,
            Reason::Blocklisted,
            XDP_DROP,
        );
        let port = node.port_where("10.78.0.200", VIP, ("node2", Some("node1")));
        let allowed = from_router(v4("10.78.0.200").to(ip(VIP)).tcp(443, SYN).src_port(port));
        node.expect("an allowlisted source", &allowed, Reason::Steered, XDP_TX);
        let port = node.port_where("10.78.0.200", VIP, ("node0", Some("node1")));
        let allowed = from_router(v4("10.78.0.200").to(ip(VIP)).tcp(443, SYN).src_port(port));
        node.expect(
            "an allowlisted source, this node's row",
            &allowed,
            Reason::Allowlisted,
            XDP_PASS,
        );
    });
}

#[test]
fn encapsulated_packets_are_delivered_or_get_their_second_chance() {
    in_own_netns(|| {
        let mut node = Node::new();
        let _listener = TcpListener::bind("0.0.0.0:443").unwrap();
        let inner = |port: u16, flags: u8| {
            v4(CLIENT)
                .to(ip(VIP))
                .tcp(443, flags)
                .src_port(port)
                .macs(N1_MAC, ROUTER_MAC)
                .build()
        };
        let from_n1 = |hops: u8, next: Option<&str>, inner: &[u8]| {
            gue::data(
                (OUR_MAC, N1_MAC),
                ip(N1),
                ip(ME),
                PORT,
                hops,
                next.map(ip),
                inner,
            )
        };
        let decapsulated = |out: &[u8], inner: &[u8]| {
            assert_eq!(&out[..12], &[OUR_MAC, N1_MAC].concat()[..], "MACs kept");
            assert_eq!(&out[12..14], &[0x08, 0x00]);
            assert_eq!(&out[14..], &inner[14..], "the inner packet, unchanged");
        };

        // A SYN for this node: decapsulated for the stack.
        let syn = inner(41000, SYN);
        let out = node.expect(
            "an encapsulated SYN",
            &from_n1(1, None, &syn),
            Reason::Decapsulated,
            XDP_PASS,
        );
        decapsulated(&out, &syn);

        // A segment of a connection this node has: decapsulated.
        let port = 42424;
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&std::net::SocketAddr::new(ip(CLIENT), port).into())
            .unwrap();
        socket
            .connect(&std::net::SocketAddr::new(ip(VIP), 443).into())
            .unwrap();
        let _client: TcpStream = socket.into();
        let data = inner(port, PSH_ACK);
        let out = node.expect(
            "a segment of a connection here",
            &from_n1(1, Some(N2), &data),
            Reason::Decapsulated,
            XDP_PASS,
        );
        decapsulated(&out, &data);

        // Unknown here, a second chance named: sent on, hop count 2, no next hop.
        let data = inner(43000, PSH_ACK);
        let out = node.expect(
            "unknown, second chance node2",
            &from_n1(1, Some(N2), &data),
            Reason::SecondChance,
            XDP_TX,
        );
        let hash = hash_of(CLIENT, 43000, VIP);
        check_gue(&out, &data, N2, N2_MAC, 2, None, hash);

        // Its last hop: handed to the stack as it is (which resets it), counted unowned.
        let out = node.expect(
            "unknown at its last hop",
            &from_n1(1, None, &data),
            Reason::Unowned,
            XDP_PASS,
        );
        decapsulated(&out, &data);
        let out = node.expect(
            "unknown, hop count spent",
            &from_n1(2, Some(N2), &data),
            Reason::Unowned,
            XDP_PASS,
        );
        decapsulated(&out, &data);
        let out = node.expect(
            "next hop is this node",
            &from_n1(1, Some(ME), &data),
            Reason::Unowned,
            XDP_PASS,
        );
        decapsulated(&out, &data);

        // Other traffic inside (UDP): decapsulated.
        let udp = v4(CLIENT)
            .to(ip(VIP))
            .udp(53)
            .macs(N1_MAC, ROUTER_MAC)
            .build();
        node.expect(
            "UDP inside",
            &from_n1(1, None, &udp),
            Reason::Decapsulated,
            XDP_PASS,
        );

        // Malformed GUE from a member is dropped: wrong private type, wrong length.
        let mut bad = from_n1(1, None, &data);
        bad[46] = 0;
        node.expect(
            "wrong private data type",
            &bad,
            Reason::SteerFailed,
            XDP_DROP,
        );
        let mut bad = from_n1(1, None, &data);
        bad[42] = 0x03;
        node.expect("wrong header length", &bad, Reason::SteerFailed, XDP_DROP);

        // GUE from a non-member is not taken as such (the lists, then the stack).
        let stranger = gue::data(
            (OUR_MAC, N1_MAC),
            ip("10.77.0.9"),
            ip(ME),
            PORT,
            1,
            None,
            &data,
        );
        node.expect("GUE from a stranger", &stranger, Reason::Passed, XDP_PASS);
    });
}

#[test]
fn a_member_not_heard_from_cannot_be_sent_to() {
    in_own_netns(|| {
        let mut node = Node::new();
        let n3 = Ipv4Addr::new(10, 77, 0, 4);
        node.maps
            .steering()
            .unwrap()
            .set_peers(&[(ip(N1), PORT), (IpAddr::V4(n3), PORT)])
            .unwrap();
        // node2 left the peers (its MAC forgotten): its rows cannot be steered yet.
        let port = node.port_where(CLIENT, VIP, ("node2", Some("node1")));
        let syn = v4(CLIENT)
            .to(ip(VIP))
            .tcp(443, SYN)
            .src_port(port)
            .macs(OUR_MAC, ROUTER_MAC)
            .build();
        node.expect(
            "to a member without a probe",
            &syn,
            Reason::SteerFailed,
            XDP_DROP,
        );
        // node1's learned MAC was kept.
        let port = node.port_where(CLIENT, VIP, ("node1", Some("node0")));
        let syn = v4(CLIENT)
            .to(ip(VIP))
            .tcp(443, SYN)
            .src_port(port)
            .macs(OUR_MAC, ROUTER_MAC)
            .build();
        node.expect("to a member heard from", &syn, Reason::Steered, XDP_TX);
    });
}
