//! Configurations written in code (the lab's tests, the benchmarks, the demo): a
//! constructor per section for its required keys, with every other key at its
//! default, chainable setters for the keys tests set most, and [`Config::to_toml`].
//! Keys without a setter are set with struct update syntax
//! (`Listener { max_per_source: Some(2), ..Listener::new(...) }`), so a new key
//! needs nothing here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::admin::AdminSection;
use super::autoblock::AutoblockSection;
use super::bgp::BgpSection;
use super::fleet_policy::{FleetPolicySection, FleetSection};
use super::schema::*;
use super::steering::SteeringSection;
use super::tls_version::TlsVersion;
use super::xdp::{ListEntryConfig, RateLimitConfig, XdpSection};

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    pub fn with_listener(mut self, listener: Listener) -> Config {
        self.listeners.push(listener);
        self
    }

    pub fn with_pool(mut self, pool: Pool) -> Config {
        self.pools.push(pool);
        self
    }

    pub fn with_xdp(mut self, xdp: XdpSection) -> Config {
        self.xdp = Some(xdp);
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Config {
        self.limits = limits;
        self
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Config {
        self.timeouts = timeouts;
        self
    }

    pub fn with_log(mut self, log: Log) -> Config {
        self.log = log;
        self
    }

    pub fn with_autoblock(mut self, autoblock: AutoblockSection) -> Config {
        self.autoblock = Some(autoblock);
        self
    }

    pub fn with_admin(mut self, admin: AdminSection) -> Config {
        self.admin = admin;
        self
    }

    pub fn with_bgp(mut self, bgp: BgpSection) -> Config {
        self.bgp = Some(bgp);
        self
    }

    pub fn with_fleet_policy(mut self, policy: FleetPolicySection) -> Config {
        let fleet = self.fleet.get_or_insert(FleetSection {
            policy: None,
            steering: None,
        });
        fleet.policy = Some(policy);
        self
    }

    pub fn with_steering(mut self, steering: SteeringSection) -> Config {
        let fleet = self.fleet.get_or_insert(FleetSection {
            policy: None,
            steering: None,
        });
        fleet.steering = Some(steering);
        self
    }

    /// The TOML text of this configuration, as the daemon reads it, with the keys
    /// that hold their default left out (so it reads like a hand-written file). A
    /// key is left out only when the text without it reads back as the same
    /// configuration; a configuration that does not validate is written whole.
    pub fn to_toml(&self) -> String {
        let full = toml::Table::try_from(self).expect("every configuration type serialises");
        let mut minimal = full.clone();
        for path in key_paths(&full) {
            let mut trial = minimal.clone();
            if remove_key(&mut trial, &path) && reads_back_as(&trial, &full) {
                minimal = trial;
            }
        }
        minimal.to_string()
    }
}

/// One step of a key path: a key of a table or an element of an array of tables.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every key path in `table`, deepest first (a section's keys before the section).
fn key_paths(table: &toml::Table) -> Vec<Vec<Step>> {
    fn walk(value: &toml::Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    at.push(Step::Key(k.clone()));
                    walk(v, at, out);
                    out.push(at.clone());
                    at.pop();
                }
            }
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                for (i, v) in items.iter().enumerate() {
                    at.push(Step::Index(i));
                    walk(v, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(
        &toml::Value::Table(table.clone()),
        &mut Vec::new(),
        &mut out,
    );
    out
}

/// Removes the key at `path`; false if it is not there.
fn remove_key(table: &mut toml::Table, path: &[Step]) -> bool {
    let Some((Step::Key(last), parents)) = path.split_last() else {
        return false;
    };
    let mut here = &mut *table;
    let mut steps = parents.iter().peekable();
    while let Some(step) = steps.next() {
        let Step::Key(key) = step else { return false };
        let mut value = match here.get_mut(key) {
            Some(v) => v,
            None => return false,
        };
        if let Some(Step::Index(i)) = steps.peek() {
            value = match value.as_array_mut().and_then(|a| a.get_mut(*i)) {
                Some(v) => v,
                None => return false,
            };
            steps.next();
        }
        here = match value.as_table_mut() {
            Some(t) => t,
            None => return false,
        };
    }
    here.remove(last).is_some()
}

/// `table` parses and validates into the configuration `full` was written from.
fn reads_back_as(table: &toml::Table, full: &toml::Table) -> bool {
    super::source::parse(&table.to_string())
        .ok()
        .and_then(|config| toml::Table::try_from(&config).ok())
        .is_some_and(|read| &read == full)
}

impl Listener {
    /// Plain TCP on `bind`, forwarding to `pool`.
    pub fn new(name: &str, bind: SocketAddr, pool: &str) -> Listener {
        Listener {
            name: name.into(),
            bind,
            pool: pool.into(),
            tls: None,
            routes: Vec::new(),
            max_connections: None,
            max_per_source: None,
            forwarding: Forwarding::default(),
            syn_cookies: SynCookieMode::default(),
            mss: None,
        }
    }

    pub fn tls(mut self, tls: ListenerTls) -> Listener {
        self.tls = Some(tls);
        self
    }

    pub fn route(mut self, route: Route) -> Listener {
        self.routes.push(route);
        self
    }

    pub fn syn_cookies(mut self, mode: SynCookieMode) -> Listener {
        self.syn_cookies = mode;
        self
    }

    pub fn forwarding(mut self, how: Forwarding) -> Listener {
        self.forwarding = how;
        self
    }

    pub fn max_connections(mut self, n: u32) -> Listener {
        self.max_connections = Some(n);
        self
    }

    pub fn max_per_source(mut self, n: u32) -> Listener {
        self.max_per_source = Some(n);
        self
    }
}

impl ListenerTls {
    /// TLS termination with these certificates (the first is the default).
    pub fn new(certificates: Vec<Certificate>) -> ListenerTls {
        ListenerTls {
            certificates,
            alpn: Vec::new(),
            min_version: TlsVersion::default(),
            session_tickets: default_true(),
            session_cache: default_session_cache(),
            handshake_timeout: default_handshake_timeout(),
            client_auth: None,
        }
    }

    pub fn alpn(mut self, protocols: &[&str]) -> ListenerTls {
        self.alpn = protocols.iter().map(|p| p.to_string()).collect();
        self
    }

    pub fn min_version(mut self, version: TlsVersion) -> ListenerTls {
        self.min_version = version;
        self
    }

    pub fn session_tickets(mut self, on: bool) -> ListenerTls {
        self.session_tickets = on;
        self
    }

    pub fn session_cache(mut self, sessions: usize) -> ListenerTls {
        self.session_cache = sessions;
        self
    }

    pub fn handshake_timeout(mut self, timeout: Duration) -> ListenerTls {
        self.handshake_timeout = timeout;
        self
    }

    pub fn client_auth(mut self, auth: ClientAuth) -> ListenerTls {
        self.client_auth = Some(auth);
        self
    }
}

impl Route {
    /// Clients asking for one of `sni` go to `pool` (TLS as the listener's default).
    pub fn new(sni: &[&str], pool: &str) -> Route {
        Route {
            name: None,
            sni: sni.iter().map(|n| n.to_string()).collect(),
            alpn: Vec::new(),
            pool: pool.into(),
            tls: None,
        }
    }

    pub fn passthrough(mut self) -> Route {
        self.tls = Some(RouteTls::Passthrough);
        self
    }

    pub fn terminate(mut self) -> Route {
        self.tls = Some(RouteTls::Terminate);
        self
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Route {
        self.alpn = protocols.iter().map(|p| p.to_string()).collect();
        self
    }
}

impl Certificate {
    /// A chain and its key, serving the names in the certificate.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Certificate {
        Certificate {
            cert: cert.into(),
            key: key.into(),
            names: Vec::new(),
            default: false,
            ocsp: None,
            client_auth: None,
        }
    }

    pub fn names(mut self, names: &[&str]) -> Certificate {
        self.names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    pub fn as_default(mut self) -> Certificate {
        self.default = true;
        self
    }

    pub fn ocsp(mut self, path: impl Into<PathBuf>) -> Certificate {
        self.ocsp = Some(path.into());
        self
    }
}

impl ClientAuth {
    /// Required client certificates chaining to `ca`.
    pub fn new(ca: impl Into<PathBuf>) -> ClientAuth {
        ClientAuth {
            ca: ca.into(),
            mode: ClientAuthMode::default(),
            crl: Vec::new(),
        }
    }
}

impl Pool {
    /// A pool of these backends, weight 1 each.
    pub fn new(name: &str, backends: impl IntoIterator<Item = SocketAddr>) -> Pool {
        Pool {
            name: name.into(),
            backends: backends.into_iter().map(BackendEntry::new).collect(),
            balance: Balance::default(),
            hash_key: HashKey::default(),
            slow_start: None,
            proxy_protocol: ProxyProtocol::default(),
            connect_timeout: default_connect_timeout(),
            max_attempts: default_max_attempts(),
            table_size: default_table_size(),
            health: Health::default(),
            tls: None,
            discovery: None,
        }
    }

    /// Sets backend `i`'s weight.
    pub fn weight(mut self, i: usize, weight: u32) -> Pool {
        self.backends[i].weight = weight;
        self
    }

    pub fn balance(mut self, balance: Balance) -> Pool {
        self.balance = balance;
        self
    }

    pub fn slow_start(mut self, ramp: Duration) -> Pool {
        self.slow_start = Some(ramp);
        self
    }

    pub fn hash_key(mut self, key: HashKey) -> Pool {
        self.hash_key = key;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Pool {
        self.connect_timeout = timeout;
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Pool {
        self.max_attempts = n;
        self
    }

    pub fn proxy_protocol(mut self, version: ProxyProtocol) -> Pool {
        self.proxy_protocol = version;
        self
    }

    pub fn tls(mut self, tls: super::backend_tls::BackendTls) -> Pool {
        self.tls = Some(tls);
        self
    }

    pub fn health(mut self, health: Health) -> Pool {
        self.health = health;
        self
    }
}

impl BackendEntry {
    pub fn new(address: SocketAddr) -> BackendEntry {
        BackendEntry {
            address: Some(address),
            name: None,
            weight: default_weight(),
        }
    }

    /// The A and AAAA records of `host_and_port` (`"api.internal:8443"`).
    pub fn named(host_and_port: &str) -> BackendEntry {
        BackendEntry {
            address: None,
            name: Some(host_and_port.into()),
            weight: default_weight(),
        }
    }
}

impl Health {
    /// No active checks (real connects still count).
    pub fn off() -> Health {
        Health {
            enabled: false,
            ..Health::default()
        }
    }

    /// Active checks every `interval`.
    pub fn every(interval: Duration, timeout: Duration, rise: u32, fall: u32) -> Health {
        Health {
            enabled: true,
            interval,
            timeout,
            rise,
            fall,
        }
    }
}

impl XdpSection {
    /// XDP on `interfaces` with its maps pinned under `pin_path`.
    pub fn on(interfaces: &[&str], pin_path: impl Into<PathBuf>) -> XdpSection {
        XdpSection {
            pin_path: pin_path.into(),
            ..XdpSection::for_interfaces(interfaces.iter().map(|i| i.to_string()).collect())
        }
    }

    pub fn rate_limit(mut self, limits: RateLimitConfig) -> XdpSection {
        self.rate_limit = limits;
        self
    }

    /// Every drop sampled, summed up in the log every `interval`.
    pub fn sample_every_drop(mut self, interval: Duration) -> XdpSection {
        self.drop_sample_rate = 1;
        self.drop_log_interval = interval;
        self
    }

    pub fn block(mut self, entry: ListEntryConfig) -> XdpSection {
        self.blocklist.push(entry);
        self
    }

    pub fn allow(mut self, entry: ListEntryConfig) -> XdpSection {
        self.allowlist.push(entry);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::parse;
    use super::super::xdp::ServiceFilterConfig;
    use super::super::{autoblock::AutoblockSection, bgp, fleet_policy};
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Every section, with keys off their defaults where the type allows it.
    fn everything() -> Config {
        let cert = Certificate::new("/etc/proxy/a.pem", "/etc/proxy/a.key")
            .names(&["a.example", "*.b.example"])
            .as_default();
        let tls = ListenerTls::new(vec![cert])
            .alpn(&["h2", "http/1.1"])
            .handshake_timeout(Duration::from_millis(1500))
            .client_auth(ClientAuth::new("/etc/proxy/ca.pem"));
        let mut c = Config::new()
            .with_listener(
                Listener {
                    max_per_source: Some(9),
                    ..Listener::new("web", addr("10.0.0.1:443"), "p")
                }
                .tls(tls)
                .syn_cookies(SynCookieMode::Auto),
            )
            .with_listener(Listener::new("plain", addr("[fd00::1]:80"), "p"))
            .with_pool(
                Pool::new("p", [addr("10.0.0.2:80"), addr("[fd00::2]:80")])
                    .weight(1, 7)
                    .proxy_protocol(ProxyProtocol::V2)
                    .health(Health::every(
                        Duration::from_secs(1),
                        Duration::from_millis(300),
                        1,
                        2,
                    )),
            )
            .with_pool(
                Pool::new("long", [addr("10.0.0.3:5432")])
                    .balance(Balance::LeastConnections)
                    .slow_start(Duration::from_secs(30)),
            )
            .with_xdp(
                XdpSection::on(&["eth0"], "/sys/fs/bpf/t")
                    .block(
                        ListEntryConfig::new("192.0.2.0/24".parse().unwrap())
                            .with_ttl(Duration::from_secs(60))
                            .with_reason("abuse"),
                    )
                    .allow(ListEntryConfig::new("10.9.0.0/16".parse().unwrap())),
            );
        let xdp = c.xdp.as_mut().unwrap();
        xdp.rate_limit.ports = vec![443];
        xdp.service_filter = Some(ServiceFilterConfig {
            allow: vec!["22/tcp".parse().unwrap()],
            addresses: vec!["10.0.0.1".parse().unwrap()],
        });
        c.autoblock = Some(AutoblockSection {
            new_connections: 50,
            ..AutoblockSection::default()
        });
        c.admin.metrics = None;
        c.bgp = Some(bgp::BgpSection {
            local_as: 65001,
            router_id: "10.0.0.1".parse().unwrap(),
            peers: vec![bgp::BgpPeer {
                address: "10.0.0.254".parse().unwrap(),
                asn: 65000,
            }],
            vips: vec![bgp::Vip {
                address: "192.0.2.10".parse().unwrap(),
                listeners: vec!["web".into()],
                min_healthy_backends: 1,
                steering: false,
            }],
            ..parse_bgp_defaults()
        });
        c = c.with_fleet_policy(fleet_policy::FleetPolicySection {
            node: Some("n1".into()),
            ..fleet_policy::FleetPolicySection::new(vec!["http://10.0.0.5:2379".into()])
        });
        c
    }

    fn parse_bgp_defaults() -> bgp::BgpSection {
        toml::from_str(
            "local_as = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\nas = 2\n\
             [[vip]]\naddress = \"192.0.2.1\"\nlisteners = []\n",
        )
        .unwrap()
    }

    /// What the lab writes is what the daemon reads: a configuration built in code
    /// survives writing and parsing unchanged (compared through its TOML text, which
    /// covers every key), and passes validation.
    #[test]
    fn written_configurations_read_back_unchanged() {
        let written = everything().to_toml();
        let read = parse(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(read.to_toml(), written);
        for key in [
            "max_per_source = 9",
            "syn_cookies = \"auto\"",
            "handshake_timeout = \"1s 500ms\"",
            "weight = 7",
            "proxy_protocol = \"v2\"",
            "metrics = \"off\"",
            "ttl = \"1m\"",
            "allow = [\"22/tcp\"]",
            "new_connections = 50",
            "balance = \"least_connections\"",
            "slow_start = \"30s\"",
        ] {
            assert!(written.contains(key), "{key} missing from:\n{written}");
        }
    }

    #[test]
    fn constructors_match_the_files_defaults() {
        let c = parse(
            "[[listener]]\nname = \"l\"\nbind = \"10.0.0.1:80\"\npool = \"p\"\n\
             [listener.tls]\ncertificates = [{ cert = \"c\", key = \"k\" }]\n\
             [[pool]]\nname = \"p\"\nbackends = [{ address = \"10.0.0.2:80\" }]\n",
        )
        .unwrap();
        let built = Config::new()
            .with_listener(
                Listener::new("l", addr("10.0.0.1:80"), "p")
                    .tls(ListenerTls::new(vec![Certificate::new("c", "k")])),
            )
            .with_pool(Pool::new("p", [addr("10.0.0.2:80")]));
        assert_eq!(built.to_toml(), c.to_toml());
        // Only what differs from the defaults is written.
        assert_eq!(
            built.to_toml(),
            "[[listener]]\nname = \"l\"\nbind = \"10.0.0.1:80\"\npool = \"p\"\n\n\
             [[listener.tls.certificates]]\ncert = \"c\"\nkey = \"k\"\n\n\
             [[pool]]\nname = \"p\"\n\n[[pool.backends]]\naddress = \"10.0.0.2:80\"\n"
        );
    }
}
