//! Balancing algorithms and backends under the operator's hand, with real nginx
//! backends: least connections and power of two choices even out long-lived
//! connections, round robin visits backends in the exact smooth weighted order,
//! `proxy backend set` drains, holds in maintenance (and closes), reweights; runtime
//! state survives SIGHUP and `proxy upgrade`; slow start ramps a fresh backend.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use lab::config::*;
use lab::inside::in_netns;
use lab::site::{Lab, LabOptions};
use proxy::api::{BackendState, PoolStats, SettingOrigin};

fn cli(lab: &Lab, args: &str) -> String {
    lab.cli(&format!("{args} --socket {}", lab.path("admin.sock")))
}

fn pools(lab: &Lab) -> Vec<PoolStats> {
    serde_json::from_str(&cli(lab, "backend list --json")).unwrap()
}

fn pool(lab: &Lab, name: &str) -> PoolStats {
    pools(lab)
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pool {name}"))
}

/// `proxy backend set POOL <backend i> WHAT`; its answer.
fn set(lab: &Lab, pool: &str, i: usize, what: &str) -> String {
    cli(
        lab,
        &format!("backend set {pool} {} {what}", lab.backend_addr(i)),
    )
}

/// Active connections per backend of `pool`, in the lab's backend order.
fn active(lab: &Lab, name: &str) -> Vec<i64> {
    let p = pool(lab, name);
    (0..lab.backends.len())
        .map(|i| {
            let addr: SocketAddr = lab.backend_addr(i).parse().unwrap();
            p.backends
                .iter()
                .find(|b| b.address == addr)
                .map_or(0, |b| b.active_connections)
        })
        .collect()
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body); the body.
fn read_response(s: &mut TcpStream) -> std::io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned());
            }
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

const GET_NAME: &[u8] = b"GET /name HTTP/1.1\r\nHost: lab\r\n\r\n";

/// Opens `n` keep-alive connections to `target` from the client host, one right
/// after the other (the proxy places them while the earlier ones still connect),
/// then asks each which backend it reached: (connection, backend name).
fn wave(lab: &Lab, target: SocketAddr, n: usize) -> Vec<(TcpStream, String)> {
    in_netns(&lab.topo.host(1).ns, || {
        let mut conns: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap())
            .collect();
        for c in &mut conns {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(GET_NAME).unwrap();
        }
        conns
            .into_iter()
            .map(|mut c| {
                let name = read_response(&mut c).unwrap().trim().to_owned();
                (c, name)
            })
            .collect()
    })
}

/// One request on a new connection (HTTP/1.0): the name of the backend that answered.
fn get_name(lab: &Lab, target: SocketAddr) -> String {
    in_netns(&lab.topo.host(1).ns, || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /name HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer.rsplit("\r\n\r\n").next().unwrap().trim().to_owned()
    })
}

/// Lines in backend `i`'s access log.
fn requests(lab: &Lab, i: usize) -> usize {
    lab.backends[i].access_log().lines().count()
}

fn target(lab: &Lab, port: u16) -> SocketAddr {
    format!("{}:{port}", lab.lb_ip()).parse().unwrap()
}

/// Opens 100 long sessions on be0 alone (the others held in maintenance), then 300
/// more in waves of 50 with all three ready; the three backends' open connections.
fn hundred_then_three_hundred(lab: &Lab, pool: &str, port: u16) -> (Vec<i64>, Vec<usize>) {
    for i in [1, 2] {
        set(lab, pool, i, "state maint");
    }
    let mut held = wave(lab, target(lab, port), 100);
    assert!(
        held.iter().all(|(_, n)| n == "be0"),
        "maint backends got sessions"
    );
    for i in [1, 2] {
        set(lab, pool, i, "state ready");
    }
    for _ in 0..6 {
        held.extend(wave(lab, target(lab, port), 50));
    }
    let by_client: Vec<usize> = (0..3)
        .map(|i| held.iter().filter(|(_, n)| *n == format!("be{i}")).count())
        .collect();
    let counts = lab::wait_for("all 400 sessions counted", Duration::from_secs(10), || {
        let a = active(lab, pool);
        (a.iter().sum::<i64>() == 400).then_some(a)
    });
    drop(held);
    (counts, by_client)
}

#[test]
fn least_connections_random_two_and_round_robin() {
    lab::process::raise_fd_limit();
    let mut lab = Lab::new(LabOptions {
        backends: 3,
        ..LabOptions::default()
    });
    let lb = lab.lb_ip().to_string();
    let backends = addrs(&lab.backend_addrs());
    let config = Config::new()
        .with_listener(Listener::new("lc", addr(format!("{lb}:8080")), "lc"))
        .with_listener(Listener::new("r2", addr(format!("{lb}:8081")), "r2"))
        .with_listener(Listener::new("rr", addr(format!("{lb}:8082")), "rr"))
        .with_pool(Pool::new("lc", backends.clone()).balance(Balance::LeastConnections))
        .with_pool(Pool::new("r2", backends.clone()).balance(Balance::RandomTwo))
        .with_pool(
            Pool::new("rr", backends)
                .balance(Balance::RoundRobin)
                .weight(0, 5),
        )
        .to_toml();
    lab.start_proxy(&config);

    // Round robin, weights 5, 1, 1: NGINX's smooth order, twice over.
    let order: Vec<String> = (0..14)
        .map(|_| get_name(&lab, target(&lab, 8082)))
        .collect();
    let expected = "be0 be0 be1 be0 be2 be0 be0 be0 be0 be1 be0 be2 be0 be0";
    assert_eq!(order.join(" "), expected);

    // Least connections: 400 sessions end within ±10 % of 133 each (be0 took only
    // a third of the new ones: it held 100 already).
    let (counts, by_client) = hundred_then_three_hundred(&lab, "lc", 8080);
    eprintln!("least_connections: proxy counts {counts:?}, clients saw {by_client:?}");
    let equal = 400.0 / 3.0;
    for &c in &counts {
        assert!(
            (c as f64 - equal).abs() <= equal * 0.10,
            "least_connections: {counts:?}"
        );
    }
    assert_eq!(
        counts,
        by_client.iter().map(|&c| c as i64).collect::<Vec<_>>()
    );

    // Power of two choices: within ±20 %.
    let (counts, by_client) = hundred_then_three_hundred(&lab, "r2", 8081);
    eprintln!("random_two: proxy counts {counts:?}, clients saw {by_client:?}");
    for &c in &counts {
        assert!(
            (c as f64 - equal).abs() <= equal * 0.20,
            "random_two: {counts:?}"
        );
    }
    assert_eq!(
        counts,
        by_client.iter().map(|&c| c as i64).collect::<Vec<_>>()
    );
    let after = pools(&lab);
    assert!(after.iter().any(|p| p.balance == Balance::RandomTwo));
}

#[test]
fn drain_maint_close_and_weight_at_runtime() {
    const BIG: usize = 20 << 20;
    lab::process::raise_fd_limit();
    let mut lab = Lab::new(LabOptions {
        backends: 3,
        big_bytes: BIG,
        ..LabOptions::default()
    });
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(Listener::new("web", addr(format!("{lb}:8080")), "web"))
        .with_pool(
            Pool::new("web", addrs(&lab.backend_addrs()))
                .hash_key(HashKey::ClientIpPort)
                .health(Health::every(dur("300ms"), dur("200ms"), 1, 2)),
        )
        .to_toml();
    lab.start_proxy(&config);
    let web = target(&lab, 8080);
    let names =
        |lab: &Lab, n: usize| -> Vec<String> { (0..n).map(|_| get_name(lab, web)).collect() };

    // Drain the backend a 20 MiB download runs on: it completes, nothing new arrives.
    let file = lab.path("big");
    // Log lines per backend before the download starts: the socket buffers between
    // nginx and a slow reader hold megabytes, so nginx may finish (and log) the
    // download long before the client has read it.
    let before_download: Vec<usize> = (0..lab.backends.len()).map(|i| requests(&lab, i)).collect();
    std::thread::scope(|s| {
        let download = s.spawn(|| {
            lab.client(&format!(
                "curl -sS --fail --max-time 60 --limit-rate 2M -o {file} http://{web}/big"
            ))
        });
        let x = lab::wait_for("the download's backend", Duration::from_secs(10), || {
            active(&lab, "web").iter().position(|&a| a == 1)
        });
        let before = before_download[x];
        let answer = set(&lab, "web", x, "state drain");
        assert!(answer.contains("state drain (runtime)"), "{answer}");
        assert!(
            answer.contains("its 1 open connections continue"),
            "{answer}"
        );
        assert!(answer.contains("Maglev table rebuilt"), "{answer}");
        let served = names(&lab, 40);
        assert!(
            !served.contains(&format!("be{x}")),
            "a drained backend got new connections: {served:?}"
        );
        let log = lab.backends[x].access_log();
        let new: Vec<&str> = log.lines().skip(before).collect();
        assert!(
            !new.iter().any(|l| l.contains("/name")),
            "new requests reached be{x}: {new:?}"
        );
        // The download (10 s at 2 MiB/s) has not finished yet.
        assert_eq!(active(&lab, "web")[x], 1, "the download ended early");
        let out = download.join().unwrap();
        assert!(out.status.success(), "{out:?}\n{}", lab.proxy().log());
        assert!(
            std::fs::read(&file).unwrap() == lab.backends[x].big(),
            "the download is not intact"
        );
        // Its one new line is the download (nginx may log it just after the client
        // has read the last byte).
        lab::wait_for("the download's log line", Duration::from_secs(5), || {
            (requests(&lab, x) > before).then_some(())
        });
        std::thread::sleep(Duration::from_millis(200));
        let log = lab.backends[x].access_log();
        let new: Vec<&str> = log.lines().skip(before).collect();
        assert_eq!(new.len(), 1, "{new:?}");
        assert!(
            new[0].contains("\"GET /big HTTP/1.1\" 200 20971520"),
            "{new:?}"
        );
        let line = lab
            .proxy()
            .log()
            .lines()
            .find(|l| l.contains("backend changed at runtime"))
            .unwrap()
            .to_owned();
        assert!(
            line.contains("\"uid\":0") && line.contains("\"pid\":"),
            "{line}"
        );
        assert!(line.contains("\"moved_percent\""), "{line}");

        // Ready: it takes new connections again.
        set(&lab, "web", x, "state ready");
        let served = names(&lab, 60);
        assert!(
            served.iter().filter(|n| **n == format!("be{x}")).count() >= 5,
            "{served:?}"
        );
    });

    // maint --close: only its connections are closed; the others go on.
    let mut held = wave(&lab, web, 30);
    let x = 1;
    let on_x = held.iter().filter(|(_, n)| n == "be1").count();
    assert!(
        on_x > 0 && on_x < 30,
        "spread over the backends: {on_x} on be1"
    );
    lab::wait_for(
        "only the 30 held connections open",
        Duration::from_secs(5),
        || (active(&lab, "web").iter().sum::<i64>() == 30).then_some(()),
    );
    let answer = set(&lab, "web", x, "state maint --close");
    assert!(
        answer.contains(&format!("{on_x} open connections closed")),
        "{answer}"
    );
    in_netns(&lab.topo.host(1).ns, || {
        for (c, name) in &mut held {
            let again = c.write_all(GET_NAME).and_then(|()| read_response(c));
            match name.as_str() {
                "be1" => assert!(again.is_err(), "a be1 connection still works: {again:?}"),
                _ => assert_eq!(again.unwrap().trim(), name.as_str()),
            }
        }
    });
    drop(held);
    lab::wait_for("be1's connections gone", Duration::from_secs(5), || {
        (active(&lab, "web")[x] == 0).then_some(())
    });
    // No health checks in maintenance: a stopped be1 stays "up" ...
    lab.backends[x].kill(&lab.topo.host(2 + x).ns);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        pool(&lab, "web").backends[x].healthy,
        "checked in maintenance"
    );
    // ... until it is ready again and the checks find it down.
    set(&lab, "web", x, "state ready");
    lab::wait_for("be1 marked down", Duration::from_secs(5), || {
        (!pool(&lab, "web").backends[x].healthy).then_some(())
    });
    lab.backends[x].restart(&lab.topo.host(2 + x).ns);
    lab::wait_for("be1 back up", Duration::from_secs(5), || {
        pool(&lab, "web").backends[x].healthy.then_some(())
    });

    // Weight 0, then 2: its share goes from none to about half (2 of 1 + 1 + 2).
    set(&lab, "web", 2, "weight 0");
    assert!(!names(&lab, 60).contains(&"be2".to_string()));
    let answer = set(&lab, "web", 2, "weight 2");
    assert!(answer.contains("weight 2 (runtime)"), "{answer}");
    let served = names(&lab, 200);
    let share = served.iter().filter(|n| *n == "be2").count() as f64 / 200.0;
    eprintln!("weight 2 of 1+1+2: be2 served {share:.2} of new connections");
    assert!((0.35..=0.65).contains(&share), "{share}");
    // The file's weight returns it to the file.
    let answer = set(&lab, "web", 2, "weight 1");
    assert!(answer.contains("weight 1 (config)"), "{answer}");
}

#[test]
fn runtime_state_survives_sighup_and_upgrade() {
    let mut lab = Lab::new(LabOptions {
        backends: 3,
        ..LabOptions::default()
    });
    let lb = lab.lb_ip().to_string();
    let all = addrs(&lab.backend_addrs());
    let config = |with_be0: bool| {
        let backends = all.iter().copied().skip(usize::from(!with_be0));
        Config::new()
            .with_listener(Listener::new("web", addr(format!("{lb}:8080")), "web"))
            .with_pool(Pool::new("web", backends).balance(Balance::LeastConnections))
            .to_toml()
    };
    lab.start_proxy(&config(true));
    let web = target(&lab, 8080);
    let (be0, be1): (SocketAddr, SocketAddr) = (
        lab.backend_addr(0).parse().unwrap(),
        lab.backend_addr(1).parse().unwrap(),
    );
    set(&lab, "web", 0, "state drain");
    set(&lab, "web", 1, "weight 3");
    let check = |lab: &Lab, state: BackendState| {
        let p = pool(lab, "web");
        let b0 = p.backends.iter().find(|b| b.address == be0).unwrap();
        let b1 = p.backends.iter().find(|b| b.address == be1).unwrap();
        assert_eq!((b0.state, b0.state_origin), (state, SettingOrigin::Runtime));
        assert!(b0.changed.as_ref().unwrap().by.starts_with("uid 0 pid "));
        assert_eq!((b1.weight, b1.weight_origin), (3, SettingOrigin::Runtime));
        for _ in 0..20 {
            assert_ne!(get_name(lab, web), "be0");
        }
    };
    check(&lab, BackendState::Drain);
    let metrics = lab.lb().ns.sh("curl -sS http://127.0.0.1:9100/metrics");
    for line in [
        format!(
            "proxy_backend_state{{pool=\"web\",backend=\"{be0}\",state=\"drain\",origin=\"runtime\"}} 1"
        ),
        format!(
            "proxy_backend_state{{pool=\"web\",backend=\"{be0}\",state=\"ready\",origin=\"runtime\"}} 0"
        ),
        format!("proxy_backend_weight{{pool=\"web\",backend=\"{be1}\",origin=\"runtime\"}} 3"),
    ] {
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    let stats = lab.cli(&format!("stats --socket {}", lab.path("admin.sock")));
    assert!(stats.contains("balance least_connections"), "{stats}");
    assert!(stats.contains("drain*"), "{stats}");

    // SIGHUP with the same file: kept.
    let reloads = |lab: &Lab| lab.proxy().count_log("reload succeeded");
    lab.proxy().signal("HUP");
    lab::wait_for("the reload", Duration::from_secs(10), || {
        (reloads(&lab) == 1).then_some(())
    });
    check(&lab, BackendState::Drain);

    // be0 leaves the file: its runtime state goes, logged; back in the file, it is
    // a fresh backend.
    lab.proxy().write_config(&config(false));
    lab.proxy().signal("HUP");
    lab::wait_for("the reload", Duration::from_secs(10), || {
        (reloads(&lab) == 2).then_some(())
    });
    let dropped = lab
        .proxy()
        .log()
        .lines()
        .find(|l| l.contains("its runtime state is dropped"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{}", lab.proxy().log()));
    assert!(
        dropped.contains(&be0.to_string()) && dropped.contains("drain"),
        "{dropped}"
    );
    assert!(pool(&lab, "web").backends.iter().all(|b| b.address != be0));
    lab.proxy().write_config(&config(true));
    lab.proxy().signal("HUP");
    lab::wait_for("the reload", Duration::from_secs(10), || {
        (reloads(&lab) == 3).then_some(())
    });
    let p = pool(&lab, "web");
    let b0 = p.backends.iter().find(|b| b.address == be0).unwrap();
    assert_eq!(
        (b0.state, b0.state_origin),
        (BackendState::Ready, SettingOrigin::Config)
    );
    set(&lab, "web", 0, "state maint");

    // An upgrade hands the runtime state to the new process.
    let config_path = lab.proxy().config.display().to_string();
    let old_pid = lab.proxy().proc.as_ref().unwrap().pid();
    // The new process's lines before it serves go to `proxy upgrade`'s stderr.
    let upgrade = lab
        .lb()
        .ns
        .run(&format!(
            "{} upgrade --config {config_path}",
            lab::proxyd::proxy_bin()
        ))
        .unwrap();
    let (out, early) = (
        String::from_utf8_lossy(&upgrade.stdout).into_owned(),
        String::from_utf8_lossy(&upgrade.stderr).into_owned(),
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("upgraded:"))
        .unwrap_or_else(|| panic!("{out}"));
    let new_pid: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .arg(self.0.to_string())
                .status();
            let _ = lab::try_wait_for("the new daemon to exit", Duration::from_secs(20), || {
                lab::process::exited(self.0).then_some(())
            });
        }
    }
    let _stop = Stop(new_pid);
    lab::wait_for("the old process to exit", Duration::from_secs(40), || {
        lab::process::exited(old_pid).then_some(())
    });
    check(&lab, BackendState::Maint);
    let taken = early
        .lines()
        .filter(|l| l.contains("runtime backend state taken over"))
        .count();
    assert_eq!(taken, 2, "be0's state and be1's weight:\n{early}");
}

#[test]
fn slow_start_ramps_a_fresh_backend() {
    let mut lab = Lab::new(LabOptions {
        backends: 3,
        ..LabOptions::default()
    });
    let lb = lab.lb_ip().to_string();
    let ramp = Duration::from_secs(8);
    let config = Config::new()
        .with_listener(Listener::new("web", addr(format!("{lb}:8080")), "web"))
        .with_pool(
            Pool::new("web", addrs(&lab.backend_addrs()))
                .balance(Balance::LeastConnections)
                .slow_start(ramp),
        )
        .to_toml();
    lab.start_proxy(&config);
    let web = target(&lab, 8080);
    set(&lab, "web", 2, "state maint");
    let base = requests(&lab, 2);
    set(&lab, "web", 2, "state ready");
    let started = Instant::now();
    // New connections one after the other (~100/s) for the ramp and 3 s more; each
    // second, how many of that second's requests be2 served (its access log) and
    // how many were made.
    let mut per_second: Vec<(usize, usize)> = Vec::new();
    let mut ramp_shown = None;
    let (mut seen, mut made) = (base, 0);
    while started.elapsed() < ramp + Duration::from_secs(3) {
        let second_ends = started + Duration::from_secs(per_second.len() as u64 + 1);
        while Instant::now() < second_ends {
            get_name(&lab, web);
            made += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        if ramp_shown.is_none() && per_second.len() == 3 {
            ramp_shown = pool(&lab, "web").backends[2].slow_start_percent;
        }
        let now = requests(&lab, 2);
        per_second.push((now - seen, made));
        (seen, made) = (now, 0);
    }
    let shares: Vec<f64> = per_second
        .iter()
        .map(|&(be2, all)| be2 as f64 / all.max(1) as f64)
        .collect();
    eprintln!("be2's share of new connections per second after `ready`: {shares:.2?}");
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    // Expected (weight shares 10 % → 100 % over 8 s, two others at full weight):
    // about 0.07 in seconds 0-1, 0.22 in 3-5, 0.33 from 8 on.
    let (first, middle, after) = (mean(&shares[..2]), mean(&shares[3..6]), mean(&shares[8..]));
    // Full weight would give it a third from the first second.
    assert!(first < 0.15, "{shares:.2?}");
    assert!(first < middle && middle < after, "{shares:.2?}");
    assert!(after > 0.25, "{shares:.2?}");
    let percent = ramp_shown.expect("the ramp shown while it runs");
    assert!((20..80).contains(&percent), "{percent}");
    assert_eq!(pool(&lab, "web").backends[2].slow_start_percent, None);
}
