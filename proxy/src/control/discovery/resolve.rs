//! The DNS lookups of one pool (hickory-resolver): a `name` backend's A and AAAA
//! records, an SRV record's targets; each answer as an [`Outcome`] with its TTL.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

use super::records::{self, Srv};
use super::state::Outcome;
use crate::config::discovery::Discovery;

/// What one source looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `name = "host:port"`: A and AAAA, each address at `port` with `weight`.
    Name {
        host: String,
        port: u16,
        weight: u32,
    },
    /// `[pool.discovery] srv`.
    Srv(String),
}

pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// Asks `settings.resolvers` (UDP, then TCP), else those of /etc/resolv.conf;
    /// no cache (the refresh follows the TTLs itself), one try per lookup within
    /// `settings.timeout`.
    pub fn new(settings: &Discovery) -> anyhow::Result<Resolver> {
        let (config, mut options) = match settings.resolvers.is_empty() {
            true => hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                anyhow::anyhow!(
                    "cannot read /etc/resolv.conf ({e}): list the DNS servers in \
                     [pool.discovery] resolvers"
                )
            })?,
            false => {
                let mut config = ResolverConfig::new();
                for &server in &settings.resolvers {
                    config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
                    config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
                }
                (config, ResolverOpts::default())
            }
        };
        options.cache_size = 0;
        options.timeout = settings.timeout;
        options.attempts = 1;
        let inner = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(options)
            .build();
        Ok(Resolver { inner })
    }

    /// One lookup of `spec`; `label` names its records in the backends it gives.
    pub async fn lookup(&self, spec: &Spec, label: &str) -> Outcome {
        match spec {
            Spec::Name { host, port, weight } => match self.addresses(host).await {
                Ok((ips, ttl)) => found(
                    records::from_addresses(label, host, &ips, *port, *weight),
                    ttl,
                ),
                Err(e) => outcome_of(e),
            },
            Spec::Srv(name) => self.srv(name, label).await,
        }
    }

    async fn addresses(&self, host: &str) -> Result<(Vec<IpAddr>, Duration), ResolveError> {
        let answer = self.inner.lookup_ip(absolute(host)).await?;
        let ttl = answer
            .valid_until()
            .saturating_duration_since(Instant::now());
        Ok((answer.iter().collect(), ttl))
    }

    async fn srv(&self, name: &str, label: &str) -> Outcome {
        let answer = match self.inner.srv_lookup(absolute(name)).await {
            Ok(answer) => answer,
            Err(e) => return outcome_of(e),
        };
        let mut ttl = answer
            .as_lookup()
            .valid_until()
            .saturating_duration_since(Instant::now());
        let all: Vec<Srv> = answer
            .iter()
            .map(|r| Srv {
                priority: r.priority(),
                weight: r.weight(),
                port: r.port(),
                target: r.target().to_utf8(),
            })
            .collect();
        let mut backends = Vec::new();
        for srv in records::usable_srv(&all) {
            match self.addresses(&srv.target).await {
                Ok((ips, target_ttl)) => {
                    ttl = ttl.min(target_ttl);
                    backends.extend(records::from_srv(label, srv, &ips));
                }
                // A target without addresses gives nothing; the others still count.
                Err(e) if e.is_no_records_found() => {}
                Err(e) => return outcome_of(e),
            }
        }
        found(backends, ttl)
    }
}

/// Records, or an empty answer when none were usable.
fn found(backends: Vec<super::state::Found>, ttl: Duration) -> Outcome {
    match backends.is_empty() {
        true => Outcome::Empty(ttl),
        false => Outcome::Records(backends, ttl),
    }
}

/// NXDOMAIN or no records (with the negative TTL when the server gave one) is an
/// empty answer; anything else a failure.
fn outcome_of(e: ResolveError) -> Outcome {
    if let Some(ProtoErrorKind::NoRecordsFound { negative_ttl, .. }) = e.proto().map(|p| p.kind()) {
        return Outcome::Empty(Duration::from_secs(u64::from(negative_ttl.unwrap_or(0))));
    }
    Outcome::Failed(e.to_string())
}

/// `name` as an absolute name: no search domains are tried.
fn absolute(name: &str) -> String {
    match name.ends_with('.') {
        true => name.to_owned(),
        false => format!("{name}."),
    }
}

/// A resolver address for the log.
pub fn describe(settings: &Discovery) -> String {
    match settings.resolvers.is_empty() {
        true => "the DNS servers of /etc/resolv.conf".into(),
        false => {
            let list: Vec<String> = settings
                .resolvers
                .iter()
                .map(SocketAddr::to_string)
                .collect();
            list.join(", ")
        }
    }
}
