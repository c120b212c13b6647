//! Smooth weighted round robin, as NGINX's: every pick, each backend that takes
//! connections adds its weight to its current weight; the highest (first in the
//! pool's order on a tie) is picked and loses the total. Weights 5, 1, 1 give
//! a a b a c a a, spread out rather than a a a a a b c. The current weights are one
//! small lock per pool, held for one pass over the backends. Further candidates
//! (after a failed connect) are the others by current weight, highest first (the
//! order the next picks would take), without advancing the rotation.

use std::sync::Mutex;

use super::{Members, Selection};

#[derive(Debug)]
pub struct RoundRobin {
    current: Mutex<Vec<i64>>,
}

impl RoundRobin {
    pub fn new(members: usize) -> RoundRobin {
        RoundRobin {
            current: Mutex::new(vec![0; members]),
        }
    }
}

impl Selection for RoundRobin {
    fn next(&self, members: &Members<'_>, _key_hash: u64, tried: &[usize]) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if !tried.is_empty() {
            // Falling through: the highest current weight left, the rotation unmoved.
            return members.taking().filter(|i| !tried.contains(i)).fold(
                None,
                |b: Option<usize>, i| match b {
                    Some(b) if current[b] >= current[i] => Some(b),
                    _ => Some(i),
                },
            );
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in members.taking() {
            let w = i64::try_from(members.weight(i)).unwrap_or(i64::MAX / 2);
            current[i] = current[i].saturating_add(w);
            total = total.saturating_add(w);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] = current[best].saturating_sub(total);
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{backends, order};
    use super::*;

    fn sequence(rr: &RoundRobin, m: &Members<'_>, picks: usize) -> String {
        (0..picks)
            .map(|_| (b'a' + rr.next(m, 0, &[]).unwrap() as u8) as char)
            .collect()
    }

    #[test]
    fn nginx_smooth_order() {
        let b = backends(3);
        let weights = [5, 1, 1];
        let m = Members::new(&b, &weights, None);
        let rr = RoundRobin::new(3);
        assert_eq!(sequence(&rr, &m, 14), "aabacaaaabacaa");
        let weights = [1, 1, 1];
        let m = Members::new(&b, &weights, None);
        let rr = RoundRobin::new(3);
        assert_eq!(sequence(&rr, &m, 6), "abcabc");
        let weights = [3, 2, 1];
        let m = Members::new(&b, &weights, None);
        let rr = RoundRobin::new(3);
        assert_eq!(sequence(&rr, &m, 6), "abacba");
    }

    #[test]
    fn drained_members_are_skipped_and_fall_through_leaves_the_rotation() {
        let b = backends(3);
        let weights = [2, 0, 1];
        let m = Members::new(&b, &weights, None);
        let rr = RoundRobin::new(3);
        assert_eq!(sequence(&rr, &m, 6), "acaaca");
        // A connection falling through every candidate moves the rotation once.
        assert_eq!(order(&rr, &m, 3), [0, 2]);
        assert_eq!(sequence(&rr, &m, 2), "ca");
    }
}
