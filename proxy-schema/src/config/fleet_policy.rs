//! `[fleet.policy]`: block and allow entries shared by every node of a fleet through
//! etcd. Entries carry their TTL as an etcd lease, so they expire fleet-wide.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::error::{ConfigIssue, KeyPath};
use super::steering::SteeringSection;

/// `[fleet]`: what this node shares with the other nodes of its fleet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// `[fleet.policy]`: shared block and allow entries (absent: none), and the etcd
    /// store fleet membership (steering) uses too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<FleetPolicySection>,
    /// `[fleet.steering]`: connection steering settings for the VIPs with
    /// `steering = true` (absent: the defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steering: Option<SteeringSection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetPolicySection {
    /// etcd client URLs (`"http://10.0.0.5:2379"`; `https://` with `[fleet.policy.tls]`).
    /// At least one; the client spreads over them and fails over between them.
    pub endpoints: Vec<String>,
    /// Key prefix: every node with the same prefix is one fleet. Default "/proxy/".
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This node's name: the origin of the entries it publishes. Default: the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// etcd user (with `password_file`); absent: no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// File holding the etcd user's password (one line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// `[fleet.policy.tls]`: TLS to etcd (needed for `https://` endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTls>,
    /// Time allowed to connect to etcd and for one request. Default "2s".
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Entries kept to publish while etcd is unreachable (beyond: the oldest are
    /// dropped, counted). Default 100000.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

/// `[fleet.policy.tls]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// PEM file of the CA that signed etcd's server certificates. Required.
    pub ca: PathBuf,
    /// PEM client certificate (with `key`) when etcd asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Name to verify in etcd's certificate; default: the endpoint's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl FleetPolicySection {
    /// The etcd store at `endpoints`, every other key at its default.
    pub fn new(endpoints: Vec<String>) -> FleetPolicySection {
        FleetPolicySection {
            endpoints,
            prefix: default_prefix(),
            node: None,
            user: None,
            password_file: None,
            tls: None,
            timeout: default_timeout(),
            max_pending: default_max_pending(),
        }
    }

    /// The prefix with exactly one trailing `/`.
    pub fn key_prefix(&self) -> String {
        format!("{}/", self.prefix.trim_end_matches('/'))
    }

    /// The node name: configured, else the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "node".into())
        })
    }

    pub fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        let err = |key: &str, message: String| Err(ConfigIssue::new(at.key(key), message));
        if self.endpoints.is_empty() {
            return err(
                "endpoints",
                "at least one etcd endpoint, e.g. [\"http://10.0.0.5:2379\"]".into(),
            );
        }
        for e in &self.endpoints {
            let scheme_ok = match e.split_once("://") {
                Some(("http", rest)) | Some(("https", rest)) => !rest.is_empty(),
                _ => false,
            };
            if !scheme_ok {
                return err(
                    "endpoints",
                    format!("{e:?} is not an http:// or https:// URL"),
                );
            }
            if e.starts_with("https://") && self.tls.is_none() {
                return err(
                    "endpoints",
                    format!("{e:?} uses https: add [fleet.policy.tls] with the etcd CA"),
                );
            }
            if e.starts_with("http://") && self.tls.is_some() {
                return err(
                    "endpoints",
                    format!("{e:?} is plain http but [fleet.policy.tls] is set: use https://"),
                );
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.chars().any(char::is_whitespace) {
            return err(
                "prefix",
                format!("{:?} must start with / and have no spaces", self.prefix),
            );
        }
        let node = self.node_name();
        if !valid_node_name(&node) {
            return err("node", format!("{node:?}: use 1-64 of A-Z a-z 0-9 _ - ."));
        }
        if self.password_file.is_some() != self.user.is_some() {
            return err("user", "user and password_file go together".into());
        }
        if let Some(tls) = &self.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            return err("tls.cert", "cert and key go together".into());
        }
        if self.timeout.is_zero() {
            return err("timeout", "must be above 0".into());
        }
        if self.max_pending == 0 {
            return err("max_pending", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Node names appear in store values and metrics: a short safe alphabet.
pub fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn default_prefix() -> String {
    "/proxy/".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_max_pending() -> usize {
    100_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<FleetPolicySection, String> {
        let s: FleetPolicySection = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate(&KeyPath::root().key("fleet").key("policy"))
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn defaults_and_prefix() {
        let s = section("endpoints = [\"http://10.0.0.5:2379\"]\nnode = \"n1\"").unwrap();
        assert_eq!(s.key_prefix(), "/proxy/");
        assert_eq!(s.timeout, Duration::from_secs(2));
        let s =
            section("endpoints = [\"http://e:2379\"]\nnode = \"n1\"\nprefix = \"/a/b\"").unwrap();
        assert_eq!(s.key_prefix(), "/a/b/");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (text, needle) in [
            ("endpoints = []", "at least one etcd endpoint"),
            ("endpoints = [\"10.0.0.5:2379\"]", "not an http"),
            ("endpoints = [\"https://e:2379\"]", "add [fleet.policy.tls]"),
            (
                "endpoints = [\"http://e\"]\nprefix = \"proxy\"",
                "must start with /",
            ),
            ("endpoints = [\"http://e\"]\nnode = \"a b\"", "1-64 of"),
            ("endpoints = [\"http://e\"]\nuser = \"u\"", "go together"),
            ("endpoints = [\"http://e\"]\nmax_pending = 0", "at least 1"),
            ("endpoints = [\"http://e\"]\nendpiont = 1", "unknown field"),
        ] {
            let e = section(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
