//! Per-source counting, pure (no I/O, no clock of its own): feed events, get a
//! trigger when a threshold is reached within the window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::autoblock::AutoblockSection;
use crate::datapath::events::{SourceEvent, SourceEventKind};

/// Why a source was blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    FailedHandshakes(u32),
    HandshakeTimeouts(u32),
    NewConnections(u32),
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::FailedHandshakes(_) => "failed_handshakes",
            Trigger::HandshakeTimeouts(_) => "handshake_timeouts",
            Trigger::NewConnections(_) => "new_connections",
        }
    }

    pub(super) fn describe(self, window: Duration) -> String {
        let w = humantime::format_duration(window);
        match self {
            Trigger::FailedHandshakes(n) => format!("auto: {n} failed TLS handshakes in {w}"),
            Trigger::HandshakeTimeouts(n) => format!("auto: {n} handshake timeouts in {w}"),
            Trigger::NewConnections(n) => format!("auto: {n} new connections in {w}"),
        }
    }
}

#[derive(Default)]
struct Tally {
    window_start: Option<Instant>,
    failed_handshakes: u32,
    handshake_timeouts: u32,
    new_connections: u32,
}

/// Per-source counting, pure (no I/O): feed events, get a trigger when a threshold
/// is reached. Memory is bounded by `max_tracked_sources`.
pub struct Detector {
    tallies: HashMap<IpAddr, Tally>,
}

impl Detector {
    pub fn new() -> Detector {
        Detector {
            tallies: HashMap::new(),
        }
    }

    pub fn observe(
        &mut self,
        settings: &AutoblockSection,
        event: &SourceEvent,
        now: Instant,
    ) -> Option<Trigger> {
        if !self.tallies.contains_key(&event.addr)
            && self.tallies.len() >= settings.max_tracked_sources
        {
            self.forget_expired(settings.window, now);
            if self.tallies.len() >= settings.max_tracked_sources {
                return None;
            }
        }
        let tally = self.tallies.entry(event.addr).or_default();
        match tally.window_start {
            Some(start) if now.duration_since(start) < settings.window => {}
            _ => {
                *tally = Tally {
                    window_start: Some(now),
                    ..Tally::default()
                }
            }
        }
        let reached = |count: &mut u32, threshold: u32| {
            *count += 1;
            threshold != 0 && *count >= threshold
        };
        let trigger = match &event.kind {
            SourceEventKind::HandshakeFailed { .. } => {
                reached(&mut tally.failed_handshakes, settings.failed_handshakes)
                    .then_some(Trigger::FailedHandshakes(tally.failed_handshakes))
            }
            SourceEventKind::HandshakeTimeout => {
                reached(&mut tally.handshake_timeouts, settings.handshake_timeouts)
                    .then_some(Trigger::HandshakeTimeouts(tally.handshake_timeouts))
            }
            SourceEventKind::Accepted | SourceEventKind::RejectedPerSourceLimit => {
                reached(&mut tally.new_connections, settings.new_connections)
                    .then_some(Trigger::NewConnections(tally.new_connections))
            }
        };
        if trigger.is_some() {
            self.tallies.remove(&event.addr);
        }
        trigger
    }

    /// Drops tallies whose window has ended.
    pub fn forget_expired(&mut self, window: Duration, now: Instant) {
        self.tallies.retain(|_, t| {
            t.window_start
                .is_some_and(|s| now.duration_since(s) < window)
        });
    }

    pub fn tracked(&self) -> usize {
        self.tallies.len()
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HandshakeFailure;

    fn ev(addr: &str, kind: SourceEventKind) -> SourceEvent {
        SourceEvent {
            addr: addr.parse().unwrap(),
            kind,
        }
    }

    fn settings() -> AutoblockSection {
        AutoblockSection {
            failed_handshakes: 3,
            handshake_timeouts: 2,
            new_connections: 5,
            ..Default::default()
        }
    }

    #[test]
    fn triggers_at_each_threshold_within_the_window() {
        let (s, mut d, t0) = (settings(), Detector::new(), Instant::now());
        let failed = SourceEventKind::HandshakeFailed {
            reason: HandshakeFailure::NotTls,
        };
        assert_eq!(d.observe(&s, &ev("192.0.2.1", failed.clone()), t0), None);
        assert_eq!(d.observe(&s, &ev("192.0.2.1", failed.clone()), t0), None);
        assert_eq!(
            d.observe(&s, &ev("192.0.2.1", failed.clone()), t0),
            Some(Trigger::FailedHandshakes(3))
        );
        assert_eq!(
            d.observe(&s, &ev("192.0.2.2", SourceEventKind::HandshakeTimeout), t0),
            None
        );
        assert_eq!(
            d.observe(&s, &ev("192.0.2.2", SourceEventKind::HandshakeTimeout), t0),
            Some(Trigger::HandshakeTimeouts(2))
        );
        for _ in 0..4 {
            assert_eq!(
                d.observe(&s, &ev("2001:db8::1", SourceEventKind::Accepted), t0),
                None
            );
        }
        assert_eq!(
            d.observe(
                &s,
                &ev("2001:db8::1", SourceEventKind::RejectedPerSourceLimit),
                t0
            ),
            Some(Trigger::NewConnections(5))
        );
    }

    #[test]
    fn counts_restart_after_the_window_and_sources_are_separate() {
        let (s, mut d, t0) = (settings(), Detector::new(), Instant::now());
        let failed = SourceEventKind::HandshakeFailed {
            reason: HandshakeFailure::Misbehaved,
        };
        d.observe(&s, &ev("192.0.2.1", failed.clone()), t0);
        d.observe(&s, &ev("192.0.2.1", failed.clone()), t0);
        d.observe(&s, &ev("192.0.2.9", failed.clone()), t0);
        let later = t0 + s.window + Duration::from_millis(1);
        assert_eq!(
            d.observe(&s, &ev("192.0.2.1", failed.clone()), later),
            None,
            "window restarted"
        );
        d.forget_expired(s.window, later);
        assert_eq!(d.tracked(), 1);
    }

    #[test]
    fn zero_disables_a_threshold_and_tracking_is_bounded() {
        let s = AutoblockSection {
            new_connections: 0,
            max_tracked_sources: 2,
            ..settings()
        };
        let (mut d, t0) = (Detector::new(), Instant::now());
        for _ in 0..100 {
            assert_eq!(
                d.observe(&s, &ev("192.0.2.1", SourceEventKind::Accepted), t0),
                None
            );
        }
        d.observe(&s, &ev("192.0.2.2", SourceEventKind::Accepted), t0);
        d.observe(&s, &ev("192.0.2.3", SourceEventKind::Accepted), t0);
        assert_eq!(d.tracked(), 2);
    }
}
