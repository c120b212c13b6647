//! Logging: `tracing` with structured fields, as text or JSON lines.
//! `log` records (aya-log's XDP messages among them) are bridged into `tracing`.
//! [`LogLimiter`] bounds lines that outside input can cause; [`gate`] puts every
//! other crate's lines under one shared limit and escapes peer text.

pub mod gate;
mod limit;

pub use gate::peer_text;
pub use limit::LogLimiter;

use std::time::Duration;

use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let level = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // The level first: only lines that would be written count against the gate.
    let filter = level.and(gate::LibraryGate);
    use std::io::IsTerminal;
    let base = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let layer = match format {
        LogFormat::Text => base.with_filter(filter).boxed(),
        LogFormat::Json => base.json().flatten_event(true).with_filter(filter).boxed(),
    };
    // A second init (tests) keeps the first subscriber.
    if tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_ok()
    {
        gate::spawn_reporter(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    /// Lines below the level are cut off at the macro: the global maximum (and the
    /// `log` bridge's, which rustls' lines go through) is the configured level, not
    /// "everything" as the per-event library gate would otherwise make it.
    #[test]
    fn the_level_sets_the_global_maximum() {
        if std::env::var_os("RUST_LOG").is_some() {
            return; // the level comes from the environment then
        }
        super::init(super::LogFormat::Text, "warn");
        let current = tracing::level_filters::LevelFilter::current();
        assert_eq!(current, tracing::level_filters::LevelFilter::WARN);
        assert_eq!(log::max_level(), log::LevelFilter::Warn);
    }
}
