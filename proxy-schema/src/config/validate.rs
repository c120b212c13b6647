//! Checks serde cannot make: ranges, cross references (a listener's pool), unique
//! names and binds, server names, Maglev table sizes. Each problem is a
//! [`ConfigIssue`] on the key it concerns.

use super::error::{ConfigIssue, KeyPath};
use super::schema::{
    Balance, Config, DEFAULT_TABLE_SIZE, HashKey, Listener, ListenerTls, MAX_WEIGHT, Pool, Route,
    RouteTls, SynCookieMode,
};

impl Config {
    /// Checks everything that does not need other files.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        let root = KeyPath::root();
        if self.listeners.is_empty() && self.xdp.is_none() {
            return Err(ConfigIssue::new(
                root.clone(),
                "nothing to run: add a [[listener]] (with its [[pool]]), or an [xdp] section \
                 for a kernel-only filter",
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let at = root.key("listener").index(i);
            check_name(&l.name).map_err(|m| ConfigIssue::new(at.key("name"), m))?;
            if l.bind.port() == 0 {
                return Err(ConfigIssue::new(
                    at.key("bind"),
                    format!(
                        "{}: port 0 would listen on a random port; give the port clients connect to",
                        l.bind
                    ),
                ));
            }
            if self.listeners[..i].iter().any(|o| o.name == l.name) {
                return Err(ConfigIssue::new(
                    at.key("name"),
                    format!(
                        "listener name {:?} is used twice; names must be unique",
                        l.name
                    ),
                ));
            }
            if self.listeners[..i].iter().any(|o| o.bind == l.bind) {
                return Err(ConfigIssue::new(
                    at.key("bind"),
                    format!("{} is bound by another listener", l.bind),
                ));
            }
            let Some(pool) = self.pool(&l.pool) else {
                let known: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
                return Err(ConfigIssue::new(
                    at.key("pool"),
                    format!("no [[pool]] named {:?} (pools: {known:?})", l.pool),
                ));
            };
            if pool.hash_key == HashKey::Sni && l.tls.is_none() && l.routes.is_empty() {
                return Err(ConfigIssue::new(
                    at.key("pool"),
                    format!(
                        "pool {:?} hashes on the SNI name, which only a TLS listener has; \
                         add [listener.tls] or use hash_key = \"client_ip\"",
                        pool.name
                    ),
                ));
            }
            for (key, value) in [
                ("max_connections", l.max_connections),
                ("max_per_source", l.max_per_source),
            ] {
                if value == Some(0) {
                    return Err(ConfigIssue::new(
                        at.key(key),
                        "must be at least 1 (remove the key for no limit)",
                    ));
                }
            }
            if let Some(tls) = &l.tls {
                tls.validate(&at.key("tls"), l.routes.is_empty())?;
            }
            self.validate_routes(l, &at)?;
            if l.syn_cookies != SynCookieMode::Off && self.xdp.is_none() {
                return Err(ConfigIssue::new(
                    at.key("syn_cookies"),
                    "SYN cookies are answered by the XDP program: add an [xdp] section \
                     (with the interface clients arrive on), or set syn_cookies = \"off\"",
                ));
            }
        }
        for (i, p) in self.pools.iter().enumerate() {
            p.validate(&root.key("pool").index(i))?;
            if self.pools[..i].iter().any(|o| o.name == p.name) {
                return Err(ConfigIssue::new(
                    root.key("pool").index(i).key("name"),
                    format!("pool name {:?} is used twice; names must be unique", p.name),
                ));
            }
        }
        if self.limits.max_connections == 0 {
            return Err(ConfigIssue::new(
                root.key("limits").key("max_connections"),
                "must be at least 1",
            ));
        }
        if self.timeouts.idle.is_zero() {
            return Err(ConfigIssue::new(
                root.key("timeouts").key("idle"),
                "must be above 0",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigIssue::new(
                root.key("log").key("level"),
                format!("invalid level {:?}: {e}", self.log.level),
            ));
        }
        if let Some(xdp) = &self.xdp {
            xdp.validate(&root.key("xdp"))?;
            if self.listeners.len() > proxy_common::MAX_LISTENERS as usize {
                return Err(ConfigIssue::new(
                    root.key("listener"),
                    format!(
                        "{} listeners: the XDP program keeps state for at most {}",
                        self.listeners.len(),
                        proxy_common::MAX_LISTENERS
                    ),
                ));
            }
        }
        if let Some(bgp) = &self.bgp {
            let names: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
            bgp.validate(&root.key("bgp"), &names)?;
        }
        if let Some(autoblock) = &self.autoblock {
            autoblock.validate(&root.key("autoblock"))?;
        }
        if let Some(policy) = self.fleet_policy() {
            policy.validate(&root.key("fleet").key("policy"))?;
            if self.xdp.is_none() {
                return Err(ConfigIssue::new(
                    root.key("fleet").key("policy"),
                    "shared entries are enforced by the XDP program: add an [xdp] section",
                ));
            }
        } else {
            self.validate_nothing_shared(&root)?;
        }
        self.validate_steering(&root)?;
        self.admin.validate(&root.key("admin"))
    }
}

impl Config {
    /// `steering = true` on a VIP needs the XDP program and the etcd store;
    /// `[fleet.steering]` needs a steered VIP; listeners' `mss` is a real segment size.
    fn validate_steering(&self, root: &KeyPath) -> Result<(), ConfigIssue> {
        for (i, l) in self.listeners.iter().enumerate() {
            if let Some(mss) = l.mss
                && !(536..=9000).contains(&mss)
            {
                return Err(ConfigIssue::new(
                    root.key("listener").index(i).key("mss"),
                    format!(
                        "{mss} is not a segment size: use 536 to 9000 (1420 for a steered VIP on a 1500-byte segment)"
                    ),
                ));
            }
        }
        let section = self.fleet.as_ref().and_then(|f| f.steering.as_ref());
        let steered = self
            .bgp
            .iter()
            .flat_map(|b| b.vips.iter().enumerate())
            .find(|(_, v)| v.steering);
        let Some((i, _)) = steered else {
            if section.is_some() {
                return Err(ConfigIssue::new(
                    root.key("fleet").key("steering"),
                    "no [[bgp.vip]] has steering = true: set it on the VIPs to steer, or remove this section",
                ));
            }
            return Ok(());
        };
        let at = root.key("bgp").key("vip").index(i).key("steering");
        if self.xdp.is_none() {
            return Err(ConfigIssue::new(
                at,
                "steering runs in the XDP program: add an [xdp] section (the interface \
                 the router and the other nodes reach this node on)",
            ));
        }
        if self.fleet_policy().is_none() {
            return Err(ConfigIssue::new(
                at,
                "the fleet's members and forwarding table live in its etcd store: add \
                 [fleet.policy] with its endpoints",
            ));
        }
        if let Some(s) = section {
            s.validate(&root.key("fleet").key("steering"))?;
        }
        Ok(())
    }
}

impl Config {
    /// Without `[fleet.policy]` nothing can be marked shared.
    fn validate_nothing_shared(&self, root: &KeyPath) -> Result<(), ConfigIssue> {
        if self.autoblock.as_ref().is_some_and(|a| a.share) {
            return Err(ConfigIssue::new(
                root.key("autoblock").key("share"),
                "share = true needs a [fleet.policy] section (the etcd store to share through)",
            ));
        }
        if let Some(xdp) = &self.xdp {
            for (list, entries) in [("allowlist", &xdp.allowlist), ("blocklist", &xdp.blocklist)] {
                if let Some(e) = entries.iter().find(|e| e.shared()) {
                    return Err(ConfigIssue::new(
                        root.key("xdp").key(list),
                        format!(
                            "{} is shared = true, which needs a [fleet.policy] section",
                            e.cidr()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// A listener's `[[listener.route]]`s: names, pools, TLS modes.
    fn validate_routes(&self, l: &Listener, at: &KeyPath) -> Result<(), ConfigIssue> {
        // (name, route, its ALPN protocols) of the routes before.
        let mut seen_names: Vec<(String, usize, Vec<String>)> = Vec::new();
        for (i, r) in l.routes.iter().enumerate() {
            let here = at.key("route").index(i);
            if let Some(name) = &r.name {
                check_name(name).map_err(|m| ConfigIssue::new(here.key("name"), m))?;
            }
            if l.routes[..i].iter().any(|o| o.name() == r.name()) {
                // A derived name comes from the first pattern: point there.
                let key = match r.name {
                    Some(_) => here.key("name"),
                    None => here.key("sni").index(0),
                };
                return Err(ConfigIssue::new(
                    key,
                    format!(
                        "route name {:?} is used twice on this listener (give one a `name`)",
                        r.name()
                    ),
                ));
            }
            if r.sni.is_empty() {
                return Err(ConfigIssue::new(
                    here.key("sni"),
                    "list the server names this route takes, e.g. [\"api.example.com\"]",
                ));
            }
            for (j, name) in r.sni.iter().enumerate() {
                if let Err(why) = check_server_name(name) {
                    return Err(ConfigIssue::new(
                        here.key("sni").index(j),
                        format!("{name:?}: {why}"),
                    ));
                }
                let lower = name.to_ascii_lowercase();
                let mut alpn = r.alpn.clone();
                alpn.sort();
                // An earlier route with the name takes every client asking for it,
                // unless it only takes other ALPN protocols.
                let shadowed = seen_names
                    .iter()
                    .find(|(n, _, a)| *n == lower && (a.is_empty() || *a == alpn));
                if let Some((_, other, _)) = shadowed {
                    return Err(ConfigIssue::new(
                        here.key("sni").index(j),
                        format!(
                            "{name:?} is also in route {other} of this listener, which takes \
                             every client asking for it: a name belongs to one route (two \
                             routes share a name only when the first names other ALPN protocols)"
                        ),
                    ));
                }
                seen_names.push((lower, i, alpn));
            }
            for (j, p) in r.alpn.iter().enumerate() {
                if p.is_empty() || p.len() > 255 {
                    return Err(ConfigIssue::new(
                        here.key("alpn").index(j),
                        "an ALPN protocol name has 1 to 255 bytes",
                    ));
                }
            }
            if self.pool(&r.pool).is_none() {
                let known: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
                return Err(ConfigIssue::new(
                    here.key("pool"),
                    format!("no [[pool]] named {:?} (pools: {known:?})", r.pool),
                ));
            }
            match l.route_tls(Some(r)) {
                RouteTls::Terminate if !l.terminates() => {
                    return Err(ConfigIssue::new(
                        here.key("tls"),
                        "\"terminate\" needs certificates: add them under [listener.tls], \
                         or pass this route through (tls = \"passthrough\")",
                    ));
                }
                RouteTls::Passthrough => self.check_passthrough(l, r, &here)?,
                RouteTls::Terminate => {}
            }
            if l.route_tls(Some(r)) == RouteTls::Passthrough {
                no_tls_in_tls(self, &r.pool, here.key("pool"))?;
            }
        }
        if !l.routes.is_empty() && l.route_tls(None) == RouteTls::Passthrough {
            no_tls_in_tls(self, &l.pool, at.key("pool"))?;
        }
        Ok(())
    }

    /// Client certificates are checked where TLS ends: a passthrough route must not
    /// take names whose clients the listener expects to check.
    fn check_passthrough(
        &self,
        l: &Listener,
        r: &Route,
        here: &KeyPath,
    ) -> Result<(), ConfigIssue> {
        let Some(tls) = &l.tls else {
            return Ok(());
        };
        if tls.client_auth.is_some() {
            return Err(ConfigIssue::new(
                here.key("tls"),
                format!(
                    "route {:?} passes TLS through, so the listener's client_auth cannot check \
                     its clients: put client_auth on the certificates that need it, or move the \
                     route to a listener without client_auth",
                    r.name()
                ),
            ));
        }
        for c in tls.certificates.iter().filter(|c| c.client_auth.is_some()) {
            if let Some(name) = c
                .names
                .iter()
                .find(|n| r.sni.iter().any(|s| s.eq_ignore_ascii_case(n)))
            {
                return Err(ConfigIssue::new(
                    here.key("sni"),
                    format!(
                        "{name:?} has a certificate with client_auth on this listener, but route \
                         {:?} passes its TLS through, where no client certificate is checked",
                        r.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A passthrough route forwards the client's own TLS: its pool cannot wrap it in
/// TLS again.
fn no_tls_in_tls(config: &Config, pool: &str, at: KeyPath) -> Result<(), ConfigIssue> {
    match config.pool(pool).is_some_and(|p| p.tls.is_some()) {
        false => Ok(()),
        true => Err(ConfigIssue::new(
            at,
            format!(
                "pool {pool:?} has [pool.tls], but this route passes the client's TLS through: \
                 terminate the route here (tls = \"terminate\") to re-encrypt, or use a pool \
                 without [pool.tls]"
            ),
        )),
    }
}

impl ListenerTls {
    /// `plain`: the listener has no routes (so it needs certificates).
    fn validate(&self, at: &KeyPath, plain: bool) -> Result<(), ConfigIssue> {
        if self.certificates.is_empty() && plain {
            return Err(ConfigIssue::new(
                at.key("certificates"),
                "a TLS listener needs at least one certificate",
            ));
        }
        if self.certificates.iter().filter(|c| c.default).count() > 1 {
            return Err(ConfigIssue::new(
                at.key("certificates"),
                "more than one certificate has default = true",
            ));
        }
        for (i, c) in self.certificates.iter().enumerate() {
            for (j, name) in c.names.iter().enumerate() {
                if let Err(why) = check_server_name(name) {
                    return Err(ConfigIssue::new(
                        at.key("certificates").index(i).key("names").index(j),
                        format!("{name:?}: {why}"),
                    ));
                }
            }
        }
        for (i, p) in self.alpn.iter().enumerate() {
            if p.is_empty() || p.len() > 255 {
                return Err(ConfigIssue::new(
                    at.key("alpn").index(i),
                    "an ALPN protocol name has 1 to 255 bytes",
                ));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigIssue::new(
                at.key("handshake_timeout"),
                "must be above 0",
            ));
        }
        Ok(())
    }
}

/// A DNS name, optionally with one leading `*.` label.
fn check_server_name(name: &str) -> Result<(), &'static str> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() || host.len() > 253 {
        return Err("not a DNS name");
    }
    for label in host.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(
                "not a DNS name (a wildcard is only allowed as the whole first label, \"*.example.com\")",
            );
        }
    }
    Ok(())
}

/// Listener and pool names appear in logs, metrics labels and the admin API: 1 to 64
/// of `A-Z a-z 0-9 _ - . :`.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} is not a valid name: use 1 to 64 of A-Z a-z 0-9 _ - . :"
        ));
    }
    Ok(())
}

impl Pool {
    fn validate(&self, at: &KeyPath) -> Result<(), ConfigIssue> {
        check_name(&self.name).map_err(|m| ConfigIssue::new(at.key("name"), m))?;
        let srv = self.discovery.as_ref().and_then(|d| d.srv.as_ref());
        if self.backends.is_empty() && srv.is_none() {
            return Err(ConfigIssue::new(
                at.key("backends"),
                "a pool needs at least one backend (an address, a DNS name, or [pool.discovery] srv)",
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            let here = at.key("backends").index(i);
            if b.weight > MAX_WEIGHT {
                return Err(ConfigIssue::new(
                    here.key("weight"),
                    format!("{} is above the maximum weight {MAX_WEIGHT}", b.weight),
                ));
            }
            match (&b.address, &b.name) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(ConfigIssue::new(
                        here,
                        "give a backend either an address (\"10.0.0.5:443\") or a DNS name \
                         (name = \"api.internal:443\")",
                    ));
                }
                (Some(address), None) => {
                    if address.port() == 0 || address.ip().is_unspecified() {
                        return Err(ConfigIssue::new(
                            here.key("address"),
                            format!(
                                "{address} is not a backend address: give the backend's own IP \
                                 and port"
                            ),
                        ));
                    }
                    if self.backends[..i].iter().any(|o| o.address == b.address) {
                        return Err(ConfigIssue::new(
                            here.key("address"),
                            format!("{address} is listed twice in this pool"),
                        ));
                    }
                }
                (None, Some(name)) => {
                    super::discovery::name_and_port(name)
                        .map_err(|e| ConfigIssue::new(here.key("name"), e))?;
                    if self.backends[..i].iter().any(|o| o.name == b.name) {
                        return Err(ConfigIssue::new(
                            here.key("name"),
                            format!("{name} is listed twice in this pool"),
                        ));
                    }
                }
            }
        }
        let dns = self.backends.iter().any(|b| b.name.is_some()) || srv.is_some();
        if !dns && self.backends.iter().all(|b| b.weight == 0) {
            return Err(ConfigIssue::new(
                at.key("backends"),
                "every backend has weight 0; at least one must take connections",
            ));
        }
        if let Some(d) = &self.discovery {
            d.validate(&at.key("discovery"))?;
        }
        // The backends known now: DNS adds some at run time (for Maglev, at most a
        // tenth of the table; more are left out, logged).
        let known = self.backends.iter().filter(|b| b.address.is_some()).count();
        self.validate_balance(at, known)?;
        if self.max_attempts == 0 {
            return Err(ConfigIssue::new(
                at.key("max_attempts"),
                "must be at least 1",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigIssue::new(
                at.key("connect_timeout"),
                "must be above 0",
            ));
        }
        let h = &self.health;
        let hat = at.key("health");
        if h.interval.is_zero() || h.timeout.is_zero() {
            return Err(ConfigIssue::new(
                hat,
                "interval and timeout must be above 0",
            ));
        }
        if h.rise == 0 || h.fall == 0 {
            return Err(ConfigIssue::new(hat, "rise and fall must be at least 1"));
        }
        if let Some(tls) = &self.tls {
            tls.validate(&at.key("tls"))?;
        }
        Ok(())
    }
}

impl Pool {
    /// `balance` and the keys only one algorithm reads.
    fn validate_balance(&self, at: &KeyPath, backends: usize) -> Result<(), ConfigIssue> {
        if self.balance == Balance::Maglev {
            if let Err(e) = check_table_size(self.table_size, backends) {
                return Err(ConfigIssue::new(at.key("table_size"), e));
            }
            if self.slow_start.is_some() {
                return Err(ConfigIssue::new(
                    at.key("slow_start"),
                    "slow_start needs a balance that follows weights connection by connection \
                     (\"least_connections\", \"random_two\" or \"round_robin\"): with \"maglev\" \
                     each step of the ramp would move clients between backends; remove slow_start \
                     or change balance",
                ));
            }
            return Ok(());
        }
        let name = self.balance.name();
        if self.hash_key != HashKey::default() {
            return Err(ConfigIssue::new(
                at.key("hash_key"),
                format!(
                    "hash_key is Maglev's key and balance = \"{name}\" does not hash: remove \
                     hash_key, or use balance = \"maglev\""
                ),
            ));
        }
        if self.table_size != DEFAULT_TABLE_SIZE {
            return Err(ConfigIssue::new(
                at.key("table_size"),
                format!(
                    "table_size is the size of Maglev's table and balance = \"{name}\" has \
                     none: remove table_size, or use balance = \"maglev\""
                ),
            ));
        }
        if self.slow_start.is_some_and(|d| d.is_zero()) {
            return Err(ConfigIssue::new(
                at.key("slow_start"),
                "must be above 0 (remove the key for no ramp)",
            ));
        }
        Ok(())
    }
}

/// Maglev needs a prime table size.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

fn check_table_size(size: u32, backends: usize) -> Result<(), String> {
    if !is_prime(size) {
        return Err(format!(
            "{size} is not prime; Maglev needs a prime table size (default 65537)"
        ));
    }
    if (size as usize) < backends.saturating_mul(10) {
        return Err(format!(
            "{size} is too small for {backends} backends; use a prime of at least 10 × the backends (100 × keeps shares within 1%)"
        ));
    }
    Ok(())
}
