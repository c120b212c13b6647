//! Daemon lifecycle with real clients and nginx: SIGTERM drains without cutting an
//! in-flight download; SIGHUP swaps certificates and backends while a long download
//! continues; a bad configuration is rejected and the old one keeps serving.

use std::time::Duration;

use lab::certs::{self, KeyType};
use lab::config::*;
use lab::site::{Lab, LabOptions, s_client_text};

/// Size of `/big`: far more than the kernel's socket buffers hold, so a download
/// cut by the proxy cannot complete from buffered data.
const BIG: usize = 32 << 20;

fn lab(backends: usize) -> Lab {
    Lab::new(LabOptions {
        backends,
        big_bytes: BIG,
        ..LabOptions::default()
    })
}

/// A download of `/big` limited to 8 MiB/s (about 4 s), in the background on the
/// client host.
fn slow_download(lab: &Lab, url: &str, extra: &str, file: &str) -> lab::Proc {
    lab.topo.host(1).ns.spawn(&format!(
        "curl -sS --fail --max-time 60 --limit-rate 8388608 {extra} -o {file} {url}"
    ))
}

/// Waits until the download has received some bytes (it is in flight).
fn wait_started(file: &str) {
    lab::wait_for("the download to start", Duration::from_secs(10), || {
        std::fs::metadata(file)
            .ok()
            .filter(|m| m.len() > 0)
            .map(|_| ())
    });
}

fn finish(download: lab::Proc, file: &str, want: &[u8]) {
    let (_, stderr, code) = download.wait_output(Duration::from_secs(60));
    assert_eq!(code, Some(0), "download failed: {stderr}");
    let got = std::fs::read(file).unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "download corrupted");
}

/// One plain listener on port 8080 to the lab's backends, with this drain deadline.
fn plain_config(lab: &Lab, drain: &str) -> String {
    Config::new()
        .with_listener(Listener::new(
            "web",
            addr(format!("{}:8080", lab.lb_ip())),
            "web",
        ))
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_timeouts(Timeouts {
            drain: dur(drain),
            ..Timeouts::default()
        })
        .to_toml()
}

#[test]
fn sigterm_drains_in_flight_downloads() {
    let mut lab = lab(1);
    lab.start_proxy(&plain_config(&lab, "30s"));
    let url = format!("http://{}:8080/big", lab.lb_ip());
    let file = lab.path("drain.out");
    let download = slow_download(&lab, &url, "", &file);
    wait_started(&file);

    lab.proxy().signal("TERM");
    lab.proxy().wait_log("drain to start", "stopped accepting");
    // New connections are refused (curl exit 7: could not connect)...
    let refused = lab.client(&format!("curl -sS --max-time 5 {url} -o /dev/null"));
    assert_eq!(refused.status.code(), Some(7), "{refused:?}");
    // ...while the download in flight completes intact.
    finish(download, &file, &lab.backends[0].big());
    let proxy = lab.proxy.take().unwrap();
    let (_, _, code) = proxy.proc.unwrap().wait_output(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let log = std::fs::read_to_string(lab.dir.path().join("proxy.log")).unwrap();
    assert!(log.contains("all connections finished; exiting"), "{log}");
}

#[test]
fn drain_deadline_cuts_what_is_left() {
    let mut lab = lab(1);
    lab.start_proxy(&plain_config(&lab, "1s"));
    let file = lab.path("cut.out");
    let download = slow_download(&lab, &format!("http://{}:8080/big", lab.lb_ip()), "", &file);
    wait_started(&file);
    lab.proxy().signal("TERM");
    let proxy = lab.proxy.take().unwrap();
    let (_, _, code) = proxy.proc.unwrap().wait_output(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let log = std::fs::read_to_string(lab.dir.path().join("proxy.log")).unwrap();
    assert!(log.contains("drain deadline reached"), "{log}");
    let (_, _, code) = download.wait_output(Duration::from_secs(30));
    assert_ne!(
        code,
        Some(0),
        "a 4 s download cannot finish within a 1 s drain"
    );
}

#[test]
fn sighup_swaps_certificates_and_backends_without_cutting() {
    let mut lab = lab(2);
    let dir = lab.dir.path().to_owned();
    let old = certs::write(&dir, "old", KeyType::EcdsaP256, "old.test", &["swap.test"]);
    let new = certs::write(&dir, "new", KeyType::Rsa2048, "new.test", &["swap.test"]);
    let bundle = lab.path("bundle.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&old.cert).unwrap() + &std::fs::read_to_string(&new.cert).unwrap(),
    )
    .unwrap();
    let lb = lab.lb_ip().to_string();
    let backend_addrs = [lab.backend_addr(0), lab.backend_addr(1)];
    let config = |cert: &certs::CertFiles, backend: usize| {
        Config::new()
            .with_listener(Listener::new("tls", addr(format!("{lb}:8443")), "web").tls(tls(cert)))
            .with_pool(Pool::new("web", addrs(&[&backend_addrs[backend]])))
            .to_toml()
    };
    let subject = |lab: &Lab| {
        s_client_text(&lab.client(&format!(
            "echo | timeout 10 openssl s_client -connect {}:8443 -servername swap.test 2>&1",
            lab.lb_ip()
        )))
    };
    let curl = format!("--cacert {bundle} --resolve swap.test:8443:{}", lab.lb_ip());
    let name = |lab: &Lab| {
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 10 {curl} https://swap.test:8443/name"
        ))
    };
    lab.start_proxy(&config(&old, 0));
    assert!(subject(&lab).contains("subject=CN = old.test"));
    assert_eq!(name(&lab), "be0\n");

    let file = lab.path("swap.out");
    let download = slow_download(&lab, "https://swap.test:8443/big", &curl, &file);
    wait_started(&file);

    // A broken config is rejected with its line; the old one keeps serving.
    let proxy = lab.proxy();
    proxy.write_config(&config(&old, 0).replacen(
        "[[listener]]\n",
        "[[listener]]\nmax_conections = 5\n", // misspelt on purpose
        1,
    ));
    proxy.signal("HUP");
    proxy.wait_log("bad config rejected", "reload rejected");
    assert!(
        proxy
            .log()
            .contains("proxy.toml:2:1: `listener[0].max_conections`: unknown field"),
        "{}",
        proxy.log()
    );
    // So is one whose certificate cannot be read.
    let mut missing = new.clone();
    missing.cert = dir.join("missing.pem");
    proxy.write_config(&config(&missing, 0));
    proxy.signal("HUP");
    lab::wait_for("second rejection", Duration::from_secs(10), || {
        (proxy.count_log("reload rejected") == 2).then_some(())
    });
    assert!(proxy.log().contains("missing.pem"), "{}", proxy.log());
    assert!(subject(&lab).contains("subject=CN = old.test"));
    assert_eq!(name(&lab), "be0\n");

    // A good one: new certificate (another key type) and another backend.
    proxy.write_config(&config(&new, 1));
    proxy.signal("HUP");
    proxy.wait_log("reload", "reload succeeded");
    let out = subject(&lab);
    assert!(out.contains("subject=CN = new.test"), "{out}");
    assert_eq!(name(&lab), "be1\n");

    // The download that started before both reloads, from the backend that was
    // removed, completes intact.
    finish(download, &file, &lab.backends[0].big());
    let mut proxy = lab.proxy.take().unwrap();
    assert!(proxy.proc.as_mut().unwrap().alive());
}
