//! The Grafana dashboard and the alerting rules, checked against a real Prometheus:
//! Debian's `prometheus` scrapes a running daemon in the lab, every dashboard
//! expression must return data through its HTTP API (so a renamed metric breaks this
//! test, not an operator's dashboard), and every alerting rule must evaluate cleanly
//! (`promtool check rules` first). Needs root.

use std::path::PathBuf;
use std::time::Duration;

use lab::config::*;
use lab::site::{Lab, LabOptions};
use serde_json::Value;

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

/// Every `expr` of the dashboard's panels, with the panel title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dist("grafana/proxy.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap().to_owned();
            out.push((title, target["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// A query through Prometheus' HTTP API (run inside the load balancer's namespace).
fn query(lab: &Lab, expr: &str) -> Value {
    let out = lab.lb().ns.sh(&format!(
        "curl -sS --max-time 5 --data-urlencode 'query={}' http://127.0.0.1:9090/api/v1/query",
        expr.replace('\'', "'\\''")
    ));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v
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

    let prom_config = lab.dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: proxy\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n",
            rules.display()
        ),
    )
    .unwrap();
    let _prometheus = lab.lb().ns.spawn(&format!(
        "prometheus --config.file={} --storage.tsdb.path={} --web.listen-address=127.0.0.1:9090",
        prom_config.display(),
        lab.path("prometheus-data")
    ));
    lab::wait_for("Prometheus to be ready", Duration::from_secs(30), || {
        lab.lb()
            .ns
            .try_sh("curl -sf http://127.0.0.1:9090/-/ready")
            .status
            .success()
            .then_some(())
    });
    // More traffic while it scrapes, so every rate has two samples with a change.
    for _ in 0..5 {
        lab.client_ok(&format!(
            "curl -sS --fail --max-time 5 http://{lb}:8080/name"
        ));
        std::thread::sleep(Duration::from_millis(700));
    }

    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{} queries", queries.len());
    for (title, expr) in &queries {
        let expr = concrete(expr);
        let result = lab::wait_for(
            &format!("data for {title:?}: {expr}"),
            Duration::from_secs(20),
            || {
                let v = query(&lab, &expr);
                let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
                (!result.is_empty()).then_some(result)
            },
        );
        eprintln!("{title}: {} series", result.len());
    }

    // The rules evaluate without error, and the attached XDP program is seen.
    lab::wait_for("every rule evaluated", Duration::from_secs(20), || {
        let out = lab
            .lb()
            .ns
            .sh("curl -sS http://127.0.0.1:9090/api/v1/rules");
        let v: Value = serde_json::from_str(&out).unwrap();
        let rules: Vec<Value> = v["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let evaluated = rules.len() == 5
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z");
        evaluated.then_some(())
    });
    let attached = query(&lab, "proxy_xdp_attached");
    assert_eq!(
        attached["data"]["result"][0]["metric"]["interface"], "eth0",
        "{attached}"
    );
    let alerts = lab
        .lb()
        .ns
        .sh("curl -sS http://127.0.0.1:9090/api/v1/alerts");
    assert!(!alerts.contains("ProxyXdpNotAttached"), "{alerts}");
    assert!(!alerts.contains("ProxyPoolDown"), "{alerts}");
}
