//! Attack traffic for the protection tests and the demo. Every generator is bounded
//! in packets (or connections) and in time, and sends only to addresses inside the
//! test's own namespaces.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::packets::{SYN, v4};

#[derive(Debug, Clone, Copy)]
pub struct FloodReport {
    pub sent: u64,
    pub elapsed: Duration,
}

/// TCP SYNs to `dst:port`, each from a new random source in 10.200.0.0/16, written as
/// raw frames on `ifname` (AF_PACKET). Call it on a thread inside the attacker's
/// namespace. Stops after `max_packets` or `max_time`.
pub fn spoofed_syn_flood(
    ifname: &str,
    dst_mac: [u8; 6],
    dst: Ipv4Addr,
    port: u16,
    max_packets: u64,
    max_time: Duration,
) -> FloodReport {
    let raw = RawSocket::open(ifname, dst_mac);
    let mut x: u32 = 0x2545_f491;
    let start = Instant::now();
    let mut sent = 0;
    while sent < max_packets && start.elapsed() < max_time {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let src = Ipv4Addr::new(10, 200, (x >> 8) as u8, x as u8);
        let frame = v4(&src.to_string())
            .tcp(port, SYN)
            .src_port(1024 + (x >> 16) as u16 % 60000)
            .payload(0)
            .macs(dst_mac, [0x02, 0xde, 0xad, 0, 0, 1])
            .to(dst)
            .build();
        if raw.send(&frame) {
            sent += 1;
        }
    }
    FloodReport {
        sent,
        elapsed: start.elapsed(),
    }
}

/// Opens `count` TCP connections to `target` and sends bytes that are not a TLS
/// ClientHello: each is a failed handshake for the server. Returns, per attempt in
/// order, whether the connection was established. Call it inside the attacker's
/// namespace.
pub fn junk_tls_connections(
    target: SocketAddr,
    count: usize,
    connect_timeout: Duration,
) -> Vec<bool> {
    (0..count)
        .map(|_| {
            let Ok(mut s) = TcpStream::connect_timeout(&target, connect_timeout) else {
                return false;
            };
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n this is not TLS\r\n");
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
            true
        })
        .collect()
}

/// The "heavy source" of the protection test and the demo: `junk` connections that
/// are not TLS (each a failed handshake), then up to 300,000 UDP packets in 3 s at
/// the same port. Returns (per junk attempt: established?, UDP packets sent). Call
/// it inside the attacker's namespace.
pub fn heavy_source(target: SocketAddr, junk: usize) -> (Vec<bool>, u64) {
    let established = junk_tls_connections(target, junk, Duration::from_millis(150));
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("UDP socket");
    let (mut sent, start) = (0u64, Instant::now());
    while sent < 300_000 && start.elapsed() < Duration::from_secs(3) {
        if sock.send_to(&[0u8; 64], target).is_ok() {
            sent += 1;
        }
    }
    (established, sent)
}

/// An AF_PACKET socket bound to one interface.
struct RawSocket {
    fd: i32,
    addr: libc::sockaddr_ll,
}

impl RawSocket {
    fn open(ifname: &str, dst_mac: [u8; 6]) -> RawSocket {
        let name = std::ffi::CString::new(ifname).unwrap();
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(ifindex != 0, "no interface {ifname} in this namespace");
        let protocol = (libc::ETH_P_ALL as u16).to_be() as i32;
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&dst_mac);
        RawSocket { fd, addr }
    }

    fn send(&self, frame: &[u8]) -> bool {
        let n = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&self.addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        n == frame.len() as isize
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}
