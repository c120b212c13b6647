//! Configurations for tests, benchmarks and the demo: the product's own schema
//! (`proxy_schema::config`, with its constructors and `to_toml`), re-exported here
//! with the few helpers that turn lab things (address strings, certificate files)
//! into its values. A key added to the product is usable here at once.
//!
//! ```text
//! let toml = Config::new()
//!     .with_listener(Listener::new("web", addr("10.77.0.1:443"), "p").tls(tls(&cert)))
//!     .with_pool(Pool::new("p", addrs(&lab.backend_addrs())).health(Health::off()))
//!     .to_toml();
//! ```

use std::net::SocketAddr;

pub use proxy_schema::config::admin::AdminSection;
pub use proxy_schema::config::autoblock::AutoblockSection;
pub use proxy_schema::config::backend_tls::{BackendTls, TrustAnchors};
pub use proxy_schema::config::bgp::{BgpPeer, BgpSection, Vip};
pub use proxy_schema::config::discovery::Discovery;
pub use proxy_schema::config::fleet_policy::{EtcdTls, FleetPolicySection, FleetSection};
pub use proxy_schema::config::steering::SteeringSection;
pub use proxy_schema::config::xdp::{
    AttachMode, ListEntryConfig, PortProtocol, RateLimitConfig, ServiceFilterConfig,
    SynCookiesConfig, Transport, XdpSection,
};
pub use proxy_schema::config::{
    BackendEntry, Balance, Certificate, ClientAuth, ClientAuthMode, Config, Forwarding, HashKey,
    Health, Limits, Listener, ListenerTls, Log, Pool, ProxyProtocol, Route, RouteTls,
    SynCookieMode, Timeouts, TlsVersion,
};

/// `"10.77.0.1:443"` as an address; panics with the text on a typo.
pub fn addr(text: impl AsRef<str>) -> SocketAddr {
    let text = text.as_ref();
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not an ip:port address: {e}"))
}

/// Every address of `texts` (say, `lab.backend_addrs()`).
pub fn addrs<S: AsRef<str>>(texts: &[S]) -> Vec<SocketAddr> {
    texts.iter().map(addr).collect()
}

/// A list entry for `cidr` as the configuration writes it (`"10.0.0.0/8"`, or a
/// bare address for one host).
pub fn list_entry(cidr: &str) -> ListEntryConfig {
    ListEntryConfig::new(proxy_schema::config::cidr::parse(cidr).unwrap_or_else(|e| panic!("{e}")))
}

#[cfg(feature = "certs")]
pub use with_certs::*;

#[cfg(feature = "certs")]
mod with_certs {
    use super::{Certificate, ListenerTls};
    use crate::certs::CertFiles;

    /// The certificate in `files`, serving the names it holds.
    pub fn certificate(files: &CertFiles) -> Certificate {
        Certificate::new(&files.cert, &files.key)
    }

    /// TLS termination with the one certificate in `files`.
    pub fn tls(files: &CertFiles) -> ListenerTls {
        ListenerTls::new(vec![certificate(files)])
    }
}

/// `"200ms"`, `"5s"` as a duration (the configuration's syntax); panics on a typo.
pub fn dur(text: &str) -> std::time::Duration {
    proxy_schema::config::duration::parse(text).unwrap_or_else(|e| panic!("{e}"))
}
