//! Backend selection: one trait, [`Selection`], and the algorithms behind it (the
//! shape of pingora-load-balancing's `selection/`): [`maglev`] (consistent hashing),
//! [`least_connections`], [`random_two`] (power of two choices) and [`round_robin`]
//! (smooth weighted). Each gives the backends to try for one connection one at a
//! time, best first, so a failed connect falls through to the next; the next one is
//! only worked out when it is needed.
//!
//! Every algorithm sees the pool through [`Members`]: the weight each backend has in
//! force (0 while drained, in maintenance or weighted 0), its health, its open
//! connections (one atomic counter per backend, shared by every worker thread) and
//! its slow-start ramp.

pub mod least_connections;
pub mod maglev;
pub mod random_two;
pub mod round_robin;

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use self::maglev::{Maglev, MaglevError, MaglevSelection};
use super::backend::Backend;
use super::slow_start;
use crate::config::Balance;

/// A pool's algorithm.
pub trait Selection: Send + Sync + std::fmt::Debug {
    /// The member to try next for one connection, after `tried` (in order; empty for
    /// the first): one that takes connections ([`Members::takes`]) and is not in
    /// `tried`, or `None` when no other member does. `key_hash` is the pool's hash
    /// key (Maglev's input; the others ignore it).
    fn next(&self, members: &Members<'_>, key_hash: u64, tried: &[usize]) -> Option<usize>;

    /// Maglev's table (to count what a rebuild moved); `None` for the others.
    fn table(&self) -> Option<&Maglev> {
        None
    }
}

/// The algorithm `balance` for `members` (`(address, weight in force)`, in the
/// pool's order); only Maglev uses the table size.
pub fn build(
    balance: Balance,
    members: &[(String, u32)],
    table_size: u32,
) -> Result<Box<dyn Selection>, MaglevError> {
    Ok(match balance {
        Balance::Maglev => Box::new(MaglevSelection::new(members, table_size)?),
        Balance::LeastConnections => Box::new(least_connections::LeastConnections),
        Balance::RandomTwo => Box::new(random_two::RandomTwo),
        Balance::RoundRobin => Box::new(round_robin::RoundRobin::new(members.len())),
    })
}

/// One pick's view of a pool's backends.
pub struct Members<'a> {
    backends: &'a [Arc<Backend>],
    /// Weight in force per backend; 0 while it takes no new connections.
    weights: &'a [u32],
    /// The highest of `weights`, in thousandths (a bound of [`Members::weight`]).
    max_weight: u64,
    /// Some backend with a weight is up: skip the ones marked down. (With every one
    /// down, all are tried: a health check can be wrong, refusing everyone is worse.)
    skip_down: bool,
    /// Slow start: now and the ramp.
    ramp: Option<(u64, Duration)>,
}

impl<'a> Members<'a> {
    pub fn new(
        backends: &'a [Arc<Backend>],
        weights: &'a [u32],
        slow_start: Option<Duration>,
    ) -> Members<'a> {
        let skip_down = backends
            .iter()
            .zip(weights)
            .any(|(b, &w)| w > 0 && b.is_up());
        Members {
            backends,
            weights,
            max_weight: u64::from(weights.iter().copied().max().unwrap_or(0)) * 1000,
            skip_down,
            ramp: slow_start.map(|ramp| (slow_start::now_ms(), ramp)),
        }
    }

    /// Members, taking connections or not.
    pub fn count(&self) -> usize {
        self.backends.len()
    }

    /// Member `i` may get this connection.
    pub fn takes(&self, i: usize) -> bool {
        self.weights[i] > 0 && (!self.skip_down || self.backends[i].is_up())
    }

    /// Every member that takes connections, in the pool's order.
    pub fn taking(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count()).filter(|&i| self.takes(i))
    }

    /// Member `i`'s weight now, in thousandths (slow start included).
    pub fn weight(&self, i: usize) -> u64 {
        let full = u64::from(self.weights[i]) * 1000;
        match self.ramp {
            None => full,
            Some((now, ramp)) => full * self.backends[i].ramp_permille(now, ramp) / 1000,
        }
    }

    /// Member `i`'s open connections.
    pub fn active(&self, i: usize) -> u64 {
        u64::try_from(self.backends[i].active_connections()).unwrap_or(0)
    }

    /// Compares the load (open connections per unit of weight) of `a` and `b`.
    pub fn compare_load(&self, a: usize, b: usize) -> Ordering {
        let load = |x: usize, y: usize| u128::from(self.active(x)) * u128::from(self.weight(y));
        load(a, b).cmp(&load(b, a))
    }

    /// A member that takes connections and is not `skip`ped, drawn at random in
    /// proportion to its weight: a uniform draw kept with probability weight / the
    /// highest weight (rejection sampling: one draw or two with even weights, however
    /// many backends), and after a few rejections an exact pass over all of them.
    pub fn draw(&self, skip: impl Fn(usize) -> bool) -> Option<usize> {
        if self.max_weight > 0 {
            for _ in 0..16 {
                let i = fastrand::usize(..self.count());
                if !self.takes(i) || skip(i) {
                    continue;
                }
                if fastrand::u64(..self.max_weight) < self.weight(i) {
                    return Some(i);
                }
            }
        }
        let eligible = || self.taking().filter(|&i| !skip(i));
        let total: u64 = eligible().map(|i| self.weight(i)).sum();
        if total == 0 {
            // Weights ramped to nothing cannot happen (slow start has a floor), but
            // never return none while a member takes connections.
            return eligible().next();
        }
        let mut ticket = fastrand::u64(0..total);
        for i in eligible() {
            let w = self.weight(i);
            if ticket < w {
                return Some(i);
            }
            ticket -= w;
        }
        None
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// `n` backends of one pool, all up, none ramping.
    pub fn backends(n: usize) -> Vec<Arc<Backend>> {
        let metrics = Metrics::new();
        let pool: Arc<str> = "p".into();
        (0..n)
            .map(|i| {
                let address = format!("10.0.0.{}:80", i + 1).parse().unwrap();
                Arc::new(Backend::new(&pool, address, &metrics, false))
            })
            .collect()
    }

    /// The first `n` candidates `selection` gives, one after the other.
    pub fn order(selection: &dyn Selection, m: &Members<'_>, n: usize) -> Vec<usize> {
        let mut tried = Vec::new();
        while tried.len() < n {
            match selection.next(m, 0, &tried) {
                Some(i) => tried.push(i),
                None => break,
            }
        }
        tried
    }

    /// Holds `count` connections open on backend `b`.
    pub fn hold(b: &Arc<Backend>, count: usize) -> Vec<super::super::backend::Connection> {
        (0..count).map(|_| b.connection()).collect()
    }

    /// Three equal backends, the first already holding 100 connections; 300 more
    /// placed by `selection`, each kept open: the open connections per backend.
    pub fn after_a_stream_of_long_connections(selection: &dyn Selection) -> Vec<i64> {
        let b = backends(3);
        let mut open = hold(&b[0], 100);
        let weights = [1, 1, 1];
        for _ in 0..300 {
            let m = Members::new(&b, &weights, None);
            let i = selection.next(&m, 0, &[]).unwrap();
            open.push(b[i].connection());
        }
        b.iter().map(|b| b.active_connections()).collect()
    }

    #[test]
    fn members_skip_down_and_unweighted_until_all_are_down() {
        let b = backends(3);
        let weights = [1, 0, 1];
        let m = Members::new(&b, &weights, None);
        assert_eq!(m.taking().collect::<Vec<_>>(), [0, 2]);
        for _ in 0..3 {
            b[0].record(
                false,
                crate::datapath::balance::Source::Check,
                &Default::default(),
                "x",
            );
        }
        let m = Members::new(&b, &weights, None);
        assert_eq!(m.taking().collect::<Vec<_>>(), [2]);
        for _ in 0..3 {
            b[2].record(
                false,
                crate::datapath::balance::Source::Check,
                &Default::default(),
                "x",
            );
        }
        let m = Members::new(&b, &weights, None);
        assert_eq!(
            m.taking().collect::<Vec<_>>(),
            [0, 2],
            "all down: all tried"
        );
    }

    #[test]
    fn load_is_connections_per_weight() {
        let b = backends(2);
        let _a = hold(&b[0], 4);
        let _b = hold(&b[1], 2);
        let weights = [2, 1];
        let m = Members::new(&b, &weights, None);
        assert_eq!(m.compare_load(0, 1), Ordering::Equal, "4/2 = 2/1");
        let _more = hold(&b[1], 1);
        assert_eq!(m.compare_load(0, 1), Ordering::Less);
    }

    #[test]
    fn slow_start_scales_a_fresh_backends_weight() {
        use crate::api::BackendState;
        use crate::datapath::balance::Control;
        let b = backends(2);
        let weights = [1, 1];
        let ramp = Some(Duration::from_secs(100));
        // Back from maintenance: it came up now, at the floor.
        b[1].set_control(Control {
            state: BackendState::Maint,
            ..Control::default()
        });
        b[1].set_control(Control::default());
        let m = Members::new(&b, &weights, ramp);
        assert_eq!(
            (m.weight(0), m.weight(1)),
            (1000, slow_start::FLOOR_PERMILLE)
        );
        // Round robin gives it its share of the ramped weight: 1 pick in 11.
        let rr = round_robin::RoundRobin::new(2);
        let picks: Vec<usize> = (0..11).map(|_| rr.next(&m, 0, &[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 1, "{picks:?}");
        // Without slow start, full weight at once.
        let m = Members::new(&b, &weights, None);
        assert_eq!(m.weight(1), 1000);
    }

    #[test]
    fn draws_follow_the_weights() {
        let b = backends(3);
        let weights = [1, 3, 0];
        let m = Members::new(&b, &weights, None);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[m.draw(|_| false).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
        assert_eq!(m.draw(|i| i == 1), Some(0));
        assert_eq!(m.draw(|i| i < 2), None);
    }
}
