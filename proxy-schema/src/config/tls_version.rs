//! The lowest TLS version a TLS endpoint accepts: of listeners (`[listener.tls]`) and
//! of connections to backends (`[pool.tls]`).

use serde::{Deserialize, Serialize};

/// `min_version`: `"1.2"` (default) or `"1.3"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}
