//! DNS answers made backends: the checks a record must pass before the proxy
//! connects to what it names. An address must be one a backend can have (not
//! unspecified, multicast or broadcast), an SRV record a real target (not `.`, port
//! not 0) of the lowest priority, its weight within the pool's bounds.

use std::net::{IpAddr, SocketAddr};

use super::state::Found;
use crate::config::MAX_WEIGHT;

/// One SRV record, as the resolver gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host (`.` means "no service here").
    pub target: String,
}

/// An address a backend can have.
pub fn usable(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !(ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()))
}

/// The backends of host `host`: each usable address at `port`, with `weight`.
pub fn from_addresses(
    record: &str,
    host: &str,
    ips: &[IpAddr],
    port: u16,
    weight: u32,
) -> Vec<Found> {
    let host = host.trim_end_matches('.');
    ips.iter()
        .copied()
        .filter(|&ip| usable(ip))
        .map(|ip| Found {
            address: SocketAddr::new(ip.to_canonical(), port),
            weight,
            record: record.to_owned(),
            host: host.to_owned(),
        })
        .collect()
}

/// The targets worth using: those of the lowest priority with a real target and
/// port (RFC 2782: higher priorities are fallbacks, `.` says no service).
pub fn usable_srv(records: &[Srv]) -> Vec<&Srv> {
    let real = |r: &&Srv| r.port != 0 && r.target != "." && !r.target.is_empty();
    let best = records.iter().filter(real).map(|r| r.priority).min();
    records
        .iter()
        .filter(real)
        .filter(|r| Some(r.priority) == best)
        .collect()
}

/// A target's backends: each usable address at the record's port. SRV weights are
/// relative shares (0 = "very small"): 0 becomes 1, above the pool's maximum is cut.
pub fn from_srv(record: &str, srv: &Srv, ips: &[IpAddr]) -> Vec<Found> {
    let weight = u32::from(srv.weight).clamp(1, MAX_WEIGHT);
    from_addresses(record, &srv.target, ips, srv.port, weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn only_addresses_a_backend_can_have() {
        let ips: Vec<IpAddr> = [
            "10.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "ff02::1",
            "::ffff:10.0.0.2",
            "fd00::3",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let found = from_addresses("A/AAAA api:80", "api", &ips, 80, 3);
        let addresses: Vec<String> = found.iter().map(|f| f.address.to_string()).collect();
        assert_eq!(addresses, ["10.0.0.1:80", "10.0.0.2:80", "[fd00::3]:80"]);
        assert!(found.iter().all(|f| f.weight == 3));
    }

    #[test]
    fn srv_lowest_priority_real_targets_bounded_weights() {
        let records = [
            srv(20, 5, 8443, "backup.internal."),
            srv(10, 0, 8443, "a.internal."),
            srv(10, 60000, 8443, "b.internal."),
            srv(10, 5, 0, "c.internal."),
            srv(5, 5, 8443, "."),
        ];
        let usable: Vec<&str> = usable_srv(&records)
            .iter()
            .map(|r| r.target.as_str())
            .collect();
        assert_eq!(usable, ["a.internal.", "b.internal."]);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(from_srv("SRV x", &records[1], &[ip])[0].weight, 1);
        assert_eq!(from_srv("SRV x", &records[2], &[ip])[0].weight, MAX_WEIGHT);
        assert!(usable_srv(&[srv(0, 1, 0, "a.")]).is_empty());
    }
}
