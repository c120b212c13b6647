//! How shared entries look in etcd. One key per list and prefix:
//! `<prefix>entries/<block|allow>/<cidr with / as _>`, e.g.
//! `/proxy/entries/block/203.0.113.0_24`; the value is JSON ([`SharedValue`]). An
//! entry with a TTL is attached to an etcd lease of that TTL, so etcd deletes it
//! fleet-wide when it runs out. Anything else under the prefix is not ours to read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::api::List;
use crate::config::fleet_policy::valid_node_name;

/// Longest reason text accepted from the store.
const MAX_REASON: usize = 200;

/// Who made a shared entry on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `proxy block add --fleet`
    Manual,
    /// The auto-blocker with `[autoblock] share = true`.
    Auto,
    /// A config list entry with `shared = true`.
    Config,
}

/// The value stored under an entry's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedValue {
    pub cidr: IpNet,
    pub reason: String,
    /// The node that published it.
    pub origin: String,
    pub source: Source,
    pub created_unix_ms: u64,
    /// Lifetime from `created_unix_ms`; absent: permanent.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// A shared entry as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    pub list: List,
    pub value: SharedValue,
}

impl SharedValue {
    /// Time left at `now_ms`: `Some(None)` permanent, `None` already expired.
    pub fn remaining(&self, now_ms: u64) -> Option<Option<Duration>> {
        match self.ttl_ms {
            None => Some(None),
            Some(ttl) => {
                let end = self.created_unix_ms.saturating_add(ttl);
                (end > now_ms).then(|| Some(Duration::from_millis(end - now_ms)))
            }
        }
    }

    /// The reason as the kernel entry shows it: the origin node first.
    pub fn kernel_reason(&self) -> String {
        format!("{}: {}", self.origin, self.reason)
    }
}

/// The directory of entries under the fleet's prefix.
pub fn entries_prefix(prefix: &str) -> String {
    format!("{prefix}entries/")
}

/// The key of (list, cidr).
pub fn key(prefix: &str, list: List, cidr: IpNet) -> String {
    format!(
        "{}{}/{}",
        entries_prefix(prefix),
        list_name(list),
        cidr.trunc().to_string().replace('/', "_")
    )
}

fn list_name(list: List) -> &'static str {
    match list {
        List::Block => "block",
        List::Allow => "allow",
    }
}

/// Parses a key back into (list, cidr).
pub fn parse_key(prefix: &str, key: &[u8]) -> Result<(List, IpNet), String> {
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
    let rest = key
        .strip_prefix(&entries_prefix(prefix))
        .ok_or_else(|| format!("key is not under {}", entries_prefix(prefix)))?;
    let (list, cidr) = rest
        .split_once('/')
        .ok_or_else(|| "key has no <list>/<cidr> part".to_string())?;
    let list = match list {
        "block" => List::Block,
        "allow" => List::Allow,
        other => return Err(format!("unknown list {other:?} (block or allow)")),
    };
    let net: IpNet = cidr
        .replacen('_', "/", 1)
        .parse()
        .map_err(|_| format!("{cidr:?} is not a prefix like 10.0.0.0_24"))?;
    if net != net.trunc() {
        return Err(format!("{net} has host bits set"));
    }
    // One key per prefix: "2001:DB8::_32" and "2001:db8::_32" must not both exist.
    let canonical = net.to_string().replace('/', "_");
    if cidr != canonical {
        return Err(format!(
            "{cidr:?} is not written canonically (write {canonical})"
        ));
    }
    Ok((list, net))
}

/// Parses and checks one stored entry; the error says what is wrong with it.
pub fn parse_entry(prefix: &str, key: &[u8], value: &[u8]) -> Result<SharedEntry, String> {
    let (list, cidr) = parse_key(prefix, key)?;
    let value: SharedValue =
        serde_json::from_slice(value).map_err(|e| format!("value is not a shared entry: {e}"))?;
    if value.cidr != cidr {
        return Err(format!(
            "value is for {} but the key says {cidr}",
            value.cidr
        ));
    }
    if !valid_node_name(&value.origin) {
        return Err(format!("origin {:?} is not a node name", value.origin));
    }
    if value.reason.len() > MAX_REASON {
        return Err(format!("reason is over {MAX_REASON} bytes"));
    }
    if value.ttl_ms == Some(0) {
        return Err("ttl_ms is 0".into());
    }
    Ok(SharedEntry { list, value })
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(cidr: &str) -> SharedValue {
        SharedValue {
            cidr: cidr.parse().unwrap(),
            reason: "junk TLS".into(),
            origin: "node1".into(),
            source: Source::Auto,
            created_unix_ms: 1_000,
            ttl_ms: Some(3_000),
        }
    }

    #[test]
    fn keys_round_trip_for_both_families() {
        for (list, cidr) in [
            (List::Block, "203.0.113.0/24"),
            (List::Allow, "10.1.2.3/32"),
            (List::Block, "2001:db8::/64"),
        ] {
            let net: IpNet = cidr.parse().unwrap();
            let k = key("/proxy/", list, net);
            assert_eq!(parse_key("/proxy/", k.as_bytes()).unwrap(), (list, net));
        }
        assert_eq!(
            key("/p/", List::Block, "10.0.0.0/8".parse().unwrap()),
            "/p/entries/block/10.0.0.0_8"
        );
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        let good = serde_json::to_vec(&value("10.0.0.0/8")).unwrap();
        let k = b"/proxy/entries/block/10.0.0.0_8";
        assert!(parse_entry("/proxy/", k, &good).is_ok());
        for (key, val, needle) in [
            (
                &b"/proxy/entries/block/10.0.0.0_8"[..],
                &b"{not json"[..],
                "not a shared entry",
            ),
            (b"/proxy/entries/deny/10.0.0.0_8", &good[..], "unknown list"),
            (
                b"/proxy/entries/block/10.0.0.300_8",
                &good[..],
                "is not a prefix",
            ),
            (b"/proxy/entries/block/10.0.0.1_8", &good[..], "host bits"),
            (b"/proxy/entries/block/10.0.0.0_16", &good[..], "key says"),
            (b"/proxy/entries/block", &good[..], "no <list>/<cidr>"),
            (
                b"/proxy/entries/block/2001:DB8::_32",
                &good[..],
                "canonically",
            ),
            (b"/other/entries/block/10.0.0.0_8", &good[..], "not under"),
            (&[0xff, 0xfe][..], &good[..], "not UTF-8"),
        ] {
            let e = parse_entry("/proxy/", key, val).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        let mut v = value("10.0.0.0/8");
        v.origin = "a b".into();
        let e = parse_entry("/proxy/", k, &serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.contains("not a node name"));
    }

    #[test]
    fn remaining_time() {
        let v = value("10.0.0.0/8");
        assert_eq!(v.remaining(1_500), Some(Some(Duration::from_millis(2_500))));
        assert_eq!(v.remaining(4_000), None);
        let permanent = SharedValue { ttl_ms: None, ..v };
        assert_eq!(permanent.remaining(u64::MAX), Some(None));
    }
}
