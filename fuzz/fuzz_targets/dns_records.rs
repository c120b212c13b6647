//! What DNS answers become backends (`proxy::control::discovery`), on any records
//! and any sequence of lookups: never a backend at port 0 or at an address no
//! backend can have, only the lowest SRV priority, weights within 1..=1000, at most
//! `max_backends` per source, and the last good set kept through failures.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use proxy::config::MAX_WEIGHT;
use proxy::control::discovery::records::{self, Srv};
use proxy::control::discovery::state::{Found, Outcome, Source, Timing};

#[derive(Arbitrary, Debug)]
struct Record {
    priority: u16,
    weight: u16,
    port: u16,
    target: u8,
    ips: Vec<([u8; 16], bool)>,
}

#[derive(Arbitrary, Debug)]
enum Lookup {
    Records(Vec<Record>, u16),
    Empty(u16),
    Failed,
    Wait(u16),
}

fuzz_target!(|input: (u8, Vec<Lookup>)| {
    let (max, lookups) = input;
    let timing = Timing {
        min_refresh: Duration::from_secs(1),
        max_refresh: Duration::from_secs(60),
        hold_empty: Duration::from_secs(30),
        max_backends: usize::from(max % 8) + 1,
    };
    let mut source = Source::new(timing);
    let mut now = Instant::now();
    for lookup in lookups {
        let outcome = match lookup {
            Lookup::Records(recs, ttl) => {
                let found = backends(&recs);
                check(&found, &recs);
                match found.is_empty() {
                    true => Outcome::Empty(Duration::from_secs(ttl.into())),
                    false => Outcome::Records(found, Duration::from_secs(ttl.into())),
                }
            }
            Lookup::Empty(ttl) => Outcome::Empty(Duration::from_secs(ttl.into())),
            Lookup::Failed => Outcome::Failed("timeout".into()),
            Lookup::Wait(s) => {
                now += Duration::from_secs(s.into());
                continue;
            }
        };
        let failed = matches!(outcome, Outcome::Failed(_));
        let before = source.set().to_vec();
        let decision = source.observe(outcome, now);
        assert!(source.set().len() <= timing.max_backends);
        assert!(decision.next >= timing.min_refresh || decision.next <= timing.hold_empty);
        assert!(decision.next <= timing.max_refresh.max(timing.hold_empty));
        if failed {
            assert_eq!(source.set(), before, "a failure changes nothing");
            assert!(decision.changed.is_none());
        }
    }
});

/// The records as the resolver would turn them into backends.
fn backends(recs: &[Record]) -> Vec<Found> {
    let srv: Vec<Srv> = recs
        .iter()
        .map(|r| Srv {
            priority: r.priority,
            weight: r.weight,
            port: r.port,
            target: if r.target == 0 { ".".into() } else { format!("t{}.test.", r.target) },
        })
        .collect();
    let mut found = Vec::new();
    for s in records::usable_srv(&srv) {
        let r = &recs[srv.iter().position(|x| std::ptr::eq(x, s)).unwrap()];
        found.extend(records::from_srv("SRV x", s, &ips(r)));
    }
    found
}

fn ips(r: &Record) -> Vec<IpAddr> {
    r.ips
        .iter()
        .map(|(b, v4)| match v4 {
            true => IpAddr::from([b[0], b[1], b[2], b[3]]),
            false => IpAddr::from(*b),
        })
        .collect()
}

fn check(found: &[Found], recs: &[Record]) {
    let best = recs
        .iter()
        .filter(|r| r.port != 0 && r.target != 0)
        .map(|r| r.priority)
        .min();
    for f in found {
        assert_ne!(f.address.port(), 0);
        assert!(records::usable(f.address.ip()), "{f:?}");
        assert!((1..=MAX_WEIGHT).contains(&f.weight), "{f:?}");
        let from = recs
            .iter()
            .filter(|r| r.port == f.address.port() && r.target != 0)
            .map(|r| r.priority)
            .min();
        assert!(from >= best, "only the lowest priority: {f:?}");
    }
}
