//! SNI routes on one :443 listener, with real clients and real nginx backends:
//! two names terminated here to two pools, a name passed through to an nginx that
//! terminates TLS with its own certificate (plain, and with PROXY v2), and the
//! default route. ClientHellos in several TCP segments and over two TLS records, an
//! oversized one, slow clients reaped at the handshake timeout, and routes changed
//! by reloads under a request loop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lab::certs::{self, CertFiles, KeyType};
use lab::config::*;
use lab::inside::in_netns;
use lab::nginx::{Nginx, NginxOptions};
use lab::site::{Lab, LabOptions, s_client_text};
use proxy::api::{HandshakeFailure, Stats};

/// Ports of the TLS nginx on backend 2: its own TLS, and TLS behind PROXY v2.
const PASS_PORT: u16 = 8443;
const PASS_PP_PORT: u16 = 8444;

struct Site {
    lab: Lab,
    /// The proxy's certificate (api.test, web.test).
    proxy_cert: CertFiles,
    /// The passthrough backend's own certificate (pass.test, pp.test).
    backend_cert: CertFiles,
    /// Both, as the clients' trust store.
    bundle: String,
    _tls_backends: Vec<Nginx>,
}

impl Site {
    fn new(handshake_timeout: &str) -> Site {
        let lab = Lab::new(LabOptions {
            backends: 3,
            ..LabOptions::default()
        });
        let dir = lab.dir.path();
        let proxy_cert = certs::write(
            dir,
            "proxy",
            KeyType::EcdsaP256,
            "api.test",
            &["api.test", "web.test"],
        );
        let backend_cert = certs::write(
            dir,
            "backend",
            KeyType::EcdsaP256,
            "pass.test",
            &["pass.test", "pp.test"],
        );
        let bundle = lab.path("bundle.pem");
        let pem = std::fs::read_to_string(&proxy_cert.cert).unwrap()
            + &std::fs::read_to_string(&backend_cert.cert).unwrap();
        std::fs::write(&bundle, pem).unwrap();
        let tls_backend = |name: &str, port, proxy_protocol| {
            Nginx::start(
                &lab.topo.host(4).ns,
                &dir.join(name),
                NginxOptions {
                    name,
                    port,
                    proxy_protocol,
                    tls: Some((backend_cert.cert.clone(), backend_cert.key.clone())),
                    ..NginxOptions::default()
                },
            )
        };
        let tls_backends = vec![
            tls_backend("pass", PASS_PORT, false),
            tls_backend("pp", PASS_PP_PORT, true),
        ];
        let mut site = Site {
            lab,
            proxy_cert,
            backend_cert,
            bundle,
            _tls_backends: tls_backends,
        };
        let config = site.config(handshake_timeout, &[]);
        site.lab.start_proxy(&config);
        site
    }

    /// be0 ← api.test, be1 ← web.test (terminated), the TLS nginx ← pass.test and
    /// pp.test (passed through, the second with PROXY v2), be2 ← everything else.
    /// `extra`: more routes, first.
    fn config(&self, handshake_timeout: &str, extra: &[Route]) -> String {
        let lb = self.lab.lb_ip();
        let be = |i: usize| addr(self.lab.backend_addr(i));
        let tls_be = |port: u16| addr(format!("{}:{port}", self.lab.topo.host(4).ipv4));
        let mut listener = Listener::new("edge", addr(format!("{lb}:443")), "default")
            .tls(tls(&self.proxy_cert).handshake_timeout(dur(handshake_timeout)));
        for r in extra {
            listener = listener.route(r.clone());
        }
        let listener = listener
            .route(Route::new(&["api.test"], "api"))
            .route(Route::new(&["web.test"], "web"))
            .route(Route::new(&["pass.test"], "pass").passthrough())
            .route(Route::new(&["pp.test"], "pp").passthrough());
        Config::new()
            .with_listener(listener)
            .with_pool(Pool::new("api", [be(0)]))
            .with_pool(Pool::new("web", [be(1)]))
            .with_pool(Pool::new("default", [be(2)]))
            .with_pool(Pool::new("pass", [tls_be(PASS_PORT)]))
            .with_pool(Pool::new("pp", [tls_be(PASS_PP_PORT)]).proxy_protocol(ProxyProtocol::V2))
            .to_toml()
    }

    /// `curl https://NAME/name` through the proxy: the backend's name.
    fn curl(&self, name: &str) -> String {
        let lb = self.lab.lb_ip();
        self.lab
            .client_ok(&format!(
                "curl -sS --max-time 5 --cacert {} --resolve {name}:443:{lb} https://{name}/name",
                self.bundle
            ))
            .trim()
            .to_string()
    }

    /// The SHA-256 fingerprint of the certificate `openssl s_client` is shown.
    fn presented_fingerprint(&self, servername: Option<&str>) -> String {
        let sni = match servername {
            Some(name) => format!("-servername {name}"),
            None => "-noservername".into(),
        };
        let out = self.lab.client(&format!(
            "echo | timeout 10 openssl s_client -connect {}:443 {sni} 2>/dev/null \
             | openssl x509 -noout -fingerprint -sha256",
            self.lab.lb_ip()
        ));
        s_client_text(&out).trim().to_string()
    }

    fn stats(&self) -> Stats {
        serde_json::from_str(&self.lab.stats_json()).expect("stats JSON")
    }
}

fn fingerprint(cert: &Path) -> String {
    lab::netns::sh(&format!(
        "openssl x509 -in {} -noout -fingerprint -sha256",
        cert.display()
    ))
    .trim()
    .to_string()
}

#[test]
fn routes_reach_their_pools_terminated_or_passed_through() {
    let site = Site::new("5s");
    // Terminated names: the proxy's certificate, each to its pool.
    assert_eq!(site.curl("api.test"), "be0");
    assert_eq!(site.curl("web.test"), "be1");
    let proxy_print = fingerprint(&site.proxy_cert.cert);
    let backend_print = fingerprint(&site.backend_cert.cert);
    assert_eq!(site.presented_fingerprint(Some("api.test")), proxy_print);
    // Passed through: the backend's own certificate and its own TLS.
    assert_eq!(site.presented_fingerprint(Some("pass.test")), backend_print);
    assert_eq!(site.curl("pass.test"), "pass");
    // Through PROXY v2 before the client's TLS: nginx logs the real client.
    assert_eq!(site.curl("pp.test"), "pp");
    let pp_log = site._tls_backends[1].access_log();
    let client = site.lab.client_ip();
    assert!(
        pp_log.contains(&format!("pp={client} ")),
        "nginx sees the client through PROXY v2:\n{pp_log}"
    );
    // No SNI and an unknown name take the default route (terminated here).
    assert_eq!(site.presented_fingerprint(None), proxy_print);
    let lb = site.lab.lb_ip();
    let unknown = site.lab.client_ok(&format!(
        "curl -sS --max-time 5 -k --resolve other.test:443:{lb} https://other.test/name"
    ));
    assert_eq!(unknown.trim(), "be2");
    let no_sni = site
        .lab
        .client_ok(&format!("curl -sS --max-time 5 -k https://{lb}/name"));
    assert_eq!(no_sni.trim(), "be2", "an IP address sends no SNI");

    // A ClientHello in several TCP segments, and over two TLS records.
    let target: SocketAddr = addr(format!("{lb}:443"));
    for split in [Split::Segments, Split::Records] {
        for (name, backend) in [("pass.test", "pass"), ("api.test", "be0")] {
            let (body, cert) = split_hello_get(&site, target, name, split);
            assert_eq!(body.trim(), backend, "{name} with {split:?}");
            let want = if name == "pass.test" {
                &site.backend_cert
            } else {
                &site.proxy_cert
            };
            assert_eq!(
                cert,
                pem_der(&want.cert),
                "{name} with {split:?}: the certificate"
            );
        }
    }

    // Not TLS, and a ClientHello over 16 KiB: refused with their reasons.
    let not_tls = in_netns(&site.lab.topo.host(1).ns, || {
        let mut s = TcpStream::connect(target).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        closed_by_server(&mut s)
    });
    assert!(not_tls, "plain HTTP is refused");
    let too_large = in_netns(&site.lab.topo.host(1).ns, || {
        let mut s = TcpStream::connect(target).unwrap();
        // A ClientHello announced at 20,000 bytes, sent in 1,000-byte records.
        let mut first = vec![
            0x16, 0x03, 0x01, 0x03, 0xe8, 0x01, 0x00, 0x4e, 0x20, 0x03, 0x03,
        ];
        first.resize(5 + 1000, 0);
        let mut next = vec![0x16, 0x03, 0x01, 0x03, 0xe8];
        next.resize(5 + 1000, 0);
        let _ = s.write_all(&first);
        for _ in 0..17 {
            if s.write_all(&next).is_err() {
                break;
            }
        }
        closed_by_server(&mut s)
    });
    assert!(too_large, "an oversized ClientHello is refused");
    let stats = site.stats();
    let edge = &stats.listeners[0];
    let failures = &edge.tls_handshake_failures;
    assert!(
        failures.get(&HandshakeFailure::NotTls) >= Some(&1),
        "{failures:?}"
    );
    assert_eq!(
        failures.get(&HandshakeFailure::TooLarge),
        Some(&1),
        "{failures:?}"
    );
    let log = site.lab.proxy().log();
    assert!(
        log.contains("no complete ClientHello in the first 16384 bytes"),
        "{log}"
    );

    // Visible per route: the API (with pool and mode) and /metrics.
    let route = |name: &str| edge.routes.iter().find(|r| r.name == name).unwrap();
    assert_eq!(route("pass.test").tls, "passthrough");
    assert_eq!(route("pass.test").pool, "pass");
    assert_eq!(route("api.test").tls, "terminate");
    // s_client, curl and the two split ClientHellos.
    assert_eq!(
        route("pass.test").connections,
        4,
        "{:?}",
        route("pass.test")
    );
    assert!(
        route("pass.test").bytes_downstream > 1000,
        "{:?}",
        route("pass.test")
    );
    assert!(route("default").connections >= 3, "{:?}", route("default"));
    let metrics = site.lab.lb().ns.sh("curl -s http://127.0.0.1:9100/metrics");
    assert!(
        metrics.contains("proxy_route_connections_total{listener=\"edge\",route=\"pass.test\"}"),
        "{metrics}"
    );
    let text = site
        .lab
        .cli(&format!("stats --socket {}", site.lab.path("admin.sock")));
    assert!(text.contains("route pass.test"), "{text}");
    assert!(text.contains("-> pool pass (passthrough)"), "{text}");
}

#[derive(Clone, Copy, Debug)]
enum Split {
    /// One TLS record in three TCP segments.
    Segments,
    /// The ClientHello message in two TLS records (each its own segment).
    Records,
}

/// A rustls client whose ClientHello is sent split as asked, then a whole GET
/// `/name`: the answer's body and the certificate the server presented (DER).
fn split_hello_get(site: &Site, target: SocketAddr, name: &str, split: Split) -> (String, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for c in [&site.proxy_cert, &site.backend_cert] {
        roots.add(pem_der(&c.cert).into()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(proxy::datapath::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    in_netns(&site.lab.topo.host(1).ns, move || {
        let mut tcp = TcpStream::connect(target).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let pieces: Vec<Vec<u8>> = match split {
            Split::Segments => {
                let third = hello.len() / 3;
                vec![
                    hello[..3].to_vec(),
                    hello[3..third].to_vec(),
                    hello[third..].to_vec(),
                ]
            }
            Split::Records => {
                let body = &hello[5..];
                let (a, b) = body.split_at(body.len() / 2);
                let record = |payload: &[u8]| {
                    let mut r = hello[..3].to_vec();
                    r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                    r.extend_from_slice(payload);
                    r
                };
                vec![record(a), record(b)]
            }
        };
        for piece in pieces {
            tcp.write_all(&piece).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        let cert = conn.peer_certificates().unwrap()[0].to_vec();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(format!("GET /name HTTP/1.0\r\nHost: {name}\r\n\r\n").as_bytes())
            .unwrap();
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer);
        let body = answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        (body, cert)
    })
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

/// Reads until the server closes (or resets); false if it stays open 10 s.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_passthrough_clients_are_reaped_at_the_handshake_timeout() {
    const SLOW: usize = 500;
    // The handshake timeout leaves room to accept all 500 on a loaded machine before
    // the first ones are reaped.
    let site = Site::new("5s");
    let pid = site.lab.proxy().proc.as_ref().unwrap().pid();
    let baseline = lab::process::fd_count(pid);
    let target: SocketAddr = addr(format!("{}:443", site.lab.lb_ip()));
    let (reaped, held) = in_netns(&site.lab.topo.host(1).ns, || {
        // Each sends the first bytes of a ClientHello, then nothing.
        let mut streams: Vec<TcpStream> = (0..SLOW)
            .map(|_| {
                let mut s = TcpStream::connect(target).unwrap();
                s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
                s
            })
            .collect();
        // Every slow client accepted and held (under load, accepting 500 takes a while;
        // CI saw more than 1 s).
        let held = lab::wait_for(
            "the slow clients to be held",
            Duration::from_secs(4),
            || {
                let fds = lab::process::fd_count(pid);
                (fds >= baseline + SLOW).then_some(fds)
            },
        );
        let start = Instant::now();
        let reaped = streams
            .iter_mut()
            .map(closed_by_server)
            .filter(|c| *c)
            .count();
        (reaped, (held, start.elapsed()))
    });
    assert_eq!(reaped, SLOW, "every slow client was cut");
    assert!(
        held.0 >= baseline + SLOW,
        "the proxy held them: {} fds",
        held.0
    );
    lab::wait_for("the descriptors to return", Duration::from_secs(10), || {
        (lab::process::fd_count(pid) <= baseline).then_some(())
    });
    let stats = site.stats();
    let timeouts = stats.listeners[0]
        .tls_handshake_failures
        .get(&HandshakeFailure::Timeout)
        .copied();
    assert_eq!(timeouts, Some(SLOW as u64));
}

#[test]
fn routes_change_by_reload_without_failed_requests() {
    let site = Site::new("5s");
    let lb = site.lab.lb_ip().to_string();
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let done = AtomicBool::new(false);
    // Passed through: the proxy has no certificate for new.test (and needs none).
    let added = Route::new(&["new.test"], "pass").passthrough();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                for name in ["api.test", "pass.test"] {
                    let out = site.lab.client(&format!(
                        "curl -sS --max-time 5 --cacert {} --resolve {name}:443:{lb} https://{name}/name",
                        site.bundle
                    ));
                    let counter = if out.status.success() { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let proxy = site.lab.proxy();
        // The answers for new.test after each reload (the loop stops either way).
        let seen: Vec<String> = (1..=4)
            .map(|round| {
                std::thread::sleep(Duration::from_millis(300));
                // Odd rounds add a route, even ones remove it again.
                let extra = if round % 2 == 1 {
                    vec![added.clone()]
                } else {
                    vec![]
                };
                proxy.write_config(&site.config("5s", &extra));
                proxy.signal("HUP");
                let applied = lab::try_wait_for("the reload", Duration::from_secs(10), || {
                    (proxy.count_log("reload succeeded") == round).then_some(())
                });
                if let Err(e) = applied {
                    return format!("{e:#}: {}", proxy.log());
                }
                let out = site.lab.client(&format!(
                    "curl -sS --max-time 5 -k --resolve new.test:443:{lb} https://new.test/name"
                ));
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
            .collect();
        done.store(true, Ordering::Relaxed);
        // Added: the passthrough backend; removed: the default route (be2).
        assert_eq!(seen, ["pass", "be2", "pass", "be2"]);
    });
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok >= 4, "{ok} requests");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    // The removed route's series are gone, the kept ones stay.
    let metrics = site.lab.lb().ns.sh("curl -s http://127.0.0.1:9100/metrics");
    assert!(!metrics.contains("route=\"new.test\""), "{metrics}");
    assert!(metrics.contains("route=\"api.test\""), "{metrics}");
}
