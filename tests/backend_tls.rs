//! TLS to the backends (`[pool.tls]`) against real nginx servers that terminate TLS
//! and require client certificates (`ssl_verify_client on`): origination behind a
//! plain listener, re-encryption behind a terminating one, the PROXY header before
//! TLS, sessions resumed; a backend certificate from another CA, an expired one and a
//! name mismatch each refused with its reason, in health checks and connections
//! alike. A wrong client certificate: HAProxy (`verify required`) refuses it in the
//! handshake (reason `client_cert_refused`); nginx's http module completes the
//! handshake and refuses the request (400, and its error log says why).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use lab::certs::{self, Ca, CertFiles, KeyType};
use lab::config::*;
use lab::nginx::{Nginx, NginxOptions};
use lab::site::{Lab, LabOptions};
use proxy::api::Stats;

/// The backends' TLS ports on be0, each its own nginx.
const GOOD: u16 = 8443;
const OTHER_CA: u16 = 8444;
const EXPIRED: u16 = 8445;
const PP: u16 = 8446;
/// HAProxy terminating TLS with `verify required` on be0.
const STRICT: u16 = 8447;
const BACKEND_NAME: &str = "be.test";

struct Pki {
    backend_ca: PathBuf,
    client: CertFiles,
    foreign_client: CertFiles,
}

/// Starts the TLS nginx servers on be0; the files the proxy needs.
fn backends(lab: &Lab) -> (Vec<Nginx>, Pki) {
    let dir = lab.dir.path();
    let be0: IpAddr = lab.topo.host(2).ipv4.parse().unwrap();
    let mut backend_ca = Ca::new(dir, "backend-ca", "backend CA").unwrap();
    let mut other_ca = Ca::new(dir, "other-ca", "another CA").unwrap();
    let mut client_ca = Ca::new(dir, "client-ca", "client CA").unwrap();
    let mut foreign_ca = Ca::new(dir, "foreign-ca", "foreign client CA").unwrap();
    let good = backend_ca
        .server_for("good", &[BACKEND_NAME], &[be0], (2020, 2100))
        .unwrap();
    let foreign = other_ca
        .server_for("foreign", &[BACKEND_NAME], &[be0], (2020, 2100))
        .unwrap();
    let expired = backend_ca
        .server_for("expired", &[BACKEND_NAME], &[be0], (2010, 2015))
        .unwrap();
    let (client, _) = client_ca
        .client("proxy-client", "proxy", KeyType::EcdsaP256, (2020, 2100))
        .unwrap();
    let (foreign_client, _) = foreign_ca
        .client(
            "foreign-client",
            "intruder",
            KeyType::EcdsaP256,
            (2020, 2100),
        )
        .unwrap();
    let start = |name: &str, port, cert: &CertFiles, client_ca: Option<PathBuf>, pp| {
        Nginx::start(
            &lab.topo.host(2).ns,
            &dir.join(name),
            NginxOptions {
                name,
                port,
                proxy_protocol: pp,
                tls: Some((cert.cert.clone(), cert.key.clone())),
                client_ca,
                ..NginxOptions::default()
            },
        )
    };
    let clients = Some(client_ca.cert.clone());
    let servers = vec![
        start("good", GOOD, &good, clients.clone(), false),
        start("otherca", OTHER_CA, &foreign, None, false),
        start("expired", EXPIRED, &expired, None, false),
        start("pp", PP, &good, clients, true),
    ];
    let pki = Pki {
        backend_ca: backend_ca.cert.clone(),
        client,
        foreign_client,
    };
    strict_haproxy(lab, &good, &client_ca.cert);
    (servers, pki)
}

/// HAProxy on be0:STRICT answering `strict` over TLS to clients whose certificate
/// chains to `client_ca` (it refuses others in the handshake). Stops with the lab's
/// namespaces.
fn strict_haproxy(lab: &Lab, cert: &CertFiles, client_ca: &std::path::Path) {
    let dir = lab.dir.path();
    let pem = dir.join("strict.pem");
    let both =
        std::fs::read_to_string(&cert.cert).unwrap() + &std::fs::read_to_string(&cert.key).unwrap();
    std::fs::write(&pem, both).unwrap();
    let be0 = &lab.topo.host(2).ipv4;
    let conf = dir.join("strict.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend strict\n  bind {be0}:{STRICT} ssl crt {} ca-file {} verify required\n\
               http-request return status 200 content-type text/plain string \"strict\\n\"\n",
            pem.display(),
            client_ca.display()
        ),
    )
    .unwrap();
    let ns = &lab.topo.host(2).ns;
    std::mem::forget(ns.spawn(&format!("haproxy -db -f {}", conf.display())));
    ns.wait_listening(&[STRICT]).unwrap();
}

fn config(lab: &Lab, pki: &Pki, proxy_cert: &CertFiles) -> String {
    let lb = lab.lb_ip();
    let be0 = &lab.topo.host(2).ipv4;
    let verified = || BackendTls {
        server_name: Some(BACKEND_NAME.into()),
        cert: Some(pki.client.cert.clone()),
        key: Some(pki.client.key.clone()),
        ..BackendTls::new(&pki.backend_ca)
    };
    let foreign = || BackendTls {
        cert: Some(pki.foreign_client.cert.clone()),
        key: Some(pki.foreign_client.key.clone()),
        ..verified()
    };
    let checks = Health::every(dur("300ms"), dur("1s"), 1, 1);
    let pool = |name: &str, port: u16, tls: BackendTls| {
        Pool::new(name, [addr(format!("{be0}:{port}"))])
            .tls(tls)
            .health(checks.clone())
    };
    let listen =
        |name: &str, port: u16, pool: &str| Listener::new(name, addr(format!("{lb}:{port}")), pool);
    Config::new()
        .with_listener(listen("origination", 80, "good"))
        .with_listener(listen("reencrypt", 443, "good").tls(tls(proxy_cert)))
        .with_listener(listen("otherca", 81, "otherca"))
        .with_listener(listen("expired", 82, "expired"))
        .with_listener(listen("mismatch", 83, "mismatch"))
        .with_listener(listen("badclient", 84, "badclient"))
        .with_listener(listen("nginxbadclient", 86, "nginxbadclient"))
        .with_listener(listen("strict", 87, "strict"))
        .with_listener(listen("pp", 85, "pp"))
        .with_listener(listen("unchecked", 88, "unchecked"))
        .with_pool(pool("good", GOOD, verified()))
        .with_pool(pool("otherca", OTHER_CA, verified()))
        // No health checks: only real connections try this backend.
        .with_pool(pool("unchecked", OTHER_CA, verified()).health(Health::off()))
        .with_pool(pool("expired", EXPIRED, verified()))
        .with_pool(pool(
            "mismatch",
            GOOD,
            BackendTls {
                server_name: Some("wrong.test".into()),
                ..verified()
            },
        ))
        .with_pool(pool("strict", STRICT, verified()))
        .with_pool(pool("badclient", STRICT, foreign()))
        .with_pool(pool("nginxbadclient", GOOD, foreign()))
        .with_pool(pool("pp", PP, verified()).proxy_protocol(ProxyProtocol::V2))
        .to_toml()
}

#[test]
fn tls_to_backends_verified_both_ways_with_reasons() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let (servers, pki) = backends(&lab);
    let proxy_cert = certs::write(
        lab.dir.path(),
        "proxy",
        KeyType::EcdsaP256,
        "lb.test",
        &["lb.test"],
    );
    let config = config(&lab, &pki, &proxy_cert);
    lab.start_proxy(&config);
    let lb = lab.lb_ip().to_string();

    // Origination (plain listener) and re-encryption (terminating listener).
    for _ in 0..3 {
        assert_eq!(
            lab.client_ok(&format!("curl -sS --max-time 5 http://{lb}:80/name"))
                .trim(),
            "good"
        );
    }
    let reencrypted = lab.client_ok(&format!(
        "curl -sS --max-time 5 --cacert {} --resolve lb.test:443:{lb} https://lb.test/name",
        proxy_cert.cert.display()
    ));
    assert_eq!(reencrypted.trim(), "good");
    // Sessions to the backend are resumed (nginx logs $ssl_session_reused): the
    // health checks made the full handshakes, every request resumed.
    let log = servers[0].access_log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("GET /name")).collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert!(lines.iter().all(|l| l.ends_with("r=r")), "{log}");
    // The PROXY header before TLS: nginx (`listen ... ssl proxy_protocol`) logs the
    // client's address.
    assert_eq!(
        lab.client_ok(&format!("curl -sS --max-time 5 http://{lb}:85/name"))
            .trim(),
        "pp"
    );
    let client = lab.client_ip();
    assert!(
        servers[3].access_log().contains(&format!("pp={client} ")),
        "{}",
        servers[3].access_log()
    );

    // Each bad backend: down by its health check, refused on connections, the reason
    // in proxy stats and in /metrics.
    let expect = [
        ("otherca", 81, "unknown_ca"),
        ("expired", 82, "expired"),
        ("mismatch", 83, "name_mismatch"),
        ("badclient", 84, "client_cert_refused"),
    ];
    let stats = || -> Stats { serde_json::from_str(&lab.stats_json()).unwrap() };
    let healthy_as_expected = || {
        let s = stats();
        let want = |p: &proxy::api::PoolStats| {
            ["good", "pp", "strict", "nginxbadclient", "unchecked"].contains(&p.name.as_str())
        };
        s.pools
            .iter()
            .all(|p| p.backends.iter().all(|b| b.healthy == want(p)))
            .then_some(())
    };
    let marked = lab::try_wait_for("the checks", Duration::from_secs(10), healthy_as_expected);
    if let Err(e) = marked {
        panic!("{e:#}: {:#?}", stats().pools);
    }
    for (pool, port, reason) in expect {
        let out = lab.client(&format!("curl -sS --max-time 5 http://{lb}:{port}/name"));
        assert!(!out.status.success(), "{pool}: a request got through");
        let s = stats();
        let p = s.pools.iter().find(|p| p.name == pool).unwrap();
        let failure = p.backends[0].last_failure.clone().unwrap_or_default();
        assert!(
            failure.contains(&format!("TLS handshake failed ({reason})")),
            "{pool}: {failure}"
        );
    }
    let metrics = lab.lb().ns.sh("curl -s http://127.0.0.1:9100/metrics");
    for (pool, _, reason) in expect {
        let series = metrics
            .lines()
            .find(|l| {
                l.starts_with("proxy_backend_tls_failures_total{")
                    && l.contains(&format!("pool=\"{pool}\""))
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no {reason} series for {pool}:\n{metrics}"));
        let n: f64 = series.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{series}");
    }
    // Connections count too (a pool without checks, so only they try it): the
    // request fails, the reason is counted and kept.
    let out = lab.client(&format!("curl -sS --max-time 5 http://{lb}:88/name"));
    assert!(
        !out.status.success(),
        "a request got through a foreign certificate"
    );
    let metrics = lab.lb().ns.sh("curl -s http://127.0.0.1:9100/metrics");
    assert!(
        metrics.contains("proxy_backend_tls_failures_total{pool=\"unchecked\",backend=\"10.77.0.3:8444\",reason=\"unknown_ca\"} 1"),
        "{metrics}"
    );
    let s = stats();
    let unchecked = s.pools.iter().find(|p| p.name == "unchecked").unwrap();
    let failure = unchecked.backends[0]
        .last_failure
        .clone()
        .unwrap_or_default();
    assert!(
        failure.contains("TLS handshake failed (unknown_ca)"),
        "{failure}"
    );
    // HAProxy with our own client certificate serves.
    assert_eq!(
        lab.client_ok(&format!("curl -sS --max-time 5 http://{lb}:87/"))
            .trim(),
        "strict"
    );
    // nginx's http module completes the handshake whatever the certificate and
    // refuses the request instead: the client gets its 400, its log says why; an L4
    // proxy cannot tell (the check passes: that pool stays up, as asserted above).
    let refused = lab.client_ok(&format!("curl -sS --max-time 5 http://{lb}:86/name"));
    assert!(
        refused.contains("400") && refused.contains("SSL certificate"),
        "{refused}"
    );
    let why = servers[0].error_log();
    assert!(why.contains("client SSL certificate verify error"), "{why}");

    let text = lab.cli(&format!("stats --socket {}", lab.path("admin.sock")));
    assert!(text.contains("TLS handshake failed (unknown_ca)"), "{text}");
    let log = lab.proxy().log();
    assert!(log.contains("name_mismatch"), "{log}");
}

#[test]
fn insecure_skip_verify_is_warned_about_at_every_load() {
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let (_servers, _pki) = backends(&lab);
    let lb = lab.lb_ip().to_string();
    let be0 = lab.topo.host(2).ipv4.clone();
    let insecure = BackendTls {
        ca: None,
        insecure_skip_verify: true,
        ..BackendTls::new("/unused")
    };
    // The "otherca" server: its certificate would be refused if verified.
    let config = Config::new()
        .with_listener(Listener::new("l", addr(format!("{lb}:80")), "p"))
        .with_pool(Pool::new("p", [addr(format!("{be0}:{OTHER_CA}"))]).tls(insecure))
        .to_toml();
    lab.start_proxy(&config);
    assert_eq!(
        lab.client_ok(&format!("curl -sS --max-time 5 http://{lb}:80/name"))
            .trim(),
        "otherca"
    );
    let proxy = lab.proxy();
    proxy.signal("HUP");
    proxy.wait_log("the reload", "reload succeeded");
    assert_eq!(
        proxy.count_log("insecure_skip_verify = true"),
        2,
        "{}",
        proxy.log()
    );
}
