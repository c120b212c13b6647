//! A listener's SNI routes: which pool a connection goes to, and whether its TLS
//! ends here or passes through, by the name the client asks for (and its ALPN).
//! Built at each (re)load from `[[listener.route]]`; a connection keeps the routes
//! it was accepted with.

use std::sync::Arc;

use super::balance::Pool;
use crate::api::RouteStats;
use crate::config::{self, RouteTls};
use crate::metrics::{Metrics, RouteMetrics};

/// The name of the default route (the listener's own `pool`) in metrics and the API.
pub const DEFAULT_ROUTE: &str = "default";

/// One route, ready to use.
pub struct Route {
    pub name: String,
    pub pool: Arc<Pool>,
    pub mode: RouteTls,
    names: Vec<NamePattern>,
    alpn: Vec<Vec<u8>>,
    pub metrics: RouteMetrics,
    /// The configured patterns and protocols, for the API.
    config: (Vec<String>, Vec<String>),
}

impl Route {
    pub fn stats(&self) -> RouteStats {
        let (connections, bytes_upstream, bytes_downstream, no_backend) = self.metrics.counts();
        RouteStats {
            name: self.name.clone(),
            pool: self.pool.name().to_owned(),
            tls: self.mode.name().to_owned(),
            sni: self.config.0.clone(),
            alpn: self.config.1.clone(),
            connections,
            bytes_upstream,
            bytes_downstream,
            no_backend,
        }
    }
}

/// A server name pattern: exact, or `*.` and a suffix (one label).
enum NamePattern {
    Exact(String),
    /// The suffix with its leading dot (`".example.org"`).
    Wildcard(String),
}

impl NamePattern {
    fn new(pattern: &str) -> NamePattern {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('*') {
            Some(suffix) => NamePattern::Wildcard(suffix.to_owned()),
            None => NamePattern::Exact(pattern),
        }
    }

    /// `name` is lower case without a trailing dot.
    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(exact) => name == exact,
            NamePattern::Wildcard(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

/// Every route of a listener, in order, and the default.
pub struct Routes {
    routes: Vec<Route>,
    pub default: Route,
    /// Some route passes TLS through: every ClientHello is read before any TLS.
    pub reads_hello: bool,
}

impl Routes {
    /// The routes of `listener`; `pools` holds every pool of the configuration.
    /// `None` for a listener without routes.
    pub fn build(
        listener: &config::Listener,
        pool_of: impl Fn(&str) -> Arc<Pool>,
        metrics: &Metrics,
    ) -> Option<Routes> {
        if listener.routes.is_empty() {
            return None;
        }
        let route = |name: &str, pool: &str, mode, names: &[String], alpn: &[String]| Route {
            name: name.to_owned(),
            pool: pool_of(pool),
            mode,
            names: names.iter().map(|n| NamePattern::new(n)).collect(),
            alpn: alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            metrics: metrics.route(&listener.name, name),
            config: (names.to_vec(), alpn.to_vec()),
        };
        let routes: Vec<Route> = listener
            .routes
            .iter()
            .map(|r| {
                route(
                    r.name(),
                    &r.pool,
                    listener.route_tls(Some(r)),
                    &r.sni,
                    &r.alpn,
                )
            })
            .collect();
        let default = route(
            DEFAULT_ROUTE,
            &listener.pool,
            listener.route_tls(None),
            &[],
            &[],
        );
        let reads_hello = routes
            .iter()
            .chain([&default])
            .any(|r| r.mode == RouteTls::Passthrough);
        Some(Routes {
            routes,
            default,
            reads_hello,
        })
    }

    /// The route for a ClientHello asking for `server_name` and offering `alpn`.
    pub fn for_hello(&self, server_name: Option<&str>, alpn: &[Vec<u8>]) -> &Route {
        self.find(server_name, |r| {
            r.alpn.is_empty() || alpn.iter().any(|p| r.alpn.contains(p))
        })
    }

    /// The route of a terminated connection, by the name and ALPN protocol its
    /// handshake settled on (passthrough routes are not candidates any more).
    pub fn for_terminated(&self, server_name: Option<&str>, alpn: Option<&[u8]>) -> &Route {
        self.find(server_name, |r| {
            r.mode == RouteTls::Terminate
                && (r.alpn.is_empty() || alpn.is_some_and(|p| r.alpn.iter().any(|a| a == p)))
        })
    }

    fn find(&self, server_name: Option<&str>, also: impl Fn(&Route) -> bool) -> &Route {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.routes
            .iter()
            .find(|r| r.names.iter().any(|n| n.matches(&name)) && also(r))
            .unwrap_or(&self.default)
    }

    /// Every route, the default last.
    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().chain([&self.default])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let config = crate::config::parse(
            r#"
[[listener]]
name = "edge"
bind = "127.0.0.1:8443"
pool = "fallback"
[listener.tls]
certificates = [{ cert = "a.pem", key = "a.key" }]
[[listener.route]]
sni = ["api.example.com"]
alpn = ["h2"]
pool = "api-h2"
[[listener.route]]
name = "api"
sni = ["API.example.com", "*.example.org"]
pool = "api"
[[listener.route]]
sni = ["pass.example.net"]
pool = "pass"
tls = "passthrough"
[[pool]]
name = "fallback"
backends = [{ address = "10.0.0.1:80" }]
[[pool]]
name = "api-h2"
backends = [{ address = "10.0.0.2:80" }]
[[pool]]
name = "api"
backends = [{ address = "10.0.0.3:80" }]
[[pool]]
name = "pass"
backends = [{ address = "10.0.0.4:443" }]
"#,
        );
        let mut config = config.unwrap_or_else(|e| panic!("{e}"));
        let metrics = Metrics::new();
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| Arc::new(Pool::build(p, None, &[], &metrics).unwrap()))
            .collect();
        let pool_of = |name: &str| pools.iter().find(|p| p.name() == name).unwrap().clone();
        let listener = config.listeners.remove(0);
        Routes::build(&listener, pool_of, &metrics).unwrap()
    }

    #[test]
    fn names_alpn_wildcards_and_the_default() {
        let r = routes();
        let h2 = [b"h2".to_vec(), b"http/1.1".to_vec()];
        let http1 = [b"http/1.1".to_vec()];
        let hello = |name: Option<&str>, alpn: &[Vec<u8>]| r.for_hello(name, alpn).name.clone();
        assert_eq!(hello(Some("api.example.com"), &h2), "api.example.com");
        assert_eq!(hello(Some("Api.Example.COM."), &http1), "api");
        assert_eq!(hello(Some("x.example.org"), &[]), "api");
        // A wildcard covers exactly one label.
        assert_eq!(hello(Some("a.b.example.org"), &[]), DEFAULT_ROUTE);
        assert_eq!(hello(Some("example.org"), &[]), DEFAULT_ROUTE);
        assert_eq!(hello(Some("pass.example.net"), &[]), "pass.example.net");
        assert_eq!(hello(None, &h2), DEFAULT_ROUTE);
        assert!(r.reads_hello, "a passthrough route reads every ClientHello");
        // After termination: the negotiated protocol decides, passthrough is out.
        let done = |name, alpn| r.for_terminated(name, alpn).name.clone();
        assert_eq!(
            done(Some("api.example.com"), Some(&b"h2"[..])),
            "api.example.com"
        );
        assert_eq!(done(Some("api.example.com"), None), "api");
        assert_eq!(done(Some("pass.example.net"), None), DEFAULT_ROUTE);
        assert_eq!(r.default.mode, RouteTls::Terminate);
    }
}
