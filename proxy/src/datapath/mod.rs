//! The data path: everything a client connection goes through.
//!
//! - [`listener`]: bind, accept loop, admission limits; [`limits`]: the counters
//!   behind those limits.
//! - [`connection`]: one connection: TLS handshake → pick a backend → connect →
//!   forward; [`forward`]: bytes both ways (splice for plain TCP), half-close.
//! - [`tls`]: certificates, SNI resolver, rustls server configuration.
//! - [`proxy_protocol`]: PROXY v1/v2 headers to backends.
//! - [`balance`]: backends, pools and the Maglev table; [`health`]: active checks.
//! - [`state`]: what a listener's connections share; [`events`]: per-source events
//!   for auto-blocking.

pub mod balance;
pub mod client_cert;
pub mod client_hello;
pub mod connection;
pub mod events;
pub mod forward;
pub mod health;
pub mod limits;
pub mod listener;
pub mod ocsp;
pub mod proxy_protocol;
pub mod replay;
pub mod routes;
pub mod state;
pub mod tls;
pub mod tls_hkdf;
pub mod upstream_tls;
