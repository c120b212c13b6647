//! `cargo xtask bench upgrade`: binary upgrades under a loop of new plain TCP
//! connections (one at a time, from the client namespace), next to a plain restart.
//! Release build, a TLS and a TCP listener, XDP on the proxy's interface.
//!
//! - take-over (`proxy upgrade`): hand-over time = from the command's start to the
//!   old process no longer accepting (its confirmation of the commit); failed
//!   connections in the window.
//! - restart (what `systemctl restart` does): SIGTERM, wait for the exit, start the
//!   binary again; time until it accepts again; failed connections.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lab::config::*;
use lab::process::exited;
use lab::site::{Lab, LabOptions};
use lab::stats::{median, min_max};

use crate::binaries::proxy_and_generator;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rounds of each kind.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    lab::ensure_root()?;
    let (proxy_bin, _) = proxy_and_generator()?;
    let bin = proxy_bin.display().to_string();
    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let pins = lab::PinDir::new("bench-upgrade");
    let cert = lab.cert("lb.test");
    let config = Config::new()
        .with_listener(
            Listener::new("tls", addr(format!("{}:443", lab.lb_ip())), "p").tls(tls(&cert)),
        )
        .with_listener(Listener::new(
            "tcp",
            addr(format!("{}:80", lab.lb_ip())),
            "p",
        ))
        .with_pool(Pool::new("p", addrs(&lab.backend_addrs())))
        .with_xdp(XdpSection::on(&["eth0"], &pins.0))
        .to_toml();
    lab.proxy = Some(lab::proxyd::ProxyD::try_start_bin(
        &bin,
        &lab.lb().ns,
        lab.dir.path(),
        &config,
    )?);
    let config_path = lab.proxy().config.display().to_string();
    let target: SocketAddr = format!("{}:80", lab.lb_ip()).parse()?;

    let results: Mutex<Vec<(Instant, bool)>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let mut takeover: Vec<(f64, f64)> = Vec::new();
    let mut restart: Vec<(f64, f64)> = Vec::new();
    let mut pid = lab.proxy().proc.as_ref().map_or(0, |p| p.pid());
    std::thread::scope(|s| -> anyhow::Result<()> {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let ok = lab.plain_get(target);
                results.lock().expect("results").push((Instant::now(), ok));
                if !ok {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        let result = (|| -> anyhow::Result<()> {
            std::thread::sleep(Duration::from_secs(1));
            for round in 0..args.rounds {
                // Take-over.
                let t0 = Instant::now();
                let out = lab
                    .lb()
                    .ns
                    .exec(&format!("{bin} upgrade --config {config_path}"))?;
                let handed = t0.elapsed();
                let line = out
                    .lines()
                    .find(|l| l.starts_with("upgraded:"))
                    .ok_or_else(|| anyhow::anyhow!("no upgrade: {out}"))?;
                let old = pid;
                pid = line.split_whitespace().nth(2).unwrap_or("0").parse()?;
                std::thread::sleep(Duration::from_millis(500));
                let failed = failed_since(&results, t0);
                takeover.push((handed.as_secs_f64() * 1000.0, failed));
                lab::try_wait_for("the old process to exit", Duration::from_secs(40), || {
                    exited(old).then_some(())
                })?;
                // Restart.
                let t1 = Instant::now();
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
                lab::try_wait_for("the daemon to exit", Duration::from_secs(40), || {
                    exited(pid).then_some(())
                })?;
                let log = lab.path(&format!("restart{round}.log"));
                let p = lab.lb().ns.start(&format!(
                    "{bin} --log-format json run --config {config_path} 2>{log}"
                ))?;
                lab::try_wait_for("the restarted daemon", Duration::from_secs(20), || {
                    std::fs::read_to_string(&log)
                        .ok()?
                        .contains("running; SIGHUP reloads")
                        .then_some(())
                })?;
                let back = t1.elapsed();
                pid = p.pid();
                std::mem::forget(p); // stopped by the next round's restart or the lab
                std::thread::sleep(Duration::from_millis(500));
                restart.push((back.as_secs_f64() * 1000.0, failed_since(&results, t1)));
                eprintln!(
                    "round {}: take-over {:.0} ms, {} failed; restart {:.0} ms, {} failed",
                    round + 1,
                    takeover[round].0,
                    takeover[round].1,
                    restart[round].0,
                    restart[round].1
                );
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(())
        })();
        done.store(true, Ordering::Relaxed);
        result
    })?;
    let total = results.lock().expect("results").len();
    println!(
        "\n{} rounds; a loop of new plain TCP connections (one at a time, {total} in all); release build; TLS + TCP listeners, XDP attached\n",
        args.rounds
    );
    println!("| | hand-over / back in service | failed connections |");
    println!("|---|---|---|");
    for (name, rows) in [
        ("take-over (`proxy upgrade`)", &takeover),
        ("restart (SIGTERM, exit, start)", &restart),
    ] {
        let times: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let fails: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let (tl, th) = min_max(&times);
        let (fl, fh) = min_max(&fails);
        println!(
            "| {name} | {:.0} ms ({tl:.0}-{th:.0}) | {:.0} ({fl:.0}-{fh:.0}) |",
            median(&times),
            median(&fails)
        );
    }
    Ok(())
}

fn failed_since(results: &Mutex<Vec<(Instant, bool)>>, from: Instant) -> f64 {
    results
        .lock()
        .expect("results")
        .iter()
        .filter(|(t, ok)| *t >= from && !ok)
        .count() as f64
}
