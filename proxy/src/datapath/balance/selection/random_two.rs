//! Power of two choices: two backends drawn at random (in proportion to their
//! weights), the one with fewer open connections per unit of weight first, then the
//! other; further candidates (after two failed connects) by least connections. As
//! good as least connections in spreading long-lived connections, without every
//! worker converging on the same least-loaded backend at once.

use super::least_connections::least_loaded;
use super::{Members, Selection};

#[derive(Debug)]
pub struct RandomTwo;

impl Selection for RandomTwo {
    fn pick(&self, members: &Members<'_>, _key_hash: u64, n: usize, out: &mut Vec<usize>) {
        let Some(first) = members.draw(&[]) else {
            return;
        };
        out.push(first);
        if let Some(second) = members.draw(out) {
            // The second draw goes first only if strictly lighter: ties keep the
            // first draw, which was random already.
            match members.compare_load(second, first) {
                std::cmp::Ordering::Less => out.insert(0, second),
                _ => out.push(second),
            }
        }
        out.truncate(n);
        while out.len() < n {
            match least_loaded(members, out) {
                Some(i) => out.push(i),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{backends, hold};
    use super::*;

    fn pick(m: &Members<'_>, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        RandomTwo.pick(m, 0, n, &mut out);
        out
    }

    #[test]
    fn the_lighter_of_two_then_the_rest() {
        let b = backends(3);
        let _loaded = hold(&b[0], 50);
        let weights = [1, 1, 1];
        let m = Members::new(&b, &weights, None);
        for _ in 0..200 {
            let order = pick(&m, 3);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2], "each once: {order:?}");
            // The loaded one is never first: whatever the draw, its partner is lighter.
            assert_ne!(order[0], 0, "{order:?}");
        }
        assert_eq!(pick(&m, 1).len(), 1);
    }

    #[test]
    fn a_stream_of_long_connections_evens_out() {
        let b = backends(3);
        let mut open = hold(&b[0], 100);
        let weights = [1, 1, 1];
        for _ in 0..300 {
            let m = Members::new(&b, &weights, None);
            let i = pick(&m, 1)[0];
            open.push(b[i].connection());
        }
        let counts: Vec<i64> = b.iter().map(|b| b.active_connections()).collect();
        assert!(
            counts.iter().all(|&c| (107..=160).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn one_member_or_none() {
        let b = backends(2);
        let weights = [0, 1];
        let m = Members::new(&b, &weights, None);
        assert_eq!(pick(&m, 3), [1]);
        let none = [0, 0];
        let m = Members::new(&b, &none, None);
        assert!(pick(&m, 3).is_empty());
    }
}
