//! BPF_PROG_TEST_RUN fixtures for the SYN cookie stage and the service filter: verdict,
//! answer bytes (field by field) and counters per crafted packet. Each test runs on a
//! thread in a network namespace of its own (the program's socket lookups and the
//! TCP sysctls are per namespace), with a real listening socket the program finds.
//! Needs root.

use std::io::Write;
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};

use aya::programs::{TestRun, TestRunOptions};
use lab::packets::{self, ACK, PSH_ACK, RST, SYN, SYN_ACK, Segment, linux_syn_options, v4, v6};
use proxy::config::cidr;
use proxy::ebpf::loader::{LoadOptions, XdpProgram};
use proxy::ebpf::maps::{List, Maps, Origin, RateLimits, ServiceSettings};
use proxy::ebpf::services::{addr_key, state};
use proxy_common::{FAMILY_V4, FAMILY_V6, ListenerKey, PortSet, Reason};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// BPF_PROG_TEST_RUN runs XDP programs on the loopback device (ifindex 1 in any namespace).
const LOOPBACK: u32 = 1;
/// The window scale the fixtures configure for SYN-ACKs.
const OUR_WSCALE: u8 = 9;
const SERVICE_V4: &str = "10.77.0.1";
const SERVICE_V6: &str = "fd77::1";

/// Runs `f` on a thread in a new network namespace with `lo` up and the sysctls the
/// cookie helper needs.
fn in_own_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    lab::require_root();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects only this thread (a new network namespace for it).
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("ip");
            assert!(up.success());
            for (path, value) in [
                ("/proc/sys/net/ipv4/tcp_syncookies", "2"),
                ("/proc/sys/net/ipv4/tcp_timestamps", "2"),
            ] {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(value.as_bytes()))
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
            }
            f()
        })
        .join()
        .expect("test thread")
    })
}

struct Fixture {
    program: XdpProgram,
    maps: Maps,
    /// Dual-stack listener on [::]:port (the program's lookups find it).
    listener: TcpListener,
    port: u16,
}

impl Fixture {
    /// Loads the program; the listener on `port` answers with cookies when `cookies`.
    fn new(cookies: bool) -> Fixture {
        let listener = TcpListener::bind("[::]:0").expect("listen");
        let port = listener.local_addr().unwrap().port();
        let (program, mut maps) =
            XdpProgram::load(LoadOptions::private()).expect("load XDP program");
        maps.insert(
            List::Block,
            cidr::parse("192.0.2.66").unwrap(),
            None,
            Origin::Manual,
            "fixture",
        )
        .unwrap();
        let limits = RateLimits {
            syn_per_second: 1,
            syn_burst: 3,
            ipv6_prefix: 64,
            ..RateLimits::default()
        };
        maps.write_config(&limits, 0, false).unwrap();
        let mut tcp = PortSet::empty();
        tcp.insert(port);
        tcp.insert(22);
        let mut udp = PortSet::empty();
        udp.insert(53);
        let services = maps.services().expect("service maps");
        let wildcard = |family| ListenerKey {
            addr: proxy_common::AddrKey {
                addr: [0; 16],
                family,
            },
            port: u32::from(port),
        };
        services
            .set_listeners(&[
                (wildcard(FAMILY_V4), state(cookies, 0)),
                (wildcard(FAMILY_V6), state(cookies, 1)),
            ])
            .unwrap();
        services.set_served_ports(&tcp, &udp).unwrap();
        let addrs: Vec<_> = [SERVICE_V4, SERVICE_V6, "127.0.0.1"]
            .iter()
            .map(|a| addr_key(a.parse().unwrap()))
            .collect();
        services.set_service_addrs(&addrs).unwrap();
        maps.write_service_settings(&ServiceSettings {
            service_filter: true,
            syn_cookie_listeners: 2,
            syn_cookies_active: if cookies { 2 } else { 0 },
            synack_wscale: OUR_WSCALE,
            ephemeral_ports: (32768, 60999),
        })
        .unwrap();
        Fixture {
            program,
            maps,
            listener,
            port,
        }
    }

    /// (XDP action, frame after the program).
    fn run(&self, packet: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; 2048];
        let result = self
            .program
            .program()
            .test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    fn count(&self, reason: Reason) -> u64 {
        self.maps.verdicts(LOOPBACK).unwrap().get(reason).packets
    }

    /// Runs `packet`, checks the action and that exactly the `reason` counter moved.
    fn expect(&self, what: &str, packet: &[u8], reason: Reason, action: u32) -> Vec<u8> {
        let before: Vec<u64> = Reason::ALL.iter().map(|r| self.count(*r)).collect();
        let (got, out) = self.run(packet);
        assert_eq!(got, action, "{what}: XDP action");
        for (r, b) in Reason::ALL.iter().zip(before) {
            let delta = self.count(*r) - b;
            let want = u64::from(*r == reason);
            assert_eq!(delta, want, "{what}: counter {} moved by {delta}", r.name());
        }
        out
    }
}

fn syn(client: &str, port: u16) -> packets::Packet {
    let p = if client.contains(':') {
        v6(client)
    } else {
        v4(client)
    };
    p.tcp(port, SYN)
        .seq(0x1000_0000)
        .payload(0)
        .tcp_options(linux_syn_options(0xabcd))
}

/// Checks a cookie SYN-ACK field by field against the SYN it answers.
fn check_syn_ack(syn_frame: &[u8], answer: &[u8]) -> Segment {
    let syn = Segment::parse(syn_frame).unwrap();
    let ours = Segment::parse(answer).unwrap();
    assert_eq!(
        (ours.dst_mac, ours.src_mac),
        (syn.src_mac, syn.dst_mac),
        "MACs swapped"
    );
    assert_eq!(ours.vlans, syn.vlans, "VLAN tags kept");
    assert_eq!(
        (ours.src, ours.dst),
        (syn.dst, syn.src),
        "addresses swapped"
    );
    assert_eq!(
        (ours.src_port, ours.dst_port),
        (syn.dst_port, syn.src_port),
        "ports swapped"
    );
    assert_eq!(ours.flags, SYN_ACK);
    assert_eq!(ours.ack, syn.seq.wrapping_add(1), "ack = seq + 1");
    assert_eq!(ours.ttl, 64);
    assert!(ours.ip_checksum_ok, "IPv4 header checksum");
    assert!(ours.tcp_checksum_ok, "TCP checksum");
    let mss = ours.mss.expect("MSS option");
    assert!(
        mss > 500 && mss <= syn.mss.unwrap_or(536),
        "MSS {mss} from the cookie table"
    );
    assert!(ours.window > 0);
    ours
}

#[test]
fn syns_are_answered_with_cookies_the_kernel_accepts() {
    in_own_netns(|| {
        let f = Fixture::new(true);
        for (what, client, vlan) in [
            ("IPv4", "10.1.1.1", false),
            ("IPv6", "2001:db8:1::1", false),
            ("IPv4 with a VLAN tag", "10.1.1.2", true),
        ] {
            let service: IpAddr = if client.contains(':') {
                SERVICE_V6
            } else {
                SERVICE_V4
            }
            .parse()
            .unwrap();
            let mut packet = syn(client, f.port).to(service);
            if vlan {
                packet = packet.vlan(42);
            }
            let frame = packet.build();
            let answer = f.expect(what, &frame, Reason::SynCookieSent, XDP_TX);
            let ours = check_syn_ack(&frame, &answer);
            assert!(
                ours.sack_permitted,
                "{what}: SACK offered (the client offered it)"
            );
            let (tsval, tsecr) = ours.timestamp.expect("timestamps");
            assert_eq!(tsecr, 0xabcd, "{what}: the client's timestamp echoed");
            assert_eq!(
                tsval & 0x3f,
                7 | 0x10,
                "{what}: wscale 7 and SACK in the low bits"
            );
            assert_eq!(ours.wscale, Some(OUR_WSCALE), "{what}: our window scale");

            // The client's ACK of the cookie: the kernel's check accepts it.
            let ack_of = |ack: u32| {
                let p = if client.contains(':') {
                    v6(client)
                } else {
                    v4(client)
                };
                let mut p = p
                    .to(service)
                    .tcp(f.port, ACK)
                    .seq(0x1000_0001)
                    .ack(ack)
                    .payload(0);
                if vlan {
                    p = p.vlan(42);
                }
                p.build()
            };
            f.expect(
                &format!("{what}: ACK with the cookie"),
                &ack_of(ours.seq.wrapping_add(1)),
                Reason::SynCookieAckOk,
                XDP_PASS,
            );
            f.expect(
                &format!("{what}: ACK with a wrong cookie"),
                // (Not cookie + 1: the low bits are the MSS index, and a neighbouring
                // index can be valid too.)
                &ack_of(ours.seq.wrapping_add(1) ^ 0x0012_3400),
                Reason::SynCookieAckBad,
                XDP_DROP,
            );
        }
        let v4_counters = f.maps.services_ref().unwrap().listener_counters(0).unwrap();
        assert_eq!(
            (v4_counters.syns, v4_counters.cookies_sent),
            (2, 2),
            "IPv4 listener counters"
        );
        assert_eq!(
            (v4_counters.cookie_acks_ok, v4_counters.cookie_acks_bad),
            (2, 2)
        );
    });
}

/// The SYN with `extra` bytes of IPv6 hop-by-hop options (PadN) before its TCP
/// header (`extra` a multiple of 8, at least 8), payload length adjusted.
fn with_hop_by_hop(frame: &[u8], extra: usize) -> Vec<u8> {
    let l3 = 14;
    let mut out = frame[..l3 + 40].to_vec();
    let next = out[l3 + 6];
    out[l3 + 6] = 0; // hop-by-hop options follow
    let payload = u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]) as usize + extra;
    out[l3 + 4..l3 + 6].copy_from_slice(&(payload as u16).to_be_bytes());
    let mut hbh = vec![next, (extra / 8 - 1) as u8, 1, (extra - 4) as u8];
    hbh.resize(extra, 0); // PadN over the rest
    out.extend_from_slice(&hbh);
    out.extend_from_slice(&frame[l3 + 40..]);
    out
}

#[test]
fn syns_behind_ip_options_and_extension_headers_are_answered_with_a_plain_header() {
    in_own_netns(|| {
        let f = Fixture::new(true);
        let service_v4: IpAddr = SERVICE_V4.parse().unwrap();
        // IPv4 options: the SYN-ACK has a 20-byte header; the ACK behind options too.
        let frame = syn("10.1.8.1", f.port)
            .to(service_v4)
            .ipv4_options(2)
            .build();
        let answer = f.expect(
            "SYN with IPv4 options",
            &frame,
            Reason::SynCookieSent,
            XDP_TX,
        );
        assert_eq!(answer[14] & 0x0f, 5, "no IPv4 options in the answer");
        assert_eq!(
            answer.len(),
            frame.len() - 8,
            "the frame shrank by the options"
        );
        let ours = check_syn_ack(&frame, &answer);
        let ack = v4("10.1.8.1")
            .to(service_v4)
            .ipv4_options(2)
            .tcp(f.port, ACK)
            .seq(0x1000_0001)
            .ack(ours.seq.wrapping_add(1))
            .payload(0)
            .build();
        f.expect(
            "its ACK, behind options",
            &ack,
            Reason::SynCookieAckOk,
            XDP_PASS,
        );

        // An IPv6 hop-by-hop header: the SYN-ACK has none.
        let service_v6: IpAddr = SERVICE_V6.parse().unwrap();
        let plain = syn("2001:db8:8::1", f.port).to(service_v6).build();
        let frame = with_hop_by_hop(&plain, 8);
        let answer = f.expect(
            "IPv6 SYN with hop-by-hop options",
            &frame,
            Reason::SynCookieSent,
            XDP_TX,
        );
        assert_eq!(answer[14 + 6], 6, "the answer's next header is TCP");
        assert_eq!(
            answer.len(),
            plain.len(),
            "the frame shrank by the extension header"
        );
        check_syn_ack(&plain, &answer);

        // A TCP header further in than the cookie stage reads (past byte 511) goes to
        // the kernel unchanged.
        let frame = with_hop_by_hop(&plain, 520);
        let (action, out) = f.run(&frame);
        assert_eq!(
            (action, out == frame),
            (XDP_PASS, true),
            "deep IPv6 SYN passed unchanged"
        );
        let counters = f.maps.services_ref().unwrap().listener_counters(1).unwrap();
        assert_eq!(
            counters.cookies_sent, 1,
            "only the shallow IPv6 SYN was answered"
        );
    });
}

#[test]
fn syns_of_time_wait_and_established_flows_go_to_the_kernel() {
    in_own_netns(|| {
        let f = Fixture::new(true);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        // The server closes first, so its end of the connection waits in TIME_WAIT.
        let client = TcpStream::connect(("127.0.0.1", f.port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let (server, _) = f.listener.accept().unwrap();
        drop(server);
        let mut client = client;
        let mut buf = [0u8; 1];
        assert_eq!(
            std::io::Read::read(&mut client, &mut buf).unwrap(),
            0,
            "EOF"
        );
        drop(client);
        let time_wait = || {
            let out = std::process::Command::new("ss")
                .args(["-tanH", "state", "time-wait"])
                .output()
                .expect("ss");
            String::from_utf8_lossy(&out.stdout).contains(&format!(":{client_port}"))
        };
        for _ in 0..100 {
            if time_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(time_wait(), "the server's socket is in TIME_WAIT");
        let frame = syn("127.0.0.1", f.port)
            .to(local)
            .src_port(client_port)
            .build();
        let (action, out) = f.run(&frame);
        assert_eq!(
            (action, out == frame),
            (XDP_PASS, true),
            "SYN of a TIME_WAIT flow passed unchanged"
        );

        // A SYN on an established connection: the kernel answers it (challenge ACK).
        let open = TcpStream::connect(("127.0.0.1", f.port)).unwrap();
        let _accepted = f.listener.accept().unwrap();
        let open_port = open.local_addr().unwrap().port();
        let frame = syn("127.0.0.1", f.port)
            .to(local)
            .src_port(open_port)
            .build();
        let (action, out) = f.run(&frame);
        assert_eq!(
            (action, out == frame),
            (XDP_PASS, true),
            "SYN of an established flow passed unchanged"
        );
        let counters = f.maps.services_ref().unwrap().listener_counters(0).unwrap();
        assert_eq!((counters.syns, counters.cookies_sent), (2, 0));
    });
}

#[test]
fn a_listener_bound_to_the_address_comes_before_the_wildcard() {
    in_own_netns(|| {
        let mut f = Fixture::new(false);
        // The port's wildcard listener has cookies off; one bound to SERVICE_V4 on.
        let key = |addr| ListenerKey {
            addr,
            port: u32::from(f.port),
        };
        let wildcard = proxy_common::AddrKey {
            addr: [0; 16],
            family: FAMILY_V4,
        };
        let bound_key = key(addr_key(SERVICE_V4.parse().unwrap()));
        f.maps
            .services()
            .unwrap()
            .set_listeners(&[
                (key(wildcard), state(false, 0)),
                (bound_key, state(true, 2)),
            ])
            .unwrap();
        f.maps
            .write_service_settings(&ServiceSettings {
                service_filter: true,
                syn_cookie_listeners: 2,
                syn_cookies_active: 1,
                synack_wscale: OUR_WSCALE,
                ephemeral_ports: (32768, 60999),
            })
            .unwrap();
        let service: IpAddr = SERVICE_V4.parse().unwrap();
        let bound = syn("10.1.9.1", f.port).to(service).build();
        f.expect(
            "SYN to the bound address",
            &bound,
            Reason::SynCookieSent,
            XDP_TX,
        );
        let elsewhere: IpAddr = "10.77.0.9".parse().unwrap();
        let other = syn("10.1.9.2", f.port).to(elsewhere).build();
        f.expect(
            "SYN to another address (wildcard, off)",
            &other,
            Reason::Passed,
            XDP_PASS,
        );
        let services = f.maps.services_ref().unwrap();
        let (w, b) = (
            services.listener_counters(0).unwrap(),
            services.listener_counters(2).unwrap(),
        );
        assert_eq!(
            (w.syns, w.cookies_sent),
            (1, 0),
            "wildcard listener's counters"
        );
        assert_eq!(
            (b.syns, b.cookies_sent),
            (1, 1),
            "bound listener's counters"
        );
        // Without the bound listener its address falls back to the wildcard.
        f.maps
            .services()
            .unwrap()
            .set_listeners(&[(key(wildcard), state(false, 0))])
            .unwrap();
        f.expect(
            "the bound listener removed: the wildcard's",
            &bound,
            Reason::Passed,
            XDP_PASS,
        );
    });
}

#[test]
fn a_syn_without_timestamps_gets_only_an_mss() {
    in_own_netns(|| {
        let f = Fixture::new(true);
        let frame = v4("10.1.2.1")
            .tcp(f.port, SYN)
            .payload(0)
            .tcp_options(vec![2, 4, 0x05, 0xb4, 1, 3, 3, 7])
            .build();
        let answer = f.expect(
            "SYN with MSS and wscale only",
            &frame,
            Reason::SynCookieSent,
            XDP_TX,
        );
        let ours = check_syn_ack(&frame, &answer);
        assert_eq!(ours.mss, Some(1460));
        assert_eq!(
            (ours.timestamp, ours.wscale, ours.sack_permitted),
            (None, None, false),
            "without a timestamp the cookie cannot carry window scale or SACK"
        );
        // What floods send: no options at all. The answer has none either and is
        // exactly as long (the frame is rewritten in place, nothing to grow).
        let bare = v4("10.1.2.2").tcp(f.port, SYN).payload(0).build();
        let answer = f.expect("SYN without options", &bare, Reason::SynCookieSent, XDP_TX);
        assert_eq!(answer.len(), bare.len());
        let ours = Segment::parse(&answer).unwrap();
        assert_eq!(
            (ours.flags, ours.mss, ours.timestamp),
            (SYN_ACK, None, None)
        );
        assert!(ours.ip_checksum_ok && ours.tcp_checksum_ok);
    });
}

#[test]
fn blocked_and_over_rate_syns_are_dropped_never_answered() {
    in_own_netns(|| {
        let f = Fixture::new(true);
        let blocked = syn("192.0.2.66", f.port).build();
        f.expect(
            "SYN from a blocklisted source",
            &blocked,
            Reason::Blocklisted,
            XDP_DROP,
        );
        for i in 1..=3 {
            let frame = syn("10.1.3.1", f.port).build();
            f.expect(
                &format!("SYN {i}/3 of the burst"),
                &frame,
                Reason::SynCookieSent,
                XDP_TX,
            );
        }
        let frame = syn("10.1.3.1", f.port).build();
        f.expect(
            "SYN over the source's SYN rate",
            &frame,
            Reason::RateSyn,
            XDP_DROP,
        );
    });
}

#[test]
fn connections_and_other_traffic_go_through_as_before() {
    in_own_netns(|| {
        let f = Fixture::new(true);
        // A real connection over loopback: its segments belong to a connection.
        let client = TcpStream::connect(("127.0.0.1", f.port)).unwrap();
        let (_server, _) = f.listener.accept().unwrap();
        let client_port = client.local_addr().unwrap().port();
        let data = v4("127.0.0.1")
            .to("127.0.0.1".parse::<IpAddr>().unwrap())
            .src_port(client_port)
            .tcp(f.port, PSH_ACK)
            .build();
        let (action, out) = f.run(&data);
        assert_eq!(action, XDP_PASS, "data on an established connection");
        assert_eq!(out, data, "passed unchanged");
        let rst = v4("10.1.4.1").tcp(f.port, RST).payload(0).build();
        f.expect("RST to the listener", &rst, Reason::Passed, XDP_PASS);
        let dns = v4("10.1.4.2")
            .to(SERVICE_V4.parse::<IpAddr>().unwrap())
            .udp(53)
            .build();
        f.expect("UDP to an allowed port", &dns, Reason::Passed, XDP_PASS);
        let ping = v4("10.1.4.3")
            .to(SERVICE_V4.parse::<IpAddr>().unwrap())
            .icmp()
            .build();
        f.expect("ICMP to a service address", &ping, Reason::Passed, XDP_PASS);
        let ssh = syn("10.1.4.4", 22)
            .to(SERVICE_V4.parse::<IpAddr>().unwrap())
            .build();
        f.expect(
            "SYN to an allowed port (22/tcp)",
            &ssh,
            Reason::Passed,
            XDP_PASS,
        );
    });
}

#[test]
fn with_cookies_off_syns_pass_to_the_kernel_and_are_counted() {
    in_own_netns(|| {
        let f = Fixture::new(false);
        let frame = syn("10.1.5.1", f.port).build();
        let (action, out) = f.run(&frame);
        assert_eq!(
            (action, out == frame),
            (XDP_PASS, true),
            "SYN passed unchanged"
        );
        let ack = v4("10.1.5.1")
            .tcp(f.port, ACK)
            .ack(12345)
            .payload(0)
            .build();
        f.expect("ACK with cookies off", &ack, Reason::Passed, XDP_PASS);
        let counters = f.maps.services_ref().unwrap().listener_counters(0).unwrap();
        assert_eq!((counters.syns, counters.cookies_sent), (1, 0));
    });
}

#[test]
fn the_service_filter_drops_unserved_ports_but_not_the_hosts_own_traffic() {
    in_own_netns(|| {
        let f = Fixture::new(false);
        let service: IpAddr = SERVICE_V4.parse().unwrap();
        let udp_flood = v4("10.1.6.1").to(service).udp(9999).build();
        f.expect(
            "UDP to a closed port",
            &udp_flood,
            Reason::PortClosed,
            XDP_DROP,
        );
        let scan = syn("10.1.6.2", 8080).to(service).build();
        f.expect("SYN to a closed port", &scan, Reason::PortClosed, XDP_DROP);
        let scan6 = syn("2001:db8:6::2", 8080)
            .to(SERVICE_V6.parse::<IpAddr>().unwrap())
            .build();
        f.expect(
            "IPv6 SYN to a closed port",
            &scan6,
            Reason::PortClosed,
            XDP_DROP,
        );
        let elsewhere = v4("10.1.6.3")
            .to("10.99.0.1".parse::<IpAddr>().unwrap())
            .udp(9999)
            .build();
        f.expect(
            "UDP to an address that is not a service address",
            &elsewhere,
            Reason::Passed,
            XDP_PASS,
        );

        // The host's own client connection (like a backend connection): replies to its
        // ephemeral port pass; a new connection to that port does not.
        let own = TcpStream::connect(("127.0.0.1", f.port)).unwrap();
        let own_port = own.local_addr().unwrap().port();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let reply = v4("127.0.0.1")
            .to(local)
            .src_port(f.port)
            .tcp(own_port, PSH_ACK)
            .build();
        f.expect(
            "reply on the host's own connection",
            &reply,
            Reason::Passed,
            XDP_PASS,
        );
        let syn_to_it = syn("127.0.0.1", own_port).to(local).build();
        f.expect(
            "SYN to the host's client port",
            &syn_to_it,
            Reason::PortClosed,
            XDP_DROP,
        );
        // The host's own UDP client socket (like a resolver's).
        let resolver = UdpSocket::bind("127.0.0.1:0").unwrap();
        resolver.connect("127.0.0.1:53").unwrap();
        let resolver_port = resolver.local_addr().unwrap().port();
        let answer = v4("127.0.0.1")
            .to(local)
            .src_port(53)
            .udp(resolver_port)
            .build();
        f.expect(
            "UDP reply to the host's own socket",
            &answer,
            Reason::Passed,
            XDP_PASS,
        );
    });
}
