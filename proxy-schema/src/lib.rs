//! The proxy's typed contract, written once and used by everything that speaks to
//! the daemon or writes its configuration:
//!
//! - [`config`]: the TOML configuration schema (every key, its default and its
//!   documentation), validation, and errors located by file, line and key. The
//!   daemon parses it; the lab, the benchmarks and the demo build configurations
//!   from the same types and serialise them, so a new key is added in one place.
//! - [`api`]: the admin API's requests and answers (JSON over the admin socket and
//!   `/api`), read by the CLI, the tests, the benchmarks and the status page.
pub mod api;
pub mod config;
