//! TLS termination through real clients (curl, openssl s_client) to real nginx
//! backends, in network namespaces: versions, SNI certificate choice, ALPN, session
//! resumption, and bad input that must not disturb other clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use lab::certs::{self, CertFiles, KeyType};
use lab::config::*;
use lab::inside::in_netns;
use lab::site::{Lab, LabOptions, s_client_text};
use proxy::logging::gate::LIBRARY_LINES_PER_SECOND;

struct Certs {
    ec: CertFiles,
    rsa: CertFiles,
    ed: CertFiles,
    wild: CertFiles,
    default: CertFiles,
    /// An RSA certificate for the same name as `default` (ECDSA).
    default_rsa: CertFiles,
    /// Every certificate, as the clients' trust store.
    bundle: String,
}

fn make_certs(lab: &Lab) -> Certs {
    let dir = lab.dir.path();
    let c = Certs {
        ec: certs::write(dir, "ec", KeyType::EcdsaP256, "ec.test", &["ec.test"]),
        rsa: certs::write(dir, "rsa", KeyType::Rsa2048, "rsa.test", &["rsa.test"]),
        ed: certs::write(dir, "ed", KeyType::Ed25519, "ed.test", &["ed.test"]),
        wild: certs::write(dir, "wild", KeyType::EcdsaP256, "wild", &["*.wild.test"]),
        default: certs::write(
            dir,
            "default",
            KeyType::EcdsaP256,
            "default.test",
            &["default.test"],
        ),
        default_rsa: certs::write(
            dir,
            "default-rsa",
            KeyType::Rsa2048,
            "default.test",
            &["default.test"],
        ),
        bundle: lab.path("bundle.pem"),
    };
    let mut pem = String::new();
    for f in [&c.ec, &c.rsa, &c.ed, &c.wild, &c.default, &c.default_rsa] {
        pem += &std::fs::read_to_string(&f.cert).unwrap();
    }
    std::fs::write(&c.bundle, pem).unwrap();
    c
}

/// `openssl s_client` from the client host; returns its whole output.
fn s_client(lab: &Lab, port: u16, args: &str) -> String {
    let out = lab.client(&format!(
        "echo | timeout 10 openssl s_client -connect {}:{port} {args} 2>&1",
        lab.lb_ip()
    ));
    s_client_text(&out)
}

#[test]
fn versions_sni_alpn_and_resumption() {
    let mut lab = Lab::new(LabOptions::default());
    let c = make_certs(&lab);
    let lb = lab.lb_ip().to_string();
    let certificates = vec![
        certificate(&c.default).as_default(),
        certificate(&c.ec),
        certificate(&c.rsa),
        certificate(&c.ed),
        certificate(&c.wild),
        certificate(&c.default_rsa),
    ];
    let config = Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{lb}:8443")), "web")
                .tls(ListenerTls::new(certificates).alpn(&["h2", "http/1.1"])),
        )
        .with_listener(
            Listener::new("tls13", addr(format!("{lb}:8444")), "web")
                .tls(tls(&c.ec).min_version(TlsVersion::V1_3)),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .to_toml();
    lab.start_proxy(&config);

    // TLS 1.2 and 1.3, real HTTP through to nginx.
    for (flags, version) in [
        ("--tlsv1.2 --tls-max 1.2", "TLSv1.2"),
        ("--tlsv1.3", "TLSv1.3"),
    ] {
        let out = lab.client_ok(&format!(
            "curl -sS --fail --max-time 10 --http1.1 -v {flags} --cacert {} --resolve ec.test:8443:{} https://ec.test:8443/name 2>&1",
            c.bundle,
            lab.lb_ip()
        ));
        assert!(
            out.contains(&format!("SSL connection using {version}")),
            "{out}"
        );
        assert!(out.contains("\nbe0\n") || out.contains("\nbe1\n"), "{out}");
    }
    for (args, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(&lab, 8443, &format!("-servername ec.test {args}"));
        assert!(out.contains(&format!("New, {version}, Cipher is")), "{out}");
    }

    // SNI picks the certificate: exact names of each key type, wildcard, default.
    for (args, subject, key) in [
        ("-servername ec.test", "CN = ec.test", "id-ecPublicKey, 256"),
        (
            "-servername rsa.test",
            "CN = rsa.test",
            "rsaEncryption, 2048",
        ),
        ("-servername ed.test", "CN = ed.test", "ED25519"),
        ("-servername foo.wild.test", "CN = wild", "id-ecPublicKey"),
        (
            "-servername unknown.test",
            "CN = default.test",
            "id-ecPublicKey",
        ),
        ("-noservername", "CN = default.test", "id-ecPublicKey"),
        // Without SNI (or with an unknown name) a client that can only use RSA gets the
        // default's RSA twin, by signature schemes (TLS 1.3 and 1.2) or cipher suites.
        (
            "-noservername -sigalgs RSA-PSS+SHA256:RSA+SHA256",
            "CN = default.test",
            "rsaEncryption, 2048",
        ),
        (
            "-noservername -tls1_2 -sigalgs RSA-PSS+SHA256:RSA+SHA256",
            "CN = default.test",
            "rsaEncryption, 2048",
        ),
        (
            "-noservername -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256",
            "CN = default.test",
            "rsaEncryption, 2048",
        ),
        (
            "-servername unknown.test -sigalgs RSA-PSS+SHA256:RSA+SHA256",
            "CN = default.test",
            "rsaEncryption, 2048",
        ),
    ] {
        let out = s_client(&lab, 8443, args);
        assert!(
            out.contains(&format!("subject={subject}\n")),
            "{args}: {out}"
        );
        assert!(out.contains(&format!("a:PKEY: {key}")), "{args}: {out}");
    }
    // curl verifies the RSA and Ed25519 chains end to end, too.
    for name in ["rsa.test", "ed.test", "a.wild.test"] {
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 10 --http1.1 --cacert {} --resolve {name}:8443:{} https://{name}:8443/name",
            c.bundle,
            lab.lb_ip()
        ));
    }

    // ALPN: the server's preference among what the client offers.
    let out = s_client(&lab, 8443, "-servername ec.test -alpn http/1.1,h2");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let out = s_client(&lab, 8443, "-servername ec.test -alpn http/1.1");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    let out = s_client(&lab, 8443, "-servername ec.test -alpn foo");
    assert!(!out.contains("ALPN protocol:"), "{out}");
    lab.proxy()
        .wait_log("no_alpn failure logged", "\"reason\":\"no_alpn\"");

    // min_version = "1.3": a TLS 1.2-only client is refused, 1.3 works.
    let out = s_client(&lab, 8444, "-servername ec.test -tls1_2");
    assert!(!out.contains("New, TLSv1.2"), "{out}");
    let out = s_client(&lab, 8444, "-servername ec.test -tls1_3");
    assert!(out.contains("New, TLSv1.3"), "{out}");
    lab.proxy()
        .wait_log("incompatible failure logged", "\"reason\":\"incompatible\"");

    // Resumption: TLS 1.2 (ticket) and TLS 1.3 (ticket after the handshake).
    let sess = lab.path("sess12");
    s_client(
        &lab,
        8443,
        &format!("-servername ec.test -tls1_2 -sess_out {sess}"),
    );
    let out = s_client(
        &lab,
        8443,
        &format!("-servername ec.test -tls1_2 -sess_in {sess}"),
    );
    assert!(out.contains("Reused, TLSv1.2"), "{out}");
    let sess = lab.path("sess13");
    let out = lab.client(&format!(
        "(sleep 0.5) | timeout 10 openssl s_client -connect {}:8443 -servername ec.test -tls1_3 -sess_out {sess} 2>&1",
        lab.lb_ip()
    ));
    assert!(s_client_text(&out).contains("New, TLSv1.3"));
    let out = s_client(
        &lab,
        8443,
        &format!("-servername ec.test -tls1_3 -sess_in {sess}"),
    );
    assert!(out.contains("Reused, TLSv1.3"), "{out}");
}

/// A TLS record carrying the start of a ClientHello whose declared length is `len`.
fn client_hello_header(len: u32) -> Vec<u8> {
    let mut v = vec![0x16, 0x03, 0x01, 0x40, 0x00]; // handshake record, 16 KiB
    v.push(0x01); // ClientHello
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.extend_from_slice(&[0x03, 0x03]);
    v
}

/// Writes `bytes` (ignoring errors: the proxy may close early), then reads until the
/// proxy closes; returns whether it closed within `limit`.
fn closed_by_peer(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> bool {
    let _ = stream.write_all(bytes);
    stream.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an alert, then EOF
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return start.elapsed() < limit,
        }
    }
}

#[test]
fn bad_input_is_contained() {
    let mut lab = Lab::new(LabOptions::default());
    let c = make_certs(&lab);
    let config = Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{}:8443", lab.lb_ip())), "web")
                .tls(tls(&c.ec).handshake_timeout(dur("1s"))),
        )
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_log(Log {
            handshake_errors_per_second: 10,
            ..Log::default()
        })
        .to_toml();
    lab.start_proxy(&config);
    let target = format!("{}:8443", lab.lb_ip());
    let curl = format!(
        "curl -sS --fail --max-time 10 --cacert {} --resolve ec.test:8443:{} https://ec.test:8443/name",
        c.bundle,
        lab.lb_ip()
    );

    // A client that never finishes its handshake is cut at handshake_timeout, and
    // meanwhile everyone else is served.
    let mut stalled = in_netns(&lab.topo.host(1).ns, || {
        TcpStream::connect(&target).unwrap()
    });
    stalled.write_all(&client_hello_header(200)[..8]).unwrap();
    let served = lab.client_ok(&curl);
    assert!(served.starts_with("be"), "{served}");
    assert!(closed_by_peer(&mut stalled, b"", Duration::from_secs(10)));
    lab.proxy()
        .wait_log("timeout logged", "\"reason\":\"timeout\"");

    in_netns(&lab.topo.host(1).ns, || {
        // Plain HTTP to the TLS port.
        let mut s = TcpStream::connect(&target).unwrap();
        assert!(closed_by_peer(
            &mut s,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(10)
        ));
        // Random bytes.
        let mut s = TcpStream::connect(&target).unwrap();
        let junk: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        assert!(closed_by_peer(&mut s, &junk, Duration::from_secs(10)));
        // An oversized ClientHello: 1 MiB declared, 200 KiB actually sent.
        let mut s = TcpStream::connect(&target).unwrap();
        let mut hello = Vec::new();
        hello.extend_from_slice(&client_hello_header(1 << 20));
        hello.resize(16 * 1024 + 5, 0);
        for _ in 0..12 {
            hello.extend_from_slice(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            hello.extend(std::iter::repeat_n(0u8, 16 * 1024));
        }
        assert!(closed_by_peer(&mut s, &hello, Duration::from_secs(10)));
    });
    lab.proxy()
        .wait_log("not_tls logged", "\"reason\":\"not_tls\"");
    lab.proxy()
        .wait_log("too_large logged", "\"reason\":\"too_large\"");

    // A flood of bad handshakes: counted, but the log holds back after 10 per second
    // and says how many it held back when the next second's first failure comes.
    in_netns(&lab.topo.host(1).ns, || {
        let bad = || {
            let mut s = TcpStream::connect(&target).unwrap();
            let _ = s.write_all(b"not tls at all\r\n\r\n");
        };
        for _ in 0..80 {
            bad();
        }
        std::thread::sleep(Duration::from_millis(1100));
        bad();
    });
    lab.proxy().wait_log(
        "suppression summary",
        "more TLS handshake failures were not logged",
    );
    let logged = lab.proxy().count_log("TLS handshake failed");
    assert!(
        logged <= 40,
        "{logged} handshake failure lines for 85 failures"
    );
    assert_eq!(lab.client_ok(&curl).len(), 4, "still serving");

    // ClientHellos with an illegal SNI name make rustls itself warn, with the name the
    // client chose: those library lines share one rate limit, and the proxy reports
    // what it held back.
    let flood = format!(
        "start=$(date +%s%N); for i in $(seq 300); do \
           echo | timeout 2 openssl s_client -connect {target} -servername 'a..b' >/dev/null 2>&1; \
         done; echo $(( ($(date +%s%N) - start) / 1000000 ))"
    );
    let millis: u64 = lab.client_ok(&flood).trim().parse().unwrap();
    lab.proxy().wait_log(
        "the held-back library lines reported",
        "library log lines held back by the rate limit",
    );
    let illegal = lab.proxy().count_log("Illegal SNI hostname");
    let bound = LIBRARY_LINES_PER_SECOND as u64 * (millis / 1000 + 2);
    eprintln!("{illegal} rustls SNI lines for 300 bad ClientHellos in {millis} ms (bound {bound})");
    assert!(
        illegal >= 1,
        "rustls still says it once in a while:\n{}",
        lab.proxy().log()
    );
    assert!(
        illegal as u64 <= bound,
        "{illegal} rustls lines in {millis} ms, limit {LIBRARY_LINES_PER_SECOND}/s"
    );
    let mut proxy = lab.proxy.take().unwrap();
    assert!(proxy.proc.as_mut().unwrap().alive());
}
