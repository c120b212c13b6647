//! Backends from DNS against a real DNS server (dnsmasq) in a namespace: A records
//! of a `name` backend and an SRV record's targets become backends; a record added
//! serves within the refresh; one removed drains (a download on it completes) while
//! Maglev moves only its share; with the DNS server stopped the last good set keeps
//! serving; NXDOMAIN longer than `hold_empty` empties the pool (`no_backend`
//! counted) and the records coming back fill it again.

use std::time::Duration;

use lab::certs::Ca;
use lab::config::*;
use lab::dns::{Dnsmasq, SrvRecord};
use lab::nginx::{Nginx, NginxOptions};
use lab::site::{Lab, LabOptions};
use proxy::api::{PoolStats, Stats};

const DOMAIN: &str = "internal";

fn discovery(dns: &str) -> Discovery {
    Discovery {
        resolvers: vec![addr(format!("{dns}:53"))],
        min_refresh: dur("500ms"),
        max_refresh: dur("1s"),
        hold_empty: dur("3s"),
        timeout: dur("500ms"),
        ..Discovery::default()
    }
}

fn pool_stats(lab: &Lab, name: &str) -> PoolStats {
    let stats: Stats = serde_json::from_str(&lab.stats_json()).unwrap();
    stats.pools.into_iter().find(|p| p.name == name).unwrap()
}

/// The backends serving `pool` now, by address, waiting until they are `want`.
fn wait_backends(lab: &Lab, pool: &str, want: &[String]) {
    let mut want: Vec<String> = want.to_vec();
    want.sort();
    let result = lab::try_wait_for(
        &format!("{pool}'s backends"),
        Duration::from_secs(10),
        || {
            let mut now: Vec<String> = pool_stats(lab, pool)
                .backends
                .iter()
                .map(|b| b.address.to_string())
                .collect();
            now.sort();
            (now == want).then_some(())
        },
    );
    if let Err(e) = result {
        panic!("{e:#}: {:#?}\n{}", pool_stats(lab, pool), lab.proxy().log());
    }
}

/// Which backend names answer `GET /name` from each of the client's addresses.
fn served(lab: &Lab, port: u16, sources: &[String]) -> Vec<String> {
    let lb = lab.lb_ip();
    let mut names: Vec<String> = sources
        .iter()
        .map(|ip| {
            let out = lab.client(&format!(
                "curl -sS --max-time 3 --interface {ip} http://{lb}:{port}/name"
            ));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn dns_backends_follow_their_records() {
    let mut lab = Lab::new(LabOptions {
        backends: 3,
        attackers: 1,
        big_bytes: 8 << 20,
        ..LabOptions::default()
    });
    let dns_ip = lab.attacker(0).ipv4.clone();
    let be = |i: usize| lab.topo.host(2 + i).ipv4.clone();
    let (be0, be1, be2) = (be(0), be(1), be(2));
    let api = format!("api.{DOMAIN}");
    let srv_name = format!("_web._tcp.{DOMAIN}");
    let (t1, t2) = (format!("t1.{DOMAIN}"), format!("t2.{DOMAIN}"));
    let srv = [
        SrvRecord {
            name: &srv_name,
            target: &t1,
            port: 8080,
            weight: 10,
        },
        SrvRecord {
            name: &srv_name,
            target: &t2,
            port: 8080,
            weight: 10,
        },
    ];
    // TLS backends found in DNS: nginx on be2 with a certificate for `secure` only
    // (no IP address in it); `alias` names the same address.
    let (secure, alias) = (format!("secure.{DOMAIN}"), format!("alias.{DOMAIN}"));
    let pki = lab.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let mut ca = Ca::new(&pki, "ca", "backend CA").unwrap();
    let cert = ca
        .server_for("secure", &[&secure], &[], (2020, 2100))
        .unwrap();
    let _tls_backend = Nginx::start(
        &lab.topo.host(4).ns,
        &lab.dir.path().join("secure"),
        NginxOptions {
            name: "secure",
            port: 8443,
            tls: Some((cert.cert.clone(), cert.key.clone())),
            ..NginxOptions::default()
        },
    );
    let mut dns = Dnsmasq::start(
        &lab.attacker(0).ns,
        &lab.dir.path().join("dns"),
        &dns_ip,
        DOMAIN,
        1,
        &[
            (&be0, &api),
            (&be1, &t1),
            (&be2, &t2),
            (&be2, &secure),
            (&be2, &alias),
        ],
        &srv,
    )
    .unwrap();
    // The client speaks from 8 addresses (Maglev spreads by client address).
    let sources: Vec<String> = (20..28).map(|i| format!("10.77.0.{i}")).collect();
    for ip in &sources {
        lab.client_ok(&format!("ip addr add {ip}/24 dev eth0"));
    }
    let lb = lab.lb_ip().to_string();
    let named = Pool {
        discovery: Some(discovery(&dns_ip)),
        ..Pool::new("named", Vec::new()).health(Health::off())
    };
    let named = Pool {
        backends: vec![BackendEntry::named(&format!("{api}:8080"))],
        ..named
    };
    let srv_pool = Pool {
        backends: Vec::new(),
        discovery: Some(Discovery {
            srv: Some(srv_name.clone()),
            ..discovery(&dns_ip)
        }),
        ..Pool::new("srv", Vec::new()).health(Health::off())
    };
    // Backend TLS without server_name: the name each backend was found under is
    // sent and verified.
    let tls_pool = |name: &str, host: &str| Pool {
        backends: vec![BackendEntry::named(&format!("{host}:8443"))],
        discovery: Some(discovery(&dns_ip)),
        tls: Some(BackendTls::new(&ca.cert)),
        ..Pool::new(name, Vec::new()).health(Health::off())
    };
    let config = Config::new()
        .with_listener(Listener::new("named", addr(format!("{lb}:80")), "named"))
        .with_listener(Listener::new("srv", addr(format!("{lb}:81")), "srv"))
        .with_listener(Listener::new("secure", addr(format!("{lb}:82")), "secure"))
        .with_listener(Listener::new("alias", addr(format!("{lb}:83")), "alias"))
        .with_pool(named)
        .with_pool(srv_pool)
        .with_pool(tls_pool("secure", &secure))
        .with_pool(tls_pool("alias", &alias))
        .to_toml();
    lab.start_proxy(&config);
    let port = |p: &str| format!("{p}:8080");
    wait_backends(&lab, "named", &[port(&be0)]);
    wait_backends(&lab, "srv", &[port(&be1), port(&be2)]);
    assert_eq!(served(&lab, 80, &sources), ["be0"]);
    assert_eq!(
        served(&lab, 81, &sources),
        ["be1", "be2"],
        "SRV targets both serve"
    );
    wait_backends(&lab, "secure", &[format!("{be2}:8443")]);
    wait_backends(&lab, "alias", &[format!("{be2}:8443")]);
    assert_eq!(
        served(&lab, 82, &sources[..2]),
        ["secure"],
        "TLS to the name the backend was found under"
    );
    assert_eq!(
        served(&lab, 83, &sources[..2]),
        [""],
        "a certificate for another name is refused"
    );
    let metrics = lab.lb().ns.sh("curl -s http://127.0.0.1:9100/metrics");
    let refused = format!(
        "proxy_backend_tls_failures_total{{pool=\"alias\",backend=\"{be2}:8443\",reason=\"name_mismatch\"}}"
    );
    assert!(metrics.contains(&refused), "{refused} in:\n{metrics}");
    let status = pool_stats(&lab, "srv");
    assert_eq!(status.discovery[0].source, format!("SRV {srv_name}"));
    assert_eq!(status.discovery[0].state, "ok");
    assert_eq!(status.backends[0].origin, format!("dns SRV {srv_name}"));

    // A record added: serves within the refresh.
    dns.set_hosts(&[(&be0, &api), (&be1, &api), (&be1, &t1), (&be2, &t2)])
        .unwrap();
    dns.reload();
    wait_backends(&lab, "named", &[port(&be0), port(&be1)]);
    assert_eq!(served(&lab, 80, &sources), ["be0", "be1"]);

    // A record removed during a download from it: the download completes, no new
    // connection reaches it, Maglev moved its share only.
    let big = lab.path("big");
    let from_be0 = sources
        .iter()
        .find(|ip| {
            let out = lab.client(&format!(
                "curl -s --max-time 3 --interface {ip} http://{lb}:80/name"
            ));
            String::from_utf8_lossy(&out.stdout).trim() == "be0"
        })
        .expect("a client address on be0")
        .clone();
    let download = lab.topo.host(1).ns.spawn(&format!(
        "curl -sS --limit-rate 2M --interface {from_be0} -o {big} http://{lb}:80/big"
    ));
    std::thread::sleep(Duration::from_millis(500));
    dns.set_hosts(&[(&be1, &api), (&be1, &t1), (&be2, &t2)])
        .unwrap();
    dns.reload();
    wait_backends(&lab, "named", &[port(&be1)]);
    assert_eq!(served(&lab, 80, &sources), ["be1"]);
    let (_, _, code) = download.wait_output(Duration::from_secs(20));
    assert_eq!(
        code,
        Some(0),
        "the download from the removed backend completed"
    );
    assert_eq!(
        std::fs::read(&big).unwrap(),
        lab.backends[0].big(),
        "intact"
    );
    let log = lab.proxy().log();
    let change = log
        .lines()
        .rfind(|l| l.contains("backends from DNS changed") && l.contains("\"named\""))
        .unwrap_or_else(|| panic!("{log}"));
    // Two backends to one: the removed one's half of the table moved, no more.
    let moved: f64 = change
        .split("\"maglev_moved\":\"")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{change}"));
    assert!((40.0..=60.0).contains(&moved), "{moved} % moved: {change}");

    // The DNS server stops: the last good set keeps serving, the state says why.
    dns.stop();
    lab::wait_for("the lookups to fail", Duration::from_secs(10), || {
        (pool_stats(&lab, "named").discovery[0].state == "failing").then_some(())
    });
    assert_eq!(served(&lab, 80, &sources), ["be1"]);
    assert_eq!(served(&lab, 81, &sources), ["be1", "be2"]);

    // Back, with every name gone (NXDOMAIN): the pool empties only after
    // hold_empty, then refuses clients with no_backend.
    dns.set_hosts(&[]).unwrap();
    dns.restart(&lab.attacker(0).ns, DOMAIN, 1, &[]).unwrap();
    lab::wait_for("the empty answer", Duration::from_secs(10), || {
        (pool_stats(&lab, "named").discovery[0].state == "empty_held").then_some(())
    });
    assert_eq!(served(&lab, 80, &sources), ["be1"], "held");
    wait_backends(&lab, "named", &[]);
    wait_backends(&lab, "srv", &[]);
    assert_eq!(served(&lab, 80, &sources), [""], "no backend");
    let stats: Stats = serde_json::from_str(&lab.stats_json()).unwrap();
    let named = stats.listeners.iter().find(|l| l.name == "named").unwrap();
    assert!(named.no_backend >= 8, "{named:?}");

    // The records come back: filled again.
    dns.set_hosts(&[(&be2, &api), (&be1, &t1), (&be2, &t2)])
        .unwrap();
    dns.restart(&lab.attacker(0).ns, DOMAIN, 1, &srv).unwrap();
    wait_backends(&lab, "named", &[port(&be2)]);
    wait_backends(&lab, "srv", &[port(&be1), port(&be2)]);
    assert_eq!(served(&lab, 80, &sources), ["be2"]);
    let metrics = lab.lb().ns.sh("curl -s http://127.0.0.1:9100/metrics");
    for series in [
        "proxy_dns_resolutions_total{pool=\"named\",result=\"ok\"}",
        "proxy_dns_resolutions_total{pool=\"named\",result=\"failed\"}",
        "proxy_dns_resolutions_total{pool=\"named\",result=\"empty\"}",
        "proxy_pool_backends{pool=\"srv\",origin=\"dns\"} 2",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
}
