//! Addresses and prefixes as the configuration and the CLI write them: a CIDR, or a
//! bare address meaning a single host (/32 or /128).

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

pub fn parse(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_are_hosts_and_prefixes_are_truncated() {
        assert_eq!(parse("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
        assert_eq!(parse(" 10.1.2.3/8 ").unwrap().to_string(), "10.0.0.0/8");
        let e = parse("10.0.0.0/33").unwrap_err();
        assert!(e.contains("examples"), "{e}");
    }
}
