//! Plain TCP forwarding, backend choice and failure handling, PROXY protocol and
//! limits, with curl and real nginx backends in network namespaces.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use lab::config::*;
use lab::inside::in_netns;
use lab::site::{Lab, LabOptions};
use proxy::api::Stats;
use proxy::datapath::forward::SPLICE_AFTER;

fn curl(lab: &Lab, url: &str) -> String {
    lab.client_ok(&format!("curl -sS --fail --max-time 10 -g {url}"))
}

#[test]
fn plain_tcp_ipv4_ipv6_and_stickiness() {
    let mut lab = Lab::new(LabOptions::default());
    let (lb, lb6) = (lab.lb_ip().to_string(), lab.topo.host(0).ipv6.clone());
    let config = Config::new()
        .with_listener(Listener::new("v4", addr(format!("{lb}:8080")), "web"))
        .with_listener(Listener::new("v6", addr(format!("[{lb6}]:8080")), "web"))
        .with_listener(
            Listener::new("v4copy", addr(format!("{lb}:8081")), "web").forwarding(Forwarding::Copy),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .to_toml();
    lab.start_proxy(&config);
    let big = lab.backends[0].big();
    assert_eq!(big, lab.backends[1].big());

    // IPv4 and IPv6 listeners; the same client always lands on the same backend.
    let first = curl(&lab, &format!("http://{}:8080/name", lab.lb_ip()));
    assert!(first == "be0\n" || first == "be1\n", "{first}");
    for _ in 0..5 {
        assert_eq!(
            curl(&lab, &format!("http://{}:8080/name", lab.lb_ip())),
            first
        );
    }
    let v6 = curl(
        &lab,
        &format!("http://[{}]:8080/name", lab.topo.host(0).ipv6),
    );
    assert!(v6.starts_with("be"), "{v6}");

    // A 2 MiB download arrives intact through splice and through the copy path.
    for port in [8080, 8081] {
        let file = lab.path(&format!("big-{port}"));
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 20 -o {file} http://{}:{port}/big",
            lab.lb_ip()
        ));
        assert!(
            std::fs::read(&file).unwrap() == big,
            "port {port}: body differs"
        );
    }
    // The splice listener moved the body with splice(2); the copy listener did not.
    let stats: Stats = serde_json::from_str(&lab.stats_json()).unwrap();
    let listener = |name: &str| {
        stats
            .listeners
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("listener {name} in {stats:?}"))
            .clone()
    };
    let (spliced, copied) = (listener("v4"), listener("v4copy"));
    // Each direction copies its first SPLICE_AFTER bytes (plus at most one scratch
    // buffer) before it switches to splice; the rest of the body is spliced.
    let copied_at_most = SPLICE_AFTER + 64 * 1024;
    assert!(
        spliced.bytes_spliced + copied_at_most >= big.len() as u64,
        "spliced {} of the {}-byte body: {spliced:?}",
        spliced.bytes_spliced,
        big.len()
    );
    assert!(spliced.bytes_spliced <= spliced.bytes_upstream + spliced.bytes_downstream);
    assert_eq!(copied.bytes_spliced, 0, "{copied:?}");
    assert!(copied.bytes_downstream >= big.len() as u64, "{copied:?}");
}

/// A backend that answers only after the client's EOF: it reads the whole request,
/// then sends `RESPONSE_BYTES` bytes and closes. (nginx cannot serve this test: it
/// treats a client's half-close as an abort, "client prematurely closed connection".)
const RESPONSE_BYTES: usize = 3 << 20;

fn response_byte(i: usize) -> u8 {
    (i % 251) as u8
}

fn eof_server(lab: &Lab, connections: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let addr = format!("{}:9000", lab.topo.host(2).ipv4);
    let listener = in_netns(&lab.topo.host(2).ns, || {
        std::net::TcpListener::bind(&addr).unwrap()
    });
    lab::inside::spawn_in_netns(&lab.topo.host(2).ns, move || {
        let mut requests = Vec::new();
        for _ in 0..connections {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            s.read_to_end(&mut request).unwrap();
            let response: Vec<u8> = (0..RESPONSE_BYTES).map(response_byte).collect();
            s.write_all(&response).unwrap();
            requests.push(request);
        }
        requests
    })
}

#[test]
fn half_close_keeps_the_response_flowing() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let cert = lab.cert("hc.test");
    let backend = format!("{}:9000", lab.topo.host(2).ipv4);
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(Listener::new("splice", addr(format!("{lb}:8080")), "eof"))
        .with_listener(
            Listener::new("copy", addr(format!("{lb}:8081")), "eof").forwarding(Forwarding::Copy),
        )
        .with_listener(Listener::new("tls", addr(format!("{lb}:8443")), "eof").tls(tls(&cert)))
        .with_pool(Pool::new("eof", addrs(&[&backend])).health(Health::off()))
        .to_toml();
    let server = eof_server(&lab, 3);
    lab.start_proxy(&config);
    let lb = lab.lb_ip().to_string();
    let expected: Vec<u8> = (0..RESPONSE_BYTES).map(response_byte).collect();
    in_netns(&lab.topo.host(1).ns, || {
        // Plain TCP, splice and copy: shutdown(SHUT_WR), then read everything.
        for (port, request) in [(8080, &b"via splice"[..]), (8081, &b"via copy"[..])] {
            let mut s = TcpStream::connect(format!("{lb}:{port}")).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(request).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert!(got == expected, "port {port}: got {} bytes", got.len());
        }
        // TLS: close_notify is the TLS half-close; the response still arrives.
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&cert.cert).unwrap();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("hc.test").unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut sock = TcpStream::connect(format!("{lb}:8443")).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"via tls").unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("TLS read after {} bytes: {e}", got.len()),
            }
        }
        assert!(got == expected, "TLS: got {} bytes", got.len());
    });
    let requests = server.join().unwrap();
    assert_eq!(
        requests,
        vec![
            b"via splice".to_vec(),
            b"via copy".to_vec(),
            b"via tls".to_vec()
        ]
    );
}

#[test]
fn failed_backend_falls_through_and_health_checks_mark_it() {
    let mut lab = Lab::new(LabOptions::default());
    let lb = lab.lb_ip().to_string();
    // No active checks, and passive marking effectively off: every connection tries the
    // dead backend first, fails, and must fall through to the next candidate.
    let unchecked = Health {
        fall: 1000,
        ..Health::off()
    };
    let config = Config::new()
        .with_listener(Listener::new(
            "unchecked",
            addr(format!("{lb}:8080")),
            "unchecked",
        ))
        .with_listener(Listener::new(
            "checked",
            addr(format!("{lb}:8081")),
            "checked",
        ))
        .with_pool(Pool::new("unchecked", addrs(&lab.backend_addrs())).health(unchecked))
        .with_pool(
            Pool::new("checked", addrs(&lab.backend_addrs())).health(Health::every(
                dur("200ms"),
                dur("200ms"),
                2,
                2,
            )),
        )
        .to_toml();
    lab.start_proxy(&config);
    let lb = lab.lb_ip().to_string();
    let url = |port| format!("http://{lb}:{port}/name");
    let owner = curl(&lab, &url(8080));
    assert_eq!(
        curl(&lab, &url(8081)),
        owner,
        "same key, same table, same owner"
    );
    let dead = if owner == "be0\n" { 0 } else { 1 };
    let alive = 1 - dead;
    let dead_addr = lab.backend_addr(dead);

    lab.backends[dead].kill(&lab.topo.host(2 + dead).ns);
    let served_before = lab.backends[alive].access_log().lines().count();
    for _ in 0..3 {
        assert_eq!(curl(&lab, &url(8080)), format!("be{alive}\n"));
    }
    // nginx logs a request after the response is sent: wait for the third line.
    lab::wait_for(
        "three more access log lines",
        Duration::from_secs(5),
        || {
            let served = lab.backends[alive].access_log().lines().count();
            (served >= served_before + 3).then_some(())
        },
    );
    assert_eq!(
        lab.backends[alive].access_log().lines().count(),
        served_before + 3
    );

    // Active checks mark it down, then up again once it is back.
    lab.proxy().wait_log(
        "backend marked down",
        &format!(
            "\"message\":\"backend marked DOWN\",\"pool\":\"checked\",\"backend\":\"{dead_addr}\""
        ),
    );
    assert_eq!(curl(&lab, &url(8081)), format!("be{alive}\n"));
    lab.backends[dead].restart(&lab.topo.host(2 + dead).ns);
    lab.proxy().wait_log(
        "backend marked up",
        &format!(
            "\"message\":\"backend marked UP\",\"pool\":\"checked\",\"backend\":\"{dead_addr}\""
        ),
    );
    assert_eq!(
        curl(&lab, &url(8081)),
        owner,
        "the owner serves its keys again"
    );
    // The unchecked pool never marked it down (fall = 1000) and reaches it again.
    assert_eq!(curl(&lab, &url(8080)), owner);
    assert!(!lab.proxy().log().contains("\"pool\":\"unchecked\""));
}

#[test]
fn proxy_protocol_v1_and_v2_reach_nginx() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        proxy_protocol: true,
        ..LabOptions::default()
    });
    let cert = lab.cert("pp.test");
    let (lb, lb6) = (lab.lb_ip().to_string(), lab.topo.host(0).ipv6.clone());
    let config = Config::new()
        .with_listener(Listener::new("v2", addr(format!("{lb}:8080")), "v2"))
        .with_listener(Listener::new(
            "v2-ipv6",
            addr(format!("[{lb6}]:8080")),
            "v2",
        ))
        .with_listener(Listener::new("v1", addr(format!("{lb}:8081")), "v1"))
        .with_listener(
            Listener::new("v2-tls", addr(format!("{lb}:8443")), "v2")
                .tls(tls(&cert).alpn(&["http/1.1"])),
        )
        .with_pool(
            Pool::new("v2", addrs(&lab.backend_addrs()))
                .proxy_protocol(ProxyProtocol::V2)
                .health(Health::every(dur("100ms"), dur("1s"), 1, 1)),
        )
        .with_pool(
            Pool::new("v1", addrs(&lab.backend_addrs()))
                .proxy_protocol(ProxyProtocol::V1)
                .health(Health::every(dur("100ms"), dur("1s"), 1, 1)),
        )
        .to_toml();
    lab.start_proxy(&config);
    let client = lab.client_ip().to_string();
    let client6 = lab.topo.host(1).ipv6.clone();
    let lb = lab.lb_ip().to_string();
    for (url, extra) in [
        (format!("http://{lb}:8080/name?v2"), ""),
        (
            format!("http://[{}]:8080/name?v2-ipv6", lab.topo.host(0).ipv6),
            "",
        ),
        (format!("http://{lb}:8081/name?v1"), ""),
        (
            "https://pp.test:8443/name?v2-tls".to_string(),
            &*format!(
                "--cacert {} --resolve pp.test:8443:{lb}",
                cert.cert.display()
            ),
        ),
    ] {
        assert_eq!(
            lab.client_ok(&format!("curl -sS --fail --max-time 10 -g {extra} '{url}'")),
            "be0\n"
        );
    }
    let log = lab.backends[0].access_log();
    // nginx saw the proxy's address as the TCP peer and the client's in the header.
    for (query, peer, real) in [
        ("v2", lb.as_str(), client.as_str()),
        // The backend address is IPv4: the header carries the client's IPv6 address.
        ("v2-ipv6", lb.as_str(), client6.as_str()),
        ("v1", lb.as_str(), client.as_str()),
        ("v2-tls", lb.as_str(), client.as_str()),
    ] {
        let want = format!("{peer} pp={real} \"GET /name?{query} HTTP/1.1\" 200");
        assert!(log.contains(&want), "missing {want:?} in:\n{log}");
    }
    // Health checks (every 100 ms, both pools, both backends) send a PROXY header
    // too: nginx sees a client that closes while waiting for a request, never a
    // broken header.
    for backend in &lab.backends {
        lab::wait_for(
            "health checks at the backend",
            Duration::from_secs(10),
            || {
                let closed = backend
                    .error_log()
                    .matches("client closed connection while waiting for request")
                    .count();
                (closed >= 10).then_some(())
            },
        );
        let errors = backend.error_log();
        assert!(!errors.contains("broken header"), "{errors}");
    }
}

#[test]
fn per_source_and_listener_limits() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(
            Listener::new("per-source", addr(format!("{lb}:8080")), "web").max_per_source(2),
        )
        .with_listener(
            Listener::new("listener-cap", addr(format!("{lb}:8081")), "web").max_connections(1),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .to_toml();
    lab.start_proxy(&config);
    let lb = lab.lb_ip().to_string();
    in_netns(&lab.topo.host(1).ns, || {
        // One keep-alive request; true if nginx answered through the proxy.
        let request = |s: &mut TcpStream| -> bool {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if s.write_all(b"GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
                .is_err()
            {
                return false;
            }
            let mut out = Vec::new();
            let mut buf = [0u8; 1024];
            while !out.ends_with(b"be0\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
            true
        };
        for (port, allowed) in [(8080, 2), (8081, 1)] {
            let target = format!("{lb}:{port}");
            // Served (so accepted and counted), and kept open.
            let mut open: Vec<TcpStream> = (0..allowed)
                .map(|_| TcpStream::connect(&target).unwrap())
                .collect();
            for s in &mut open {
                assert!(
                    request(s),
                    "port {port}: connection within the limit was not served"
                );
            }
            let mut over = TcpStream::connect(&target).unwrap();
            assert!(
                !request(&mut over),
                "port {port}: connection over the limit was served"
            );
            for s in &mut open {
                assert!(request(s), "port {port}: open connections keep working");
            }
            drop(open);
            // Places are released once the proxy sees the closes.
            lab::wait_for("a place to free up", Duration::from_secs(10), || {
                let mut again = TcpStream::connect(&target).ok()?;
                request(&mut again).then_some(())
            });
        }
    });
}

/// A backend on host 2 port 9100 that, per connection, either sends `bytes` and then
/// resets (`reset_first`), or reads until the client side resets; returns what its
/// reads ended with.
fn resetting_backend(
    lab: &Lab,
    connections: usize,
    reset_first: bool,
) -> std::thread::JoinHandle<Vec<std::io::ErrorKind>> {
    let addr = format!("{}:9100", lab.topo.host(2).ipv4);
    let listener = in_netns(&lab.topo.host(2).ns, || {
        std::net::TcpListener::bind(&addr).unwrap()
    });
    lab::inside::spawn_in_netns(&lab.topo.host(2).ns, move || {
        let mut ends = Vec::new();
        for _ in 0..connections {
            let (mut s, _) = listener.accept().unwrap();
            if reset_first {
                s.write_all(&[7u8; 300_000]).unwrap();
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(s);
                ends.push(std::io::ErrorKind::Other);
            } else {
                let mut buf = [0u8; 65536];
                let end = loop {
                    match s.read(&mut buf) {
                        Ok(0) => break std::io::ErrorKind::UnexpectedEof,
                        Ok(_) => continue,
                        Err(e) => break e.kind(),
                    }
                };
                ends.push(end);
            }
        }
        ends
    })
}

#[test]
fn an_abort_stays_an_abort_both_ways() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let lb = lab.lb_ip().to_string();
    let backend = format!("{}:9100", lab.topo.host(2).ipv4);
    let config = Config::new()
        .with_listener(Listener::new("splice", addr(format!("{lb}:8080")), "rst"))
        .with_listener(
            Listener::new("copy", addr(format!("{lb}:8081")), "rst").forwarding(Forwarding::Copy),
        )
        .with_pool(Pool::new("rst", addrs(&[&backend])).health(Health::off()))
        .to_toml();

    // The backend resets after 300 KB (past SPLICE_AFTER, so splice runs): the
    // client must see a reset, not an orderly end of a short response.
    let server = resetting_backend(&lab, 2, true);
    lab.start_proxy(&config);
    in_netns(&lab.topo.host(1).ns, || {
        for port in [8080, 8081] {
            let mut s = TcpStream::connect(format!("{lb}:{port}")).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            let end = s.read_to_end(&mut got);
            assert_eq!(
                end.as_ref().map_err(|e| e.kind()).err(),
                Some(std::io::ErrorKind::ConnectionReset),
                "port {port}: {end:?} after {} bytes",
                got.len()
            );
        }
    });
    server.join().unwrap();

    // The client resets mid-upload: the backend must see a reset too.
    let server = resetting_backend(&lab, 2, false);
    in_netns(&lab.topo.host(1).ns, || {
        for port in [8080, 8081] {
            let mut s = TcpStream::connect(format!("{lb}:{port}")).unwrap();
            s.write_all(&[9u8; 200_000]).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    });
    let ends = server.join().unwrap();
    assert_eq!(
        ends,
        [std::io::ErrorKind::ConnectionReset; 2],
        "what the backend's reads ended with"
    );
}
