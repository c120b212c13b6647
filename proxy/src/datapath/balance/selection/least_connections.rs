//! Weighted least connections: the backend with the fewest open connections per unit
//! of weight; ties broken at random, in proportion to the weights (so with no
//! connection open anywhere the spread follows the weights, and slow start still
//! holds a fresh backend back). A connection counts from the moment it is picked, so
//! a burst of new connections spreads instead of piling onto one backend. One pass
//! over the backends per pick.

use super::{Members, Selection};

#[derive(Debug)]
pub struct LeastConnections;

impl Selection for LeastConnections {
    fn next(&self, members: &Members<'_>, _key_hash: u64, tried: &[usize]) -> Option<usize> {
        least_loaded(members, |i| tried.contains(&i))
    }
}

/// The least loaded member that takes connections and is not `skip`ped; ties drawn
/// in proportion to their weights.
pub fn least_loaded(members: &Members<'_>, skip: impl Fn(usize) -> bool) -> Option<usize> {
    // (member, its open connections, its weight) of the best so far.
    let mut best: Option<(usize, u128, u128)> = None;
    // Weight of the members tied with the best so far (reservoir sampling).
    let mut tied_weight = 0u64;
    for i in members.taking() {
        if skip(i) {
            continue;
        }
        let (active, weight) = (members.active(i), members.weight(i).max(1));
        let here = (i, u128::from(active), u128::from(weight));
        let Some((_, best_active, best_weight)) = best else {
            (best, tied_weight) = (Some(here), weight);
            continue;
        };
        // active / weight against the best's, without division.
        match (here.1 * best_weight).cmp(&(best_active * here.2)) {
            std::cmp::Ordering::Less => (best, tied_weight) = (Some(here), weight),
            std::cmp::Ordering::Equal => {
                tied_weight += weight;
                if fastrand::u64(0..tied_weight) < weight {
                    best = Some(here);
                }
            }
            std::cmp::Ordering::Greater => {}
        }
    }
    best.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{after_a_stream_of_long_connections, backends, hold, order};
    use super::*;

    #[test]
    fn the_least_loaded_first_then_the_others() {
        let b = backends(3);
        let (_a, _b, _c) = (hold(&b[0], 5), hold(&b[1], 1), hold(&b[2], 3));
        let weights = [1, 1, 1];
        let m = Members::new(&b, &weights, None);
        assert_eq!(order(&LeastConnections, &m, 3), [1, 2, 0]);
        assert_eq!(order(&LeastConnections, &m, 1), [1]);
        // Per unit of weight: 5/10 beats 1/1.
        let weights = [10, 1, 1];
        let m = Members::new(&b, &weights, None);
        assert_eq!(order(&LeastConnections, &m, 3), [0, 1, 2]);
    }

    #[test]
    fn a_stream_of_long_connections_evens_out() {
        let counts = after_a_stream_of_long_connections(&LeastConnections);
        assert!(
            counts.iter().all(|&c| (133..=134).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn ties_follow_the_weights() {
        let b = backends(2);
        let weights = [1, 3];
        let m = Members::new(&b, &weights, None);
        let mut counts = [0u32; 2];
        for _ in 0..20_000 {
            counts[LeastConnections.next(&m, 0, &[]).unwrap()] += 1;
        }
        let share = f64::from(counts[1]) / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn drained_members_are_never_picked() {
        let b = backends(3);
        let weights = [0, 1, 0];
        let m = Members::new(&b, &weights, None);
        assert_eq!(order(&LeastConnections, &m, 3), [1]);
    }
}
