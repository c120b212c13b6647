//! What the load generator (`bench client ...`) reports: one JSON object per run,
//! of the type of its mode. The generator writes these types and the benchmarks
//! read the same types, so a renamed field fails to compile.

use serde::{Deserialize, Serialize};

/// `handshakes` and `connects`: connections made (and requests, with `--get`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connections {
    pub ok: u64,
    /// TLS connections that resumed a session.
    pub resumed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
}

/// `bulk`: bytes of response bodies received.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bulk {
    pub bytes: u64,
    pub errors: u64,
    pub seconds: f64,
}

/// `latency`: request latencies at a fixed rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: usize,
    pub errors: u64,
    pub p50_us: Option<u32>,
    pub p90_us: Option<u32>,
    pub p99_us: Option<u32>,
    pub p999_us: Option<u32>,
    pub max_us: Option<u32>,
    /// Upper bounds of the histogram's buckets; one more bucket holds the rest.
    pub buckets_us: Vec<u32>,
    pub histogram: Vec<u64>,
    pub seconds: f64,
    /// Every sample (µs, sorted), with `--samples`.
    pub samples_us: Option<Vec<u32>>,
}

/// `attack`: one heavy attacking source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attack {
    pub junk_attempts: u64,
    pub junk_connected: u64,
    pub udp_sent: u64,
    pub seconds: f64,
}

/// `idle`: connections that could not be opened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Idle {
    pub errors: u64,
}

/// `slowloris`: connections the server cut.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Slowloris {
    pub cut_by_server: u64,
}

/// Reads a generator's JSON line as the type of the mode it ran.
pub fn parse<T: serde::de::DeserializeOwned>(out: &str) -> anyhow::Result<T> {
    use anyhow::Context;
    serde_json::from_str(out.trim()).with_context(|| format!("load generator output: {out}"))
}

/// What a run did and how much of it failed, for the 1 % error rule.
pub trait Outcome: std::fmt::Debug {
    /// Operations (connections, requests) or bytes completed.
    fn done(&self) -> f64;
    fn errors(&self) -> u64;
}

impl Outcome for Connections {
    fn done(&self) -> f64 {
        self.ok as f64
    }
    fn errors(&self) -> u64 {
        self.errors
    }
}

impl Outcome for Bulk {
    fn done(&self) -> f64 {
        self.bytes as f64
    }
    fn errors(&self) -> u64 {
        self.errors
    }
}

impl Outcome for Latency {
    fn done(&self) -> f64 {
        self.count as f64
    }
    fn errors(&self) -> u64 {
        self.errors
    }
}

impl Connections {
    /// Completed connections per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
}

/// A latency figure in µs (0 when the run had no samples).
pub fn us(value: Option<u32>) -> f64 {
    value.map_or(0.0, f64::from)
}
