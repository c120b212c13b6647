//! Sampled drop events from the DROP_EVENTS ring buffer, aggregated per source so the
//! log gets one summary line per interval, never one line per packet.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aya::maps::{MapData, RingBuf};
use proxy_common::{DropEvent, FAMILY_V4, FAMILY_V6, Reason};

use crate::api::SourceDrops;

/// What userspace learns from one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropSample {
    /// None for malformed packets (no parsable source).
    pub source: Option<IpAddr>,
    pub reason: Reason,
    pub ifindex: u32,
    /// Drops this sample stands for (the sampling rate).
    pub weight: u32,
}

impl DropSample {
    pub fn from_event(e: &DropEvent) -> Option<DropSample> {
        let source = match e.family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
                e.addr[0], e.addr[1], e.addr[2], e.addr[3],
            ))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(e.addr))),
            _ => None,
        };
        Some(DropSample {
            source,
            reason: Reason::from_u32(e.reason)?,
            ifindex: e.ifindex,
            weight: e.weight.max(1),
        })
    }
}

/// Reads every pending event from the ring buffer.
pub fn drain(ring: &mut RingBuf<MapData>, mut f: impl FnMut(DropSample)) {
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<DropEvent>() {
            // SAFETY: the item holds at least size_of::<DropEvent>() bytes (checked above),
            // DropEvent is plain old data, and read_unaligned needs no alignment.
            let event: DropEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            if let Some(sample) = DropSample::from_event(&event) {
                f(sample);
            }
        }
    }
}

/// Per-source aggregation over a window (log summaries) and in total (`proxy top`).
#[derive(Default)]
pub struct DropAggregator {
    sources: HashMap<Option<IpAddr>, Entry>,
}

#[derive(Default, Clone)]
struct Entry {
    by_reason: [u64; proxy_common::REASON_COUNT as usize],
    last_seen_unix: u64,
}

impl Entry {
    /// Packets dropped (answers with SYN cookies are not drops).
    fn drops(&self) -> u64 {
        Reason::ALL
            .iter()
            .filter(|r| r.is_drop())
            .map(|r| self.by_reason[*r as usize])
            .sum()
    }
}

/// Sources remembered at most; the least recently seen are forgotten first.
const MAX_SOURCES: usize = 10_000;

impl DropAggregator {
    pub fn add(&mut self, s: DropSample) {
        if self.sources.len() >= MAX_SOURCES
            && !self.sources.contains_key(&s.source)
            && let Some(oldest) = self
                .sources
                .iter()
                .min_by_key(|(_, e)| e.last_seen_unix)
                .map(|(k, _)| *k)
        {
            self.sources.remove(&oldest);
        }
        let e = self.sources.entry(s.source).or_default();
        e.by_reason[s.reason as usize] += s.weight as u64;
        e.last_seen_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The `n` sources with the most estimated drops.
    pub fn top(&self, n: usize) -> Vec<SourceDrops> {
        let mut all: Vec<SourceDrops> = self
            .sources
            .iter()
            .map(|(src, e)| SourceDrops {
                source: *src,
                by_reason: Reason::ALL
                    .iter()
                    .filter(|r| r.is_drop() && e.by_reason[**r as usize] > 0)
                    .map(|r| (r.name().to_owned(), e.by_reason[*r as usize]))
                    .collect(),
                estimated_drops: e.drops(),
                estimated_answered: e.by_reason[Reason::SynCookieSent as usize],
                last_seen_unix: e.last_seen_unix,
            })
            .collect();
        // Dropped sources first: a client whose SYNs were only answered with cookies
        // (the flood's legitimate neighbours) is not an attacker.
        all.sort_by(|a, b| {
            b.estimated_drops
                .cmp(&a.estimated_drops)
                .then(b.estimated_answered.cmp(&a.estimated_answered))
                .then(b.last_seen_unix.cmp(&a.last_seen_unix))
        });
        all.truncate(n);
        all
    }

    /// One log line's worth: total and the top sources, then resets the window.
    pub fn take_summary(&mut self, interval: Duration) -> Option<String> {
        if self.sources.is_empty() {
            return None;
        }
        let top = self.top(5);
        let dropped: u64 = self.sources.values().map(Entry::drops).sum();
        let droppers = self.sources.values().filter(|e| e.drops() > 0).count();
        let answered: u64 = self
            .sources
            .values()
            .map(|e| e.by_reason[Reason::SynCookieSent as usize])
            .sum();
        let answered_sources = self.sources.len() - droppers;
        self.sources.clear();
        let list: Vec<String> = top
            .iter()
            .filter(|s| s.estimated_drops > 0)
            .map(|s| format!("{} ({})", s.source_label(), s.reasons_text(",")))
            .collect();
        let every = humantime::format_duration(interval);
        let mut line = match dropped {
            0 => format!("no packets dropped in the last {every}"),
            _ => format!(
                "~{dropped} packets dropped in the last {every} from {droppers} sources; top: {}",
                list.join("; ")
            ),
        };
        if answered > 0 {
            line += &format!(
                "; ~{answered} SYNs answered with XDP SYN cookies (not dropped), {answered_sources} \
                 sources with no drops"
            );
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ip: &str, reason: Reason, weight: u32) -> DropSample {
        DropSample {
            source: Some(ip.parse().unwrap()),
            reason,
            ifindex: 2,
            weight,
        }
    }

    /// A client whose SYNs were answered with cookies during a flood is not a
    /// dropped source: it sorts after the droppers and its answers are apart.
    #[test]
    fn cookie_answers_are_not_drops() {
        let mut agg = DropAggregator::default();
        for _ in 0..10 {
            agg.add(sample("10.77.0.2", Reason::SynCookieSent, 64));
        }
        agg.add(sample("10.77.0.5", Reason::Blocklisted, 64));
        let top = agg.top(5);
        assert_eq!(top[0].source_label(), "10.77.0.5");
        assert_eq!((top[0].estimated_drops, top[0].estimated_answered), (64, 0));
        assert_eq!(top[1].source_label(), "10.77.0.2");
        assert_eq!(
            (top[1].estimated_drops, top[1].estimated_answered),
            (0, 640)
        );
        assert!(top[1].by_reason.is_empty(), "{:?}", top[1].by_reason);
        let line = agg.take_summary(Duration::from_secs(10)).unwrap();
        assert!(line.starts_with("~64 packets dropped in the last 10s from 1 sources; top: 10.77.0.5 (blocklisted=64)"), "{line}");
        assert!(
            line.contains(
                "~640 SYNs answered with XDP SYN cookies (not dropped), 1 sources with no drops"
            ),
            "{line}"
        );
    }

    #[test]
    fn aggregates_by_source_and_weights_samples() {
        let mut agg = DropAggregator::default();
        for _ in 0..3 {
            agg.add(sample("192.0.2.1", Reason::RatePps, 64));
        }
        agg.add(sample("192.0.2.1", Reason::Blocklisted, 64));
        agg.add(sample("2001:db8::1", Reason::RateSyn, 1));
        let top = agg.top(10);
        assert_eq!(top[0].source, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(top[0].estimated_drops, 256);
        assert_eq!(
            top[0].by_reason,
            vec![("blocklisted".to_owned(), 64), ("rate_pps".to_owned(), 192)]
        );
        let line = agg.take_summary(Duration::from_secs(10)).unwrap();
        assert!(
            line.starts_with("~257 packets dropped in the last 10s from 2 sources"),
            "{line}"
        );
        assert!(agg.is_empty());
    }

    #[test]
    fn decodes_events() {
        let mut e = DropEvent {
            family: FAMILY_V4,
            reason: Reason::Blocklisted as u32,
            ifindex: 3,
            weight: 0,
            ..Default::default()
        };
        e.addr[..4].copy_from_slice(&[10, 0, 0, 9]);
        let s = DropSample::from_event(&e).unwrap();
        assert_eq!(s.source, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(s.weight, 1);
        e.reason = 99;
        assert!(DropSample::from_event(&e).is_none());
    }
}
