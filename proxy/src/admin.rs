//! The local admin interface: a Unix socket (mode 0600, root only) answering
//! `proxy stats` and `proxy top` with JSON, and an HTTP endpoint serving `/metrics`
//! in the Prometheus text format (data path metrics plus XDP verdict counters and
//! auto-blocks).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tracing::{info, warn};

use crate::autoblock::AutoblockCounters;
use crate::config::admin::AdminSection;
use crate::daemon::Daemon;
use crate::ebpf::maps::{List, Origin};
use crate::ebpf::runtime::XdpSubsystem;
use proxy_common::Reason;

/// A request on the admin socket: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Stats,
    Top { n: usize },
}

/// What the admin interface reads from.
pub struct Admin {
    pub daemon: Arc<Daemon>,
    pub xdp: Arc<XdpSubsystem>,
    pub autoblock: Arc<AutoblockCounters>,
}

/// Removes the socket file when the daemon stops.
pub struct AdminGuard {
    socket: PathBuf,
}

impl Drop for AdminGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Binds the socket and the metrics endpoint and serves them in the background.
pub async fn start(section: &AdminSection, admin: Arc<Admin>) -> anyhow::Result<AdminGuard> {
    let listener = bind_socket(&section.socket).await?;
    info!(socket = %section.socket.display(), "admin socket ready (proxy stats, proxy top)");
    let a = admin.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let a = a.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &a).await {
                            warn!(error = %e, "admin request failed");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    if let Some(addr) = section.metrics {
        serve_metrics(addr, admin).await?;
    }
    Ok(AdminGuard {
        socket: section.socket.clone(),
    })
}

async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "admin socket {} is in use: is another proxy daemon running? (set admin.socket to run several)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn answer(stream: UnixStream, admin: &Admin) -> anyhow::Result<()> {
    // The socket is 0600; check the peer too, in case the file mode was changed.
    let cred = stream.peer_cred()?;
    let me = unsafe { libc::geteuid() };
    if cred.uid() != 0 && cred.uid() != me {
        anyhow::bail!("refused admin request from uid {}", cred.uid());
    }
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(64 * 1024);
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await??;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Stats) => stats(admin).await,
        Ok(Request::Top { n }) => top(admin, n),
        Err(e) => json!({"error": format!("bad request {line:?}: {e}")}),
    };
    write
        .write_all(serde_json::to_string(&response)?.as_bytes())
        .await?;
    write.write_all(b"\n").await?;
    write.shutdown().await?;
    Ok(())
}

use tokio::io::AsyncReadExt as _;

/// Everything `proxy stats` shows.
async fn stats(admin: &Admin) -> Value {
    let daemon = &admin.daemon;
    let samples = parse_samples(&daemon.metrics().encode());
    let mut listeners: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for s in &samples {
        let Some(listener) = s.labels.get("listener") else {
            continue;
        };
        let entry = listeners.entry(listener.clone()).or_default();
        let key = match (
            s.name.as_str(),
            s.labels.get("reason"),
            s.labels.get("direction"),
        ) {
            ("proxy_connections_active", _, _) => "connections_active".to_string(),
            ("proxy_connections_total", _, _) => "connections_total".to_string(),
            ("proxy_tls_handshakes_total", _, _) => "tls_handshakes_ok".to_string(),
            ("proxy_tls_handshake_failures_total", Some(r), _) => {
                format!("tls_handshake_failed_{r}")
            }
            ("proxy_connections_rejected_total", Some(r), _) => format!("rejected_{r}"),
            ("proxy_transferred_bytes_total", _, Some(d)) => format!("bytes_{d}"),
            ("proxy_no_backend_total", _, _) => "no_backend".to_string(),
            _ => continue,
        };
        entry.insert(key, json!(s.value as u64));
    }
    let xdp = match admin.xdp.maps() {
        None => Value::Null,
        Some(maps) => {
            let maps = maps.lock().expect("maps lock");
            let interfaces: Vec<Value> = admin
                .xdp
                .attachments()
                .into_iter()
                .map(|(interface, ifindex, mode)| {
                    let verdicts = maps.counters(ifindex).map(|c| verdicts_json(&c)).unwrap_or(Value::Null);
                    json!({"interface": interface, "ifindex": ifindex, "mode": mode, "verdicts": verdicts})
                })
                .collect();
            let blocks = maps.entries(List::Block).unwrap_or_default();
            let auto = blocks.iter().filter(|e| e.origin == Origin::Auto).count();
            json!({"interfaces": interfaces, "blocklist_entries": blocks.len(), "auto_blocks_active": auto})
        }
    };
    let ab = &admin.autoblock;
    json!({
        "connections_open": daemon.open_connections(),
        "listeners": listeners,
        "pools": daemon.pools().await,
        "xdp": xdp,
        "autoblock": {
            "blocked_total": ab.total(),
            "by_trigger": {
                "failed_handshakes": ab.failed_handshakes.load(Ordering::Relaxed),
                "handshake_timeouts": ab.handshake_timeouts.load(Ordering::Relaxed),
                "new_connections": ab.new_connections.load(Ordering::Relaxed),
            },
            "skipped_allowlisted": ab.skipped_allowlisted.load(Ordering::Relaxed),
            "skipped_no_xdp": ab.skipped_no_xdp.load(Ordering::Relaxed),
        },
    })
}

pub fn verdicts_json(c: &crate::ebpf::maps::InterfaceCounters) -> Value {
    let map: serde_json::Map<String, Value> = Reason::ALL
        .iter()
        .map(|r| {
            let v = c.get(*r);
            (
                r.name().to_string(),
                json!({"packets": v.packets, "bytes": v.bytes}),
            )
        })
        .collect();
    Value::Object(map)
}

fn top(admin: &Admin, n: usize) -> Value {
    match admin.xdp.recent_drops() {
        None => {
            json!({"error": "no XDP program runs in this daemon: nothing is dropped in the kernel"})
        }
        Some(drops) => json!({"sources": drops.lock().expect("drops lock").top(n.clamp(1, 1000))}),
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (our own output: no timestamps).
fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), BTreeMap::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest.trim_end_matches('}'))),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    interface: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

/// XDP counters and auto-blocks, read at scrape time.
struct ProductCollector {
    xdp: Arc<XdpSubsystem>,
    autoblock: Arc<AutoblockCounters>,
}

impl std::fmt::Debug for ProductCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProductCollector")
    }
}

impl Collector for ProductCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(maps) = self.xdp.maps() {
            let counters: Vec<_> = {
                let maps = maps.lock().expect("maps lock");
                self.xdp
                    .attachments()
                    .into_iter()
                    .filter_map(|(name, ifindex, _)| maps.counters(ifindex).ok().map(|c| (name, c)))
                    .collect()
            };
            let kind = ConstCounter::new(0u64).metric_type();
            type Series<'a> = (
                &'a str,
                &'a str,
                Option<&'a Unit>,
                fn(&proxy_common::Counter) -> u64,
            );
            let series: [Series; 2] = [
                (
                    "xdp_packets",
                    "Packets the XDP program handled, by interface and verdict reason",
                    None,
                    |c| c.packets,
                ),
                (
                    "xdp",
                    "Bytes the XDP program handled, by interface and verdict reason",
                    Some(&Unit::Bytes),
                    |c| c.bytes,
                ),
            ];
            for (name, help, unit, value) in series {
                let mut family = encoder.encode_descriptor(name, help, unit, kind)?;
                for (interface, ifc) in &counters {
                    for r in Reason::ALL {
                        let labels = VerdictLabels {
                            interface: interface.clone(),
                            reason: r.name(),
                        };
                        ConstCounter::new(value(&ifc.get(r)))
                            .encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        let ab = &self.autoblock;
        let c = ConstCounter::new(0u64);
        let mut blocks = encoder.encode_descriptor(
            "autoblocks",
            "Sources the daemon blocked in the kernel, by trigger",
            None,
            c.metric_type(),
        )?;
        for (trigger, v) in [
            ("failed_handshakes", &ab.failed_handshakes),
            ("handshake_timeouts", &ab.handshake_timeouts),
            ("new_connections", &ab.new_connections),
        ] {
            ConstCounter::new(v.load(Ordering::Relaxed))
                .encode(blocks.encode_family(&TriggerLabels { trigger })?)?;
        }
        let skipped = encoder.encode_descriptor(
            "autoblock_skipped_allowlisted",
            "Auto-block thresholds reached by allowlisted sources (not blocked)",
            None,
            c.metric_type(),
        )?;
        ConstCounter::new(ab.skipped_allowlisted.load(Ordering::Relaxed)).encode(skipped)?;
        Ok(())
    }
}

async fn serve_metrics(addr: SocketAddr, admin: Arc<Admin>) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("binding the metrics endpoint {addr} (admin.metrics; \"off\" disables it)")
    })?;
    info!(%addr, "metrics endpoint ready (GET /metrics)");
    let mut product = Registry::with_prefix("proxy");
    product.register_collector(Box::new(ProductCollector {
        xdp: admin.xdp.clone(),
        autoblock: admin.autoblock.clone(),
    }));
    let product = Arc::new(product);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (admin, product) = (admin.clone(), product.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (admin, product) = (admin.clone(), product.clone());
                        async move {
                            let response = if req.uri().path() == "/metrics" {
                                let mut body = admin.daemon.metrics().encode();
                                // Both registries end with "# EOF"; keep one, at the end.
                                if let Some(stripped) = body.strip_suffix("# EOF\n") {
                                    body.truncate(stripped.len());
                                }
                                let _ =
                                    prometheus_client::encoding::text::encode(&mut body, &product);
                                Response::builder()
                                .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                                .body(Full::new(Bytes::from(body)))
                            } else {
                                Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::from_static(b"try /metrics\n")))
                            };
                            Ok::<_, std::convert::Infallible>(response.expect("valid response"))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(())
}

/// Client side: sends one request to the daemon's admin socket.
pub fn request(socket: &Path, request: &Request) -> anyhow::Result<Value> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the daemon at {} (is `proxy run` running? is admin.socket the same? pass --socket)", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(serde_json::to_string(request)?.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    let value: Value = serde_json::from_str(&line).context("the daemon's answer is not JSON")?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        anyhow::bail!("{error}");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_samples_with_labels() {
        let text = "# HELP x y\nproxy_tls_handshake_failures_total{listener=\"web \\\"1\\\"\",reason=\"not_tls\"} 3\nproxy_connections_active{listener=\"a\"} 2\nplain 1.5\n# EOF\n";
        let s = parse_samples(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "proxy_tls_handshake_failures_total");
        assert_eq!(s[0].labels["listener"], "web \"1\"");
        assert_eq!(s[0].labels["reason"], "not_tls");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[2].labels.len(), 0);
    }

    #[test]
    fn requests_are_one_json_line() {
        assert_eq!(
            serde_json::to_string(&Request::Top { n: 5 }).unwrap(),
            r#"{"command":"top","n":5}"#
        );
        assert!(matches!(
            serde_json::from_str(r#"{"command":"stats"}"#).unwrap(),
            Request::Stats
        ));
    }
}
