//! Backends from DNS: `[[pool.backends]] name = "host:port"` (A and AAAA records)
//! and `[pool.discovery]` (an SRV record's targets, ports and weights; where to ask;
//! how often; how many).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::error::{ConfigIssue, KeyPath};

/// `[pool.discovery]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// An SRV record whose targets become backends (`"_api._tcp.internal"`); its
    /// weights are their weights, only its lowest priority is used. Absent: only
    /// the pool's `name` backends are looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srv: Option<String>,
    /// DNS servers to ask (`"10.0.0.53:53"`). Default: the ones in /etc/resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<SocketAddr>,
    /// The shortest time between two lookups of a name, whatever its TTL (and the
    /// retry interval while the resolver fails). Default "5s".
    #[serde(default = "default_min_refresh", with = "duration")]
    pub min_refresh: Duration,
    /// The longest: a record with a longer TTL is looked up again after this.
    /// Default "5m".
    #[serde(default = "default_max_refresh", with = "duration")]
    pub max_refresh: Duration,
    /// Backends taken from each name or SRV record at most (the lowest addresses
    /// first). Default 64.
    #[serde(default = "default_max_backends")]
    pub max_backends: usize,
    /// An empty answer or NXDOMAIN empties the backends it gave only after it has
    /// lasted this long (a DNS change in flight, a zone reloading). Default "30s".
    #[serde(default = "default_hold_empty", with = "duration")]
    pub hold_empty: Duration,
    /// Time allowed for one lookup. Default "2s".
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

impl Default for Discovery {
    fn default() -> Discovery {
        Discovery {
            srv: None,
            resolvers: Vec::new(),
            min_refresh: default_min_refresh(),
            max_refresh: default_max_refresh(),
            max_backends: default_max_backends(),
            hold_empty: default_hold_empty(),
            timeout: default_timeout(),
        }
    }
}

impl Discovery {
    /// `at` is the section's key (`pool[i].discovery`).
    pub fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        if let Some(srv) = &self.srv
            && let Err(why) = dns_name(srv, true)
        {
            return Err(ConfigIssue::new(at.key("srv"), format!("{srv:?}: {why}")));
        }
        if self.min_refresh.is_zero() || self.timeout.is_zero() {
            let key = if self.timeout.is_zero() {
                "timeout"
            } else {
                "min_refresh"
            };
            return Err(ConfigIssue::new(at.key(key), "must be above 0"));
        }
        if self.max_refresh < self.min_refresh {
            return Err(ConfigIssue::new(
                at.key("max_refresh"),
                "must be at least min_refresh",
            ));
        }
        if self.max_backends == 0 || self.max_backends > 1000 {
            return Err(ConfigIssue::new(
                at.key("max_backends"),
                "must be 1 to 1000",
            ));
        }
        Ok(())
    }
}

/// A backend's DNS name and port: `"api.internal:8443"`.
pub fn name_and_port(text: &str) -> Result<(&str, u16), String> {
    let (host, port) = text.rsplit_once(':').ok_or_else(|| {
        format!("{text:?}: write a host name and a port, like \"api.internal:8443\"")
    })?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{text:?}: {port:?} is not a port (1-65535)"))?;
    dns_name(host, false).map_err(|why| format!("{text:?}: {why}"))?;
    Ok((host, port))
}

/// A DNS name: labels of letters, digits and `-` (and `_` in SRV names), without a
/// wildcard; not an IP address (write those as `address`).
fn dns_name(name: &str, srv: bool) -> Result<(), &'static str> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("an IP address, not a name: use `address` for it");
    }
    let host = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (srv && b == b'_'))
    };
    match !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
        true => Ok(()),
        false => Err("not a DNS name"),
    }
}

fn default_min_refresh() -> Duration {
    Duration::from_secs(5)
}
fn default_max_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_max_backends() -> usize {
    64
}
fn default_hold_empty() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports() {
        assert_eq!(
            name_and_port("api.internal:8443"),
            Ok(("api.internal", 8443))
        );
        assert!(
            name_and_port("api.internal")
                .unwrap_err()
                .contains("a port")
        );
        assert!(
            name_and_port("api.internal:0")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(
            name_and_port("10.0.0.1:80")
                .unwrap_err()
                .contains("use `address`")
        );
        assert!(
            name_and_port("a..b:80")
                .unwrap_err()
                .contains("not a DNS name")
        );
        assert!(
            name_and_port("*.x:80")
                .unwrap_err()
                .contains("not a DNS name")
        );
        assert!(dns_name("_api._tcp.internal", true).is_ok());
        assert!(dns_name("_api._tcp.internal", false).is_err());
    }
}
