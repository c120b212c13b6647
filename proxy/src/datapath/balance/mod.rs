//! Backend selection: backends with their health, runtime settings and open
//! connections ([`backend`]), the algorithms ([`selection`]: Maglev, least
//! connections, power of two choices, smooth weighted round robin), slow start
//! ([`slow_start`]), and pools that put them together ([`pool`]).

pub mod backend;
pub mod pool;
pub mod selection;
pub mod slow_start;

pub use backend::{Backend, Connection, Control, Source};
pub use pool::{
    Candidates, Discovered, KeyInput, Moved, Origin, Pool, dns_sources as pool_dns_sources,
};
