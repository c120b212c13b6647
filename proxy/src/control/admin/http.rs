//! The `/metrics` endpoint: the one registry (data path, auto-blocks and, through a
//! collector, the kernel's verdict counters) in the Prometheus text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::metrics::Metrics;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves `GET /metrics` in the background.
pub async fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("binding the metrics endpoint {addr} (admin.metrics; \"off\" disables it)")
    })?;
    info!(%addr, "metrics endpoint ready (GET /metrics)");
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(respond(req.uri().path(), &metrics)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(())
}

fn respond(path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    let response = if path == "/metrics" {
        Response::builder()
            .header("content-type", CONTENT_TYPE)
            .body(Full::new(Bytes::from(metrics.encode())))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"try /metrics\n")))
    };
    response.expect("static status and header are valid")
}
