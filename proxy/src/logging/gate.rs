//! The gate for log lines from other crates (rustls, hyper, ...). A remote peer can
//! make a library log (rustls warns once per ClientHello with an illegal SNI name,
//! with the name in the line), so every such line passes one shared rate limit; what
//! is held back is counted and reported by `proxy` itself every few seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::layer::{Context, Filter};

use super::LogLimiter;

/// Library lines let through per second, all libraries together.
pub const LIBRARY_LINES_PER_SECOND: u32 = 10;

static LIBRARY_LINES: LogLimiter = LogLimiter::new();
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// A per-layer filter around [`admit`], asked for every event (never cached per
/// callsite, or the limit would be decided once for a callsite forever).
pub struct LibraryGate;

impl<S> Filter<S> for LibraryGate {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        admit(meta)
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    /// The gate never lets more verbose lines through than the level filter it is
    /// combined with, so the level alone sets the global maximum: then disabled
    /// `trace!`/`debug!` calls (rustls' `log` ones included, through the bridge's
    /// max level) cost one comparison instead of a filter evaluation each.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}

/// Our own crate's events pass (they are limited where peers can cause them);
/// every other crate's events share [`LIBRARY_LINES_PER_SECOND`].
pub fn admit(meta: &Metadata<'_>) -> bool {
    if is_ours(meta.target()) || !meta.is_event() {
        return true;
    }
    let (pass, _) = LIBRARY_LINES.check(LIBRARY_LINES_PER_SECOND);
    if !pass {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
    pass
}

fn is_ours(target: &str) -> bool {
    target == "proxy" || target.starts_with("proxy::")
}

/// Reports suppressed library lines every `every`, from a thread of its own.
pub fn spawn_reporter(every: Duration) {
    let _ = std::thread::Builder::new()
        .name("log-gate".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let n = SUPPRESSED.swap(0, Ordering::Relaxed);
                if n > 0 {
                    tracing::warn!(
                        target: "proxy::logging",
                        suppressed = n,
                        limit_per_second = LIBRARY_LINES_PER_SECOND,
                        "library log lines held back by the rate limit (remote peers can cause them; \
                         the proxy_tls_handshake_failures_total counters still count every failure)"
                    );
                }
            }
        });
}

/// Peer-controlled text for a log field: control characters and quotes escaped, at
/// most `MAX_PEER_TEXT` characters (then `...`).
pub fn peer_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_PEER_TEXT)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX_PEER_TEXT {
        out.push_str("...");
    }
    out
}

/// Characters of peer-controlled text kept in a log line.
pub const MAX_PEER_TEXT: usize = 160;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_is_escaped_and_cut() {
        assert_eq!(peer_text("a\nb\"c"), "a\\nb\\\"c");
        let long = "x".repeat(1000);
        let cut = peer_text(&long);
        assert_eq!(cut.len(), MAX_PEER_TEXT + 3);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn our_targets_are_recognised() {
        assert!(is_ours("proxy"));
        assert!(is_ours("proxy::xdp_drops"));
        assert!(!is_ours("proxyish"));
        assert!(!is_ours("rustls::msgs::handshake"));
    }
}
