//! The Grafana dashboard and the alerting rules, checked against a real Prometheus:
//! Debian's `prometheus` scrapes a running daemon in the lab, every dashboard
//! expression must return data through its HTTP API (so a renamed metric breaks this
//! test, not an operator's dashboard), and every alerting rule must evaluate cleanly
//! (`promtool check rules` first). The Fleet row and the fleet alerts are checked on
//! a fleet node (BGP to a BIRD router, the etcd store, a steered VIP): every Fleet
//! query returns data there and none on a node without a fleet, and the withdrawn-VIP
//! and disconnected-store alerts fire when the VIP is withdrawn and etcd is killed.
//! Needs root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab::config::*;
use lab::fleet_site::FleetSite;
use lab::site::{Lab, LabOptions};
use lab::{Netns, Proc};
use serde_json::Value;

/// The dashboard row whose queries need a fleet node.
const FLEET_ROW: &str = "Fleet";
/// The alerts that concern the fleet.
const FLEET_ALERTS: [&str; 3] = [
    "ProxyVipWithdrawn",
    "ProxyVipWithdrawnEverywhere",
    "ProxyFleetStoreDisconnected",
];

fn dist(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

/// Grafana's variables and macros, as a whole-range query would see them.
fn concrete(expr: &str) -> String {
    ["$instance", "$listener", "$pool", "$interface"]
        .iter()
        .fold(expr.to_owned(), |e, v| e.replace(v, ".*"))
        .replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
}

/// One `expr` of the dashboard.
struct Query {
    /// The row the panel is in (the last row panel before it).
    row: String,
    title: String,
    expr: String,
}

/// Every `expr` of the dashboard's panels.
fn dashboard_queries() -> Vec<Query> {
    let text = std::fs::read_to_string(dist("grafana/proxy.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    let mut row = String::new();
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_owned();
        if panel["type"] == "row" {
            row = title;
            continue;
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                row: row.clone(),
                title: title.clone(),
                expr: target["expr"].as_str().unwrap().to_owned(),
            });
        }
    }
    out
}

/// A query through Prometheus' HTTP API (run inside `ns`, where it listens).
fn query(ns: &Netns, expr: &str) -> Value {
    let out = ns.sh(&format!(
        "curl -sS --max-time 5 --data-urlencode 'query={}' http://127.0.0.1:9090/api/v1/query",
        expr.replace('\'', "'\\''")
    ));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v
}

/// The series `expr` returns now.
fn series(ns: &Netns, expr: &str) -> Vec<Value> {
    query(ns, expr)["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (20 s at most) until the dashboard's `expr` returns data.
fn wait_for_data(ns: &Netns, q: &Query) -> Vec<Value> {
    let expr = concrete(&q.expr);
    lab::wait_for(
        &format!("data for {:?}: {expr}", q.title),
        Duration::from_secs(20),
        || Some(series(ns, &expr)).filter(|r| !r.is_empty()),
    )
}

/// Debian's Prometheus in `ns`, scraping the daemon's 127.0.0.1:9100 every second
/// and evaluating `rules` every second (data under `dir`); ready when it returns.
fn start_prometheus(ns: &Netns, dir: &Path, rules: &Path) -> Proc {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: proxy\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n",
            rules.display()
        ),
    )
    .unwrap();
    let prometheus = ns.spawn(&format!(
        "prometheus --config.file={} --storage.tsdb.path={} --web.listen-address=127.0.0.1:9090",
        config.display(),
        dir.join("prometheus-data").display()
    ));
    lab::wait_for("Prometheus to be ready", Duration::from_secs(30), || {
        ns.try_sh("curl -sf http://127.0.0.1:9090/-/ready")
            .status
            .success()
            .then_some(())
    });
    prometheus
}

/// Waits (20 s at most) until every one of the `n` rules has been evaluated cleanly.
fn wait_rules_evaluated(ns: &Netns, n: usize) {
    lab::wait_for("every rule evaluated", Duration::from_secs(20), || {
        let out = ns.sh("curl -sS http://127.0.0.1:9090/api/v1/rules");
        let v: Value = serde_json::from_str(&out).unwrap();
        let rules: Vec<Value> = v["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let evaluated = rules.len() == n
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z");
        evaluated.then_some(())
    });
}

/// The active alerts (pending or firing): (name, state, labels).
fn alerts(ns: &Netns) -> Vec<(String, String, Value)> {
    let out = ns.sh("curl -sS http://127.0.0.1:9090/api/v1/alerts");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let labels = a["labels"].clone();
            let name = labels["alertname"].as_str().unwrap_or_default().to_owned();
            (
                name,
                a["state"].as_str().unwrap_or_default().to_owned(),
                labels,
            )
        })
        .collect()
}

/// Waits (20 s at most) until alert `name` fires; its labels.
fn wait_firing(ns: &Netns, name: &str) -> Value {
    lab::wait_for(&format!("{name} to fire"), Duration::from_secs(20), || {
        alerts(ns)
            .into_iter()
            .find(|(n, state, _)| n == name && state == "firing")
            .map(|(_, _, labels)| labels)
    })
}

#[test]
fn dashboard_expressions_return_data_and_alerts_evaluate() {
    let rules = dist("prometheus/alerts.yml");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian package prometheus; cargo xtask setup installs it)");
    assert!(check.status.success(), "{check:?}");

    let mut lab = Lab::new(LabOptions {
        backends: 1,
        ..LabOptions::default()
    });
    let cert = lab.cert("obs.test");
    let pins = lab::PinDir::new("obs");
    let lb = lab.lb_ip().to_string();
    let config = Config::new()
        .with_listener(Listener::new("tls", addr(format!("{lb}:443")), "web").tls(tls(&cert)))
        .with_listener(Listener::new("plain", addr(format!("{lb}:8080")), "web"))
        .with_pool(Pool::new("web", addrs(&lab.backend_addrs())))
        .with_xdp(XdpSection::on(&["eth0"], &pins.0))
        .with_autoblock(AutoblockSection::default())
        .to_toml();
    lab.start_proxy(&config);
    // Traffic on both listeners, and one reload (its counter appears on the first one).
    for _ in 0..3 {
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 http://{lb}:8080/name"
        ));
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 --cacert {} --resolve obs.test:443:{lb} https://obs.test/name",
            cert.cert.display()
        ));
    }
    lab.proxy().signal("HUP");
    lab.proxy().wait_log("the reload", "reload succeeded");

    let ns = &lab.lb().ns;
    let _prometheus = start_prometheus(ns, lab.dir.path(), &rules);
    // More traffic while it scrapes, so every rate has two samples with a change.
    for _ in 0..5 {
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 http://{lb}:8080/name"
        ));
        std::thread::sleep(Duration::from_millis(700));
    }

    let queries = dashboard_queries();
    let (fleet, others): (Vec<Query>, Vec<Query>) =
        queries.into_iter().partition(|q| q.row == FLEET_ROW);
    assert!(others.len() >= 15, "{} queries", others.len());
    for q in &others {
        let result = wait_for_data(ns, q);
        eprintln!("{}: {} series", q.title, result.len());
    }
    // This node has no fleet: the Fleet row stays empty (the scrapes above have
    // every series the daemon exports).
    assert!(fleet.len() >= 10, "{} Fleet queries", fleet.len());
    for q in &fleet {
        let result = series(ns, &concrete(&q.expr));
        assert!(result.is_empty(), "{}: {result:?}", q.title);
    }

    // The rules evaluate without error, and the attached XDP program is seen.
    wait_rules_evaluated(ns, 8);
    let attached = query(ns, "proxy_xdp_attached");
    assert_eq!(
        attached["data"]["result"][0]["metric"]["interface"], "eth0",
        "{attached}"
    );
    let active = alerts(ns);
    let names: Vec<&str> = active.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(!names.contains(&"ProxyXdpNotAttached"), "{active:?}");
    assert!(!names.contains(&"ProxyPoolDown"), "{active:?}");
    assert!(
        FLEET_ALERTS.iter().all(|a| !names.contains(a)),
        "{active:?}"
    );
}

/// The rules with every `for:` shortened to 1 s, written into `dir`: the alerts fire
/// within the test (the file itself passes `promtool check rules` above).
fn rules_firing_fast(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(dist("prometheus/alerts.yml")).unwrap();
    let mut shortened = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => {
                shortened += 1;
                format!("{}for: 1s", &l[..l.len() - l.trim_start().len()])
            }
            None => l.to_owned(),
        })
        .collect();
    assert!(shortened >= 3, "{shortened} rules with for:");
    let path = dir.join("alerts-fast.yml");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn the_fleet_row_returns_data_and_the_fleet_alerts_fire_on_a_fleet_node() {
    let mut site =
        FleetSite::one_steered_node(concat!(env!("OUT_DIR"), "/xdp-bench.o").into()).unwrap();
    let ns = &site.fleet.nodes.host(0).ns;
    let rules = rules_firing_fast(site.dir.path());
    let _prometheus = start_prometheus(ns, site.dir.path(), &rules);

    let fleet: Vec<Query> = dashboard_queries()
        .into_iter()
        .filter(|q| q.row == FLEET_ROW)
        .collect();
    assert!(fleet.len() >= 10, "{} Fleet queries", fleet.len());
    for q in &fleet {
        let result = wait_for_data(ns, q);
        eprintln!("{}: {}", q.title, serde_json::to_string(&result).unwrap());
    }
    let announced = series(ns, "proxy_vip_announced");
    assert_eq!(announced[0]["metric"]["vip"], site.vip(), "{announced:?}");
    assert_eq!(announced[0]["value"][1], "1", "{announced:?}");
    let session = series(ns, "proxy_bgp_peer_established");
    assert_eq!(session[0]["metric"]["peer"], "10.77.0.254", "{session:?}");
    assert_eq!(session[0]["value"][1], "1", "{session:?}");
    let members = series(ns, "proxy_fleet_steering_members{state=\"active\"}");
    assert_eq!(members[0]["value"][1], "1", "{members:?}");

    // Everything up: no fleet alert.
    wait_rules_evaluated(ns, 8);
    let active = alerts(ns);
    assert!(
        active
            .iter()
            .all(|(n, _, _)| !FLEET_ALERTS.contains(&n.as_str())),
        "{active:?}"
    );

    // The backend stopped: the VIP is withdrawn, on this node and so everywhere.
    site.backends_up(false);
    site.wait_next_hops(0, Duration::from_secs(10)).unwrap();
    let ns = &site.fleet.nodes.host(0).ns;
    let withdrawn = wait_firing(ns, "ProxyVipWithdrawn");
    assert_eq!(withdrawn["vip"], site.vip(), "{withdrawn}");
    let everywhere = wait_firing(ns, "ProxyVipWithdrawnEverywhere");
    assert_eq!(everywhere["vip"], site.vip(), "{everywhere}");
    assert!(
        alerts(ns)
            .iter()
            .all(|(n, _, _)| n != "ProxyFleetStoreDisconnected"),
        "the store is still connected"
    );

    // etcd killed: the store is disconnected.
    site.etcd.as_mut().unwrap().kill(0);
    let ns = &site.fleet.nodes.host(0).ns;
    let disconnected = wait_firing(ns, "ProxyFleetStoreDisconnected");
    eprintln!("fired: {withdrawn} {everywhere} {disconnected}");
}
