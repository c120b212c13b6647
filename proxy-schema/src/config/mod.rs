//! The TOML configuration. Every field is documented; unknown keys are errors.
//!
//! docs/configuration.md's reference (checked against this schema by
//! tests/reference.rs) and the doc comments in `schema.rs` give every key with its
//! default. Errors name the file, the line, the key and what is wrong:
//! parse errors come from toml's spans, later checks (cross references, certificate
//! files) carry a [`KeyPath`] that [`Config::locate`] turns back into a line.
//!
//! - `schema.rs`: sections, keys, defaults; `validate.rs`: checks serde cannot make;
//! - `source.rs`: reading and parsing; `origin.rs`: the text and positions in it;
//!   `error.rs`: errors and key paths;
//! - [`duration`]: the one duration syntax; [`cidr`]: addresses and prefixes;
//! - [`xdp`], [`autoblock`], [`admin`], [`bgp`], [`fleet_policy`], [`steering`]: those
//!   sections.

pub mod admin;
pub mod autoblock;
pub mod backend_tls;
pub mod bgp;
mod build;
pub mod cidr;
pub mod discovery;
pub mod duration;
mod error;
pub mod fleet_policy;
mod origin;
mod schema;
mod source;
pub mod steering;
mod tls_version;
mod validate;
pub mod xdp;

pub use self::error::{ConfigError, ConfigIssue, KeyPath};
pub use self::origin::Origin;
pub use self::schema::*;
pub use self::source::{load, parse};
pub use self::tls_version::TlsVersion;
pub use self::validate::is_prime;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GOOD: &str = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:8443"
pool = "app"
[listener.tls]
certificates = [{ cert = "a.pem", key = "a.key" }]

[[pool]]
name = "app"
backends = [{ address = "10.0.0.1:80" }, { address = "[fd00::2]:80", weight = 3 }]
"#;

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err()
    }

    #[test]
    fn defaults_are_filled_in() {
        let c = parse(GOOD).unwrap();
        let tls = c.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.min_version, TlsVersion::V1_2);
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
        assert!(tls.session_tickets);
        let pool = &c.pools[0];
        assert_eq!(pool.backends[0].weight, 1);
        assert_eq!(pool.backends[1].weight, 3);
        assert_eq!(pool.hash_key, HashKey::ClientIp);
        assert_eq!(pool.table_size, 65_537);
        assert_eq!(pool.max_attempts, 3);
        assert_eq!(pool.health.fall, 3);
        assert_eq!(c.limits.max_connections, 10_000);
        assert_eq!(c.timeouts.drain, Duration::from_secs(30));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = GOOD.replace("pool = \"app\"\n", "pool = \"app\"\nmax_conns = 5\n");
        let e = error_of(&text);
        assert!(
            e.starts_with("<config>:6:1: `listener[0].max_conns`:"),
            "{e}"
        );
        assert!(e.contains("unknown field `max_conns`"), "{e}");
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let text = GOOD.replace(
            "[listener.tls]\n",
            "[listener.tls]\nmin_version = \"1.1\"\n",
        );
        let e = error_of(&text);
        assert!(e.starts_with("<config>:7:"), "{e}");
        assert!(e.contains("`listener[0].tls.min_version`"), "{e}");
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let text = GOOD.replace(
            "[listener.tls]\n",
            "[listener.tls]\nhandshake_timeout = \"ten\"\n",
        );
        let e = error_of(&text);
        assert!(e.contains("invalid duration \"ten\""), "{e}");
        assert!(e.contains("`listener[0].tls.handshake_timeout`"), "{e}");
    }

    #[test]
    fn unknown_pool_is_located() {
        let e = error_of(&GOOD.replace("pool = \"app\"", "pool = \"nope\""));
        assert!(
            e.starts_with("<config>:5:1: `listener[0].pool`: no [[pool]] named \"nope\""),
            "{e}"
        );
    }

    #[test]
    fn array_items_are_located() {
        let e = error_of(&GOOD.replace("weight = 3", "weight = 3000"));
        assert!(e.starts_with("<config>:11:"), "{e}");
        assert!(
            e.contains("`pool[0].backends[1].weight`: 3000 is above"),
            "{e}"
        );
    }

    #[test]
    fn table_size_must_be_prime() {
        let text = GOOD.replace("name = \"app\"\n", "name = \"app\"\ntable_size = 65536\n");
        let e = error_of(&text);
        assert!(
            e.contains("`pool[0].table_size`: 65536 is not prime"),
            "{e}"
        );
    }

    #[test]
    fn balance_and_its_keys() {
        let with =
            |keys: &str| GOOD.replace("name = \"app\"\n", &format!("name = \"app\"\n{keys}\n"));
        assert_eq!(parse(GOOD).unwrap().pools[0].balance, Balance::Maglev);
        let c = parse(&with(
            "balance = \"least_connections\"\nslow_start = \"30s\"",
        ))
        .unwrap();
        assert_eq!(c.pools[0].balance, Balance::LeastConnections);
        assert_eq!(c.pools[0].slow_start, Some(Duration::from_secs(30)));
        for b in Balance::ALL {
            let c = parse(&with(&format!("balance = \"{}\"", b.name()))).unwrap();
            assert_eq!(c.pools[0].balance, b);
        }
        let e = error_of(&with("balance = \"leastconn\""));
        assert!(
            e.contains("`pool[0].balance`") && e.contains("least_connections"),
            "{e}"
        );
        let e = error_of(&with("slow_start = \"30s\""));
        assert!(
            e.contains("`pool[0].slow_start`") && e.contains("maglev"),
            "{e}"
        );
        let e = error_of(&with(
            "balance = \"round_robin\"\nhash_key = \"client_ip_port\"",
        ));
        assert!(
            e.contains("`pool[0].hash_key`") && e.contains("remove"),
            "{e}"
        );
        let e = error_of(&with("balance = \"random_two\"\ntable_size = 101"));
        assert!(e.contains("`pool[0].table_size`"), "{e}");
        let e = error_of(&with("balance = \"random_two\"\nslow_start = \"0s\""));
        assert!(e.contains("`pool[0].slow_start`: must be above 0"), "{e}");
    }

    #[test]
    fn wildcard_only_as_first_label() {
        let text = GOOD.replace("key = \"a.key\"", "key = \"a.key\", names = [\"a.*.com\"]");
        let e = error_of(&text);
        assert!(
            e.contains("`listener[0].tls.certificates[0].names[0]`"),
            "{e}"
        );
    }

    #[test]
    fn sni_hash_needs_tls() {
        let text = GOOD
            .replace(
                "[listener.tls]\ncertificates = [{ cert = \"a.pem\", key = \"a.key\" }]\n",
                "",
            )
            .replace("name = \"app\"\n", "name = \"app\"\nhash_key = \"sni\"\n");
        assert!(error_of(&text).contains("only a TLS listener has"));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = error_of("[[listener]\nname = 1");
        assert!(e.starts_with("<config>:1:"), "{e}");
    }

    #[test]
    fn a_file_that_runs_nothing_is_refused() {
        let e = error_of("");
        assert!(e.contains("nothing to run: add a [[listener]]"), "{e}");
        // A kernel-only filter is something to run.
        let c = parse("[xdp]\ninterfaces = [\"eth0\"]\n").unwrap();
        assert!(c.listeners.is_empty() && c.xdp.is_some());
    }

    #[test]
    fn port_zero_wildcard_backends_and_bad_names_are_refused() {
        let e = error_of(&GOOD.replace("127.0.0.1:8443", "127.0.0.1:0"));
        assert!(e.contains("`listener[0].bind`: 127.0.0.1:0: port 0"), "{e}");
        for bad in ["0.0.0.0:8080", "10.0.0.1:0"] {
            let e = error_of(&GOOD.replace("10.0.0.1:80", bad));
            assert!(e.contains("is not a backend address"), "{bad}: {e}");
        }
        let e = error_of(&GOOD.replace("name = \"web\"", "name = \"a\\\"b\""));
        assert!(
            e.contains("`listener[0].name`") && e.contains("is not a valid name"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("name = \"web\"", "name = \"a\\nb\""));
        assert!(e.contains("is not a valid name"), "{e}");
    }

    /// A :443 listener with a terminated route, a passthrough route and a default;
    /// `extra` goes into the listener's first route.
    fn routed(route_extra: &str, listener_tls: &str) -> String {
        format!(
            r#"
[[listener]]
name = "edge"
bind = "127.0.0.1:443"
pool = "app"
{listener_tls}
[[listener.route]]
sni = ["api.example.com", "*.example.org"]
pool = "api"
{route_extra}
[[listener.route]]
sni = ["pass.example.net"]
pool = "app"
tls = "passthrough"
[[pool]]
name = "app"
backends = [{{ address = "10.0.0.1:80" }}]
[[pool]]
name = "api"
backends = [{{ address = "10.0.0.2:80" }}]
"#
        )
    }

    const CERTS: &str = "[listener.tls]\ncertificates = [{ cert = \"a.pem\", key = \"a.key\" }]";

    #[test]
    fn routes_parse_with_their_defaults() {
        let c = parse(&routed("", CERTS)).unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.routes.len(), 2);
        assert_eq!(l.routes[0].name(), "api.example.com");
        assert_eq!(l.route_tls(Some(&l.routes[0])), RouteTls::Terminate);
        assert_eq!(l.route_tls(Some(&l.routes[1])), RouteTls::Passthrough);
        assert_eq!(l.route_tls(None), RouteTls::Terminate);
        // Without certificates every route (and the default) passes TLS through.
        let c = parse(&routed("tls = \"passthrough\"", "")).unwrap();
        assert_eq!(c.listeners[0].route_tls(None), RouteTls::Passthrough);
        // Routes on a plain listener hash on the SNI they read.
        let text = routed("tls = \"passthrough\"", "")
            .replace("name = \"api\"\n", "name = \"api\"\nhash_key = \"sni\"\n");
        parse(&text).unwrap();
    }

    #[test]
    fn bad_routes_are_refused_with_their_position() {
        let e = error_of(&routed("", CERTS).replace("pool = \"api\"\n", "pool = \"nope\"\n"));
        assert!(
            e.contains("`listener[0].route[0].pool`: no [[pool]] named \"nope\""),
            "{e}"
        );
        let e = error_of(&routed("", CERTS).replace("\"*.example.org\"", "\"a.*.example.org\""));
        assert!(e.contains("`listener[0].route[0].sni[1]`"), "{e}");
        assert!(e.contains("wildcard"), "{e}");
        let e = error_of(&routed("", CERTS).replace("\"pass.example.net\"", "\"API.example.com\""));
        assert!(e.contains("`listener[0].route[1].sni[0]`"), "{e}");
        assert!(e.contains("is also in route 0"), "{e}");
        // The same name with other ALPN protocols first is fine.
        let text = routed("alpn = [\"h2\"]", CERTS).replace(
            "sni = [\"pass.example.net\"]",
            "name = \"pass\"\nsni = [\"api.example.com\"]",
        );
        parse(&text).unwrap();
        // Two routes named after the same first pattern need a name.
        let e = error_of(&text.replace("name = \"pass\"\n", ""));
        assert!(
            e.contains(":13:") && e.contains("`listener[0].route[1].sni[0]`"),
            "{e}"
        );
        assert!(e.contains("give one a `name`"), "{e}");
        // Terminating without certificates.
        let e = error_of(&routed("tls = \"terminate\"", ""));
        assert!(e.contains("`listener[0].route[0].tls`"), "{e}");
        assert!(e.contains("needs certificates"), "{e}");
        // Client certificates cannot be checked on passthrough.
        let with_auth = format!("{CERTS}\n[listener.tls.client_auth]\nca = \"ca.pem\"");
        let e = error_of(&routed("", &with_auth));
        assert!(e.contains("`listener[0].route[1].tls`"), "{e}");
        assert!(e.contains("client_auth"), "{e}");
        let e = error_of(
            &routed("sni = []", CERTS)
                .replace("sni = [\"api.example.com\", \"*.example.org\"]\n", ""),
        );
        assert!(e.contains("`listener[0].route[0].sni`"), "{e}");
    }

    #[test]
    fn autoblock_is_an_explicit_choice() {
        assert_eq!(parse(GOOD).unwrap().autoblock, None);
        let c = parse(&format!("{GOOD}\n[autoblock]\n")).unwrap();
        let a = c.autoblock.unwrap();
        assert!(a.enabled);
        assert_eq!(
            a.new_connections, 0,
            "the connection-rate trigger is off unless set"
        );
        assert!(
            a.describe().contains("new connections: off"),
            "{}",
            a.describe()
        );
    }

    #[test]
    fn steering_needs_xdp_and_the_store_and_a_steered_vip() {
        let bgp = "[bgp]\nlocal_as = 65001\nrouter_id = \"10.0.0.1\"\n\
                   [[bgp.peer]]\naddress = \"10.0.0.254\"\nas = 65000\n\
                   [[bgp.vip]]\naddress = \"192.0.2.10\"\nlisteners = [\"web\"]\n";
        let steered = format!("{GOOD}\n{bgp}steering = true\n");
        let xdp = "[xdp]\ninterfaces = [\"eth0\"]\n";
        let store = "[fleet.policy]\nendpoints = [\"http://10.0.0.5:2379\"]\nnode = \"n1\"\n";
        let e = error_of(&steered);
        assert!(
            e.contains("`bgp.vip[0].steering`") && e.contains("[xdp]"),
            "{e}"
        );
        let e = error_of(&format!("{steered}{xdp}"));
        assert!(
            e.contains("`bgp.vip[0].steering`") && e.contains("[fleet.policy]"),
            "{e}"
        );
        let c = parse(&format!("{steered}{xdp}{store}")).unwrap();
        assert_eq!(
            c.steering().unwrap().port,
            19523,
            "defaults without [fleet.steering]"
        );
        assert_eq!(c.steered_vips().count(), 1);
        let c = parse(&format!(
            "{steered}{xdp}{store}[fleet.steering]\nport = 6000\nmember_ttl = \"2s\"\n"
        ))
        .unwrap();
        assert_eq!(c.steering().unwrap().port, 6000);
        let e = error_of(&format!(
            "{steered}{xdp}{store}[fleet.steering]\nmember_ttl = \"1s\"\n"
        ));
        assert!(e.contains("`fleet.steering.member_ttl`"), "{e}");
        let unsteered = format!("{GOOD}\n{bgp}{xdp}{store}[fleet.steering]\n");
        let e = error_of(&unsteered);
        assert!(e.contains("no [[bgp.vip]] has steering = true"), "{e}");
        let mss = GOOD.replace("pool = \"app\"\n", "pool = \"app\"\nmss = 100\n");
        let e = error_of(&mss);
        assert!(
            e.contains("`listener[0].mss`") && e.contains("536 to 9000"),
            "{e}"
        );
        let mss = GOOD.replace("pool = \"app\"\n", "pool = \"app\"\nmss = 1420\n");
        assert_eq!(parse(&mss).unwrap().listeners[0].mss, Some(1420));
    }
}
