//! What one DNS source of a pool (a backend name, or an SRV record) contributes,
//! decided from each resolution: the records it answered, the last good set kept
//! through failures, an empty answer applied only after `hold_empty`, and when to
//! ask again (the records' TTL, bounded by `min_refresh` and `max_refresh`). Pure:
//! the resolver and the clock are the caller's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A backend found in DNS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub address: SocketAddr,
    pub weight: u32,
    /// The record it came from (`A api.internal`, `SRV _api._tcp.internal`).
    pub record: String,
    /// The host name the address belongs to (the `name` entry's host, or the SRV
    /// record's target): the name backend TLS verifies unless `server_name` is set.
    pub host: String,
}

/// One resolution's outcome.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Records, valid this long (their TTL).
    Records(Vec<Found>, Duration),
    /// NXDOMAIN or no records of the type, valid this long (the negative TTL).
    Empty(Duration),
    /// The resolver failed (timeout, refused, unreachable): nothing is known.
    Failed(String),
}

/// The source's state, for logs, stats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not resolved yet.
    Unknown,
    Answering,
    /// Empty answers, the last set still served until `hold_empty` passes.
    EmptyHeld,
    Empty,
    /// The resolver fails; the last good set is served.
    Failing,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Answering => "ok",
            Health::EmptyHeld => "empty_held",
            Health::Empty => "empty",
            Health::Failing => "failing",
        }
    }
}

/// Bounds of the refresh and the hold of empty answers.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub hold_empty: Duration,
    pub max_backends: usize,
}

/// What to do after a resolution.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    /// The source's new set, when it changed.
    pub changed: Option<Vec<Found>>,
    /// When to resolve again.
    pub next: Duration,
    /// The state moved (log it once): from, to.
    pub transition: Option<(Health, Health)>,
}

#[derive(Debug)]
pub struct Source {
    timing: Timing,
    set: Vec<Found>,
    health: Health,
    empty_since: Option<Instant>,
    last_error: Option<String>,
}

impl Source {
    pub fn new(timing: Timing) -> Source {
        Source {
            timing,
            set: Vec::new(),
            health: Health::Unknown,
            empty_since: None,
            last_error: None,
        }
    }

    pub fn set(&self) -> &[Found] {
        &self.set
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn observe(&mut self, outcome: Outcome, now: Instant) -> Decision {
        let t = self.timing;
        let bounded = |ttl: Duration| ttl.clamp(t.min_refresh, t.max_refresh);
        let (health, next, mut wanted) = match outcome {
            Outcome::Records(mut found, ttl) => {
                self.empty_since = None;
                self.last_error = None;
                found.sort();
                found.dedup_by(|a, b| a.address == b.address);
                found.truncate(t.max_backends);
                (Health::Answering, bounded(ttl), Some(found))
            }
            Outcome::Empty(ttl) => {
                self.last_error = None;
                let since = *self.empty_since.get_or_insert(now);
                let held = now.duration_since(since);
                if self.set.is_empty() || held >= t.hold_empty {
                    (Health::Empty, bounded(ttl), Some(Vec::new()))
                } else {
                    // Ask again by the end of the hold, sooner if the TTL says so.
                    let left = t.hold_empty - held;
                    (Health::EmptyHeld, bounded(ttl).min(left), None)
                }
            }
            Outcome::Failed(error) => {
                self.last_error = Some(error);
                // The last good set stays; retry soon (a down resolver is found
                // again within min_refresh).
                (Health::Failing, t.min_refresh, None)
            }
        };
        if wanted.as_ref() == Some(&self.set) {
            wanted = None;
        }
        if let Some(set) = &wanted {
            self.set = set.clone();
        }
        let transition = (health != self.health).then_some((self.health, health));
        self.health = health;
        Decision {
            changed: wanted,
            next,
            transition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        min_refresh: Duration::from_secs(1),
        max_refresh: Duration::from_secs(60),
        hold_empty: Duration::from_secs(30),
        max_backends: 3,
    };

    fn found(last: u8) -> Found {
        Found {
            address: SocketAddr::from(([10, 0, 0, last], 8443)),
            weight: 1,
            record: "A api.internal".into(),
            host: "api.internal".into(),
        }
    }

    #[test]
    fn records_refresh_by_their_ttl_within_bounds() {
        let mut s = Source::new(TIMING);
        let now = Instant::now();
        let d = s.observe(
            Outcome::Records(vec![found(2), found(1)], Duration::from_secs(5)),
            now,
        );
        assert_eq!(d.changed, Some(vec![found(1), found(2)]), "sorted");
        assert_eq!(d.next, Duration::from_secs(5));
        assert_eq!(d.transition, Some((Health::Unknown, Health::Answering)));
        // The same records again: no change, no log line; TTL 0 → min_refresh.
        let d = s.observe(
            Outcome::Records(vec![found(1), found(2)], Duration::ZERO),
            now,
        );
        assert_eq!(
            (d.changed, d.next, d.transition),
            (None, TIMING.min_refresh, None)
        );
        let d = s.observe(
            Outcome::Records(vec![found(1)], Duration::from_secs(3600)),
            now,
        );
        assert_eq!(d.changed, Some(vec![found(1)]));
        assert_eq!(d.next, TIMING.max_refresh);
        // At most max_backends, duplicates once.
        let many = vec![found(4), found(3), found(3), found(2), found(1)];
        let d = s.observe(Outcome::Records(many, Duration::from_secs(5)), now);
        assert_eq!(d.changed, Some(vec![found(1), found(2), found(3)]));
    }

    #[test]
    fn failures_keep_the_last_good_set() {
        let mut s = Source::new(TIMING);
        let now = Instant::now();
        s.observe(
            Outcome::Records(vec![found(1)], Duration::from_secs(5)),
            now,
        );
        let d = s.observe(Outcome::Failed("timed out".into()), now);
        assert_eq!(d.changed, None);
        assert_eq!(d.transition, Some((Health::Answering, Health::Failing)));
        assert_eq!(s.set(), [found(1)]);
        assert_eq!(s.last_error(), Some("timed out"));
        // Logged once per state change.
        let d = s.observe(Outcome::Failed("timed out".into()), now);
        assert_eq!(d.transition, None);
        let d = s.observe(
            Outcome::Records(vec![found(1)], Duration::from_secs(5)),
            now,
        );
        assert_eq!(
            (d.changed, d.transition),
            (None, Some((Health::Failing, Health::Answering)))
        );
    }

    #[test]
    fn empty_answers_empty_the_set_only_after_the_hold() {
        let mut s = Source::new(TIMING);
        let t0 = Instant::now();
        s.observe(Outcome::Records(vec![found(1)], Duration::from_secs(5)), t0);
        let d = s.observe(Outcome::Empty(Duration::from_secs(60)), t0);
        assert_eq!(d.changed, None, "held");
        assert_eq!(
            d.next, TIMING.hold_empty,
            "asked again at the end of the hold"
        );
        assert_eq!(d.transition, Some((Health::Answering, Health::EmptyHeld)));
        let d = s.observe(
            Outcome::Empty(Duration::from_secs(60)),
            t0 + Duration::from_secs(20),
        );
        assert_eq!((d.changed, d.next), (None, Duration::from_secs(10)));
        let d = s.observe(
            Outcome::Empty(Duration::from_secs(5)),
            t0 + Duration::from_secs(30),
        );
        assert_eq!(d.changed, Some(Vec::new()));
        assert_eq!(d.transition, Some((Health::EmptyHeld, Health::Empty)));
        // Back: filled at once, and a later empty answer starts a new hold.
        let t1 = t0 + Duration::from_secs(40);
        let d = s.observe(Outcome::Records(vec![found(2)], Duration::from_secs(5)), t1);
        assert_eq!(d.changed, Some(vec![found(2)]));
        let d = s.observe(Outcome::Empty(Duration::from_secs(5)), t1);
        assert_eq!(d.changed, None);
    }

    #[test]
    fn a_source_that_never_answered_is_empty_at_once() {
        let mut s = Source::new(TIMING);
        let d = s.observe(Outcome::Empty(Duration::from_secs(5)), Instant::now());
        assert_eq!(d.transition, Some((Health::Unknown, Health::Empty)));
        assert_eq!(d.changed, None, "empty already");
    }
}
