//! The live status page in a real browser (Debian's headless Chromium): loaded while
//! traffic and a bounded flood run in the lab, its numbers must equal
//! `proxy stats --json`, its drop chart must move, a source blocked with the CLI
//! must appear (its reason escaped, never markup), and a screenshot is kept in the
//! test's output. Needs root.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lab::config::*;
use lab::inside::spawn_in_netns;
use lab::site::{Lab, LabOptions};
use proxy::api::Stats;

const FLOOD_PORT: u16 = 9000;

/// The page after `budget_ms` of (virtual) time in headless Chromium, run inside the
/// load balancer's namespace: its DOM, or a screenshot written to `screenshot`.
fn chromium(lab: &Lab, budget_ms: u32, screenshot: Option<&str>) -> String {
    let output = match screenshot {
        Some(path) => format!("--screenshot={path} --window-size=1200,1700 --hide-scrollbars"),
        None => "--dump-dom".to_string(),
    };
    lab.lb().ns.sh(&format!(
        "HOME={} timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run \
         --user-data-dir={} --virtual-time-budget={budget_ms} {output} http://127.0.0.1:9100/status 2>/dev/null",
        lab.dir.path().display(),
        lab.path("chromium-profile")
    ))
}

/// The text of each `<td>` of the first `<tr` carrying `attr`.
fn row(dom: &str, attr: &str) -> Vec<String> {
    let start = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no row with {attr} in the page:\n{dom}"));
    let end = start + dom[start..].find("</tr>").unwrap();
    dom[start..end]
        .split("<td")
        .skip(1)
        .map(|c| {
            let text = &c[c.find('>').unwrap() + 1..];
            text[..text.find("</td>").unwrap()].to_string()
        })
        .collect()
}

fn stats(lab: &Lab) -> Stats {
    serde_json::from_str(&lab.stats_json()).unwrap()
}

#[test]
fn the_status_page_shows_what_proxy_stats_says() {
    let mut lab = Lab::new(LabOptions {
        backends: 2,
        attackers: 1,
        ..LabOptions::default()
    });
    let cert = lab.cert("st.test");
    let pins = lab::PinDir::new("status");
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(Listener::new("tls", addr(format!("{lb}:443")), "web").tls(tls(&cert)))
        .with_listener(Listener::new("plain", addr(format!("{lb}:8080")), "web"))
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_xdp(XdpSection {
            drop_sample_rate: 1,
            ..XdpSection::on(&["eth0"], &pins.0).rate_limit(RateLimitConfig {
                packets_per_second: 100,
                ports: vec![FLOOD_PORT],
                ..RateLimitConfig::default()
            })
        })
        .with_autoblock(AutoblockSection::default())
        .to_toml();
    lab.start_proxy(&config);
    for _ in 0..4 {
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 http://{lb}:8080/name"
        ));
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 --cacert {} --resolve st.test:443:{lb} https://st.test/name",
            cert.cert.display()
        ));
    }
    lab.cli(&format!(
        "block add 203.0.113.9 --ttl 1h --reason '<b>cli</b> & co' --pin-path {}",
        pins.display()
    ));

    // A bounded UDP flood over the rate limit while the page polls: the chart moves.
    let target: SocketAddr = format!("{lb}:{FLOOD_PORT}").parse().unwrap();
    let flood = spawn_in_netns(&lab.attacker(0).ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        let (start, mut sent) = (Instant::now(), 0u64);
        // About 20,000 packets/s, for at most 300,000 packets or 20 s.
        while sent < 300_000 && start.elapsed() < Duration::from_secs(20) {
            if sock.send_to(&[0u8; 64], target).is_ok() {
                sent += 1;
            }
            if sent % 20 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_secs(1));
    let during = chromium(&lab, 9000, None);
    // The screenshot while the flood still runs, so the chart shows it.
    let shot = lab.path("status.png");
    chromium(&lab, 7000, Some(&shot));
    let sent = flood.join().unwrap();
    let rate_attr = during
        .split("data-last-drop-rate=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no drop rate on the chart:\n{during}"));
    let samples: u32 = during
        .split("data-samples=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    eprintln!("flood of {sent} packets; chart: {samples} samples, last {rate_attr} drops/s");
    assert!(samples >= 2, "the chart has points: {samples}");
    assert!(
        rate_attr.parse::<u64>().unwrap() > 0,
        "the drop chart moves during the flood"
    );

    // Quiet now: the page and `proxy stats` must agree exactly.
    std::thread::sleep(Duration::from_millis(500));
    let dom = chromium(&lab, 3000, None);
    let stats = stats(&lab);
    let text = |cells: &[String], i: usize| cells[i].clone();
    assert_eq!(
        dom.split("id=\"connections-open\">")
            .nth(1)
            .and_then(|s| s.split('<').next()),
        Some(stats.connections_open.to_string().as_str())
    );
    for l in &stats.listeners {
        let cells = row(&dom, &format!("data-listener=\"{}\"", l.name));
        assert_eq!(text(&cells, 0), l.name);
        assert_eq!(
            text(&cells, 2),
            l.connections_total.to_string(),
            "{}: total",
            l.name
        );
        assert_eq!(
            text(&cells, 4),
            l.tls_handshakes.to_string(),
            "{}: handshakes",
            l.name
        );
    }
    for b in stats.pools.iter().flat_map(|p| &p.backends) {
        let cells = row(&dom, &format!("data-backend=\"{}\"", b.address));
        assert_eq!(text(&cells, 2), if b.healthy { "up" } else { "DOWN" });
        assert_eq!(text(&cells, 3), b.weight.to_string());
        assert_eq!(text(&cells, 5), b.connect_failures.to_string());
    }
    let xdp = stats.xdp.as_ref().unwrap();
    let eth0 = xdp
        .interfaces
        .iter()
        .find(|i| i.interface.as_deref() == Some("eth0"))
        .unwrap();
    let cells = row(&dom, "data-interface=\"eth0\"");
    for (i, reason) in ["blocklisted", "rate_pps"].iter().enumerate() {
        let want = eth0.verdicts.get(
            proxy_common::Reason::ALL
                .into_iter()
                .find(|r| r.name() == *reason)
                .unwrap(),
        );
        let column = 4 + i; // interface, mode, passed, allowlisted, blocklisted, rate_pps
        assert_eq!(text(&cells, column), want.packets.to_string(), "{reason}");
    }
    assert!(eth0.verdicts.get(proxy_common::Reason::RatePps).packets > 0);
    // The CLI's block is listed, its reason as text (escaped), not markup.
    let blocked = row(&dom, "data-cidr=\"203.0.113.9/32\"");
    assert_eq!(text(&blocked, 1), "manual");
    assert_eq!(text(&blocked, 3), "&lt;b&gt;cli&lt;/b&gt; &amp; co");
    assert!(!dom.contains("<b>cli</b>"));
    // The flooding source tops the dropped sources.
    let top_table = &dom[dom.find("<table id=\"top\">").expect("the top table")..];
    let top = row(&top_table[top_table.find("<tbody>").unwrap()..], "<tr");
    assert_eq!(
        text(&top, 0),
        lab.attacker(0).ipv4,
        "the attacker tops the dropped sources"
    );
    // Columns: source, ~dropped, ~answered with SYN cookies, drops by reason.
    assert_eq!(text(&top, 2), "0", "no cookie answers here: {top:?}");
    assert!(text(&top, 3).starts_with("rate_pps="), "{top:?}");

    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::copy(&shot, &kept).unwrap();
    eprintln!("screenshot: {}", kept.display());
}
