//! The admin HTTP endpoint (loopback by default): `/metrics` (the one registry in
//! the Prometheus text format), `/status` (a live page, no external assets) and the
//! JSON it reads, `/api/stats`, `/api/top`, `/api/blocklist` and `/api/backends` (the
//! typed admin API, the same data as `proxy stats`). Read-only: runtime changes go
//! through the admin socket, where the caller is known.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::Admin;
use crate::api::{Request, Response as ApiResponse};

const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const STATUS_PAGE: &str = include_str!("status.html");

/// Binds `addr` and serves the endpoint in the background.
pub async fn start(
    addr: SocketAddr,
    admin: Arc<Admin>,
    inherited: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let listener = match inherited {
        Some(l) => {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)?
        }
        None => TcpListener::bind(addr).await.with_context(|| {
            format!("binding the metrics endpoint {addr} (admin.metrics; \"off\" disables it)")
        })?,
    };
    *admin.handover.metrics.lock().expect("handover lock") = Some((
        addr,
        std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?,
    ));
    info!(%addr, "admin HTTP ready (GET /metrics, /status)");
    let stop = admin.handover.handed_over.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                // The successor answers from now on.
                _ = stop.cancelled() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admin = admin.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &admin).await) }
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

async fn respond<B>(req: &hyper::Request<B>, admin: &Admin) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "read-only: GET\n".into(),
        );
    }
    let request = match req.uri().path() {
        "/metrics" => {
            return reply(
                StatusCode::OK,
                METRICS_TYPE,
                admin.daemon.metrics().encode(),
            );
        }
        "/status" | "/" => {
            return reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                STATUS_PAGE.into(),
            );
        }
        "/api/stats" => Request::Stats,
        "/api/top" => Request::Top {
            n: top_n(req.uri().query()),
        },
        "/api/blocklist" => Request::Blocklist,
        "/api/fleet" => Request::FleetStatus,
        "/api/backends" => Request::Backends,
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "try /status or /metrics\n".into(),
            );
        }
    };
    match admin.answer(request, None).await {
        ApiResponse::Stats(s) => json(&s),
        ApiResponse::Top(t) => json(&t),
        ApiResponse::Blocklist(b) => json(&b),
        ApiResponse::FleetStatus(f) => json(&f),
        ApiResponse::Backends(b) => json(&b),
        ApiResponse::Done(d) => json(&d),
        ApiResponse::Error(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            serde_json::json!({ "error": e }).to_string(),
        ),
    }
}

/// `?n=10` → 10; default 10.
fn top_n(query: Option<&str>) -> usize {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("n=")?.parse().ok())
        .unwrap_or(10)
}

fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_string(value) {
        Ok(body) => reply(StatusCode::OK, "application/json", body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e}\n"),
        ),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from(body)))
        .expect("static status and headers are valid")
}
