//! Addresses and prefixes as the configuration and the CLI write them: a CIDR, or a
//! bare address meaning a single host (/32 or /128).

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serializer};

/// Parses `192.0.2.7`, `10.0.0.0/8` or `2001:db8::/32`. A prefix with host bits set
/// (`10.0.0.1/8`) is refused: it is ambiguous between the network and the host.
pub fn parse(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "{s:?} has host bits set: write {} for the network or {}/{} for the one address",
                net.trunc(),
                net.addr(),
                net.max_prefix_len()
            ));
        }
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| {
        format!(
            "{s:?} is not an IP address or CIDR (examples: 192.0.2.7, 10.0.0.0/8, 2001:db8::/32)"
        )
    })
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

pub fn serialize<S: Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&net.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_are_hosts_and_host_bits_are_refused() {
        assert_eq!(parse("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
        assert_eq!(parse(" 10.0.0.0/8 ").unwrap().to_string(), "10.0.0.0/8");
        let e = parse("10.1.2.3/8").unwrap_err();
        assert!(
            e.contains("write 10.0.0.0/8") && e.contains("10.1.2.3/32"),
            "{e}"
        );
        let e = parse("2001:db8::1/32").unwrap_err();
        assert!(e.contains("2001:db8::/32"), "{e}");
        let e = parse("10.0.0.0/33").unwrap_err();
        assert!(e.contains("examples"), "{e}");
    }
}
