//! `[admin]`: the local admin socket (root only) and the Prometheus endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{ConfigIssue, KeyPath};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Unix socket for `proxy stats` and `proxy top`, created mode 0600 (root only).
    /// Default "/run/proxy/admin.sock". Read at start only.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Address of the HTTP endpoint serving `/metrics` (Prometheus text format);
    /// "off" disables it. Default "127.0.0.1:9100". Read at start only.
    #[serde(
        default = "default_metrics",
        deserialize_with = "metrics_addr",
        serialize_with = "write_metrics_addr"
    )]
    pub metrics: Option<SocketAddr>,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            socket: default_socket(),
            metrics: default_metrics(),
        }
    }
}

impl AdminSection {
    /// Checks values serde cannot; `at` is the section's key (`admin`).
    pub fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        if !self.socket.is_absolute() {
            return Err(ConfigIssue::new(
                at.key("socket"),
                format!("{:?} must be an absolute path", self.socket),
            ));
        }
        Ok(())
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/proxy/admin.sock")
}

fn default_metrics() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
}

fn write_metrics_addr<S: serde::Serializer>(
    a: &Option<SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.collect_str(a),
        None => s.serialize_str("off"),
    }
}

fn metrics_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s == "off" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{s:?} is not an address like \"127.0.0.1:9100\" or \"off\""
        ))
    })
}
