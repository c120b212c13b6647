//! Power of two choices: two backends drawn at random (in proportion to their
//! weights), the one with fewer open connections per unit of weight taken. After a
//! failed connect, two more are drawn among the others. As good as least
//! connections at spreading long-lived connections, without every worker converging
//! on the same least-loaded backend at once; a draw costs about the same with 3 or
//! 300 backends (see `Members::draw`).

use super::{Members, Selection};

#[derive(Debug)]
pub struct RandomTwo;

impl Selection for RandomTwo {
    fn next(&self, members: &Members<'_>, _key_hash: u64, tried: &[usize]) -> Option<usize> {
        let first = members.draw(|i| tried.contains(&i))?;
        let Some(second) = members.draw(|i| i == first || tried.contains(&i)) else {
            return Some(first);
        };
        // The second draw wins only if strictly lighter: a tie keeps the first draw,
        // which was random already.
        match members.compare_load(second, first) {
            std::cmp::Ordering::Less => Some(second),
            _ => Some(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{after_a_stream_of_long_connections, backends, hold, order};
    use super::*;

    #[test]
    fn the_lighter_of_two_then_the_rest() {
        let b = backends(3);
        let _loaded = hold(&b[0], 50);
        let weights = [1, 1, 1];
        let m = Members::new(&b, &weights, None);
        for _ in 0..200 {
            let all = order(&RandomTwo, &m, 3);
            let mut sorted = all.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2], "each once: {all:?}");
            // The loaded one is never first: whatever the draw, its partner is lighter.
            assert_ne!(all[0], 0, "{all:?}");
        }
        assert_eq!(order(&RandomTwo, &m, 1).len(), 1);
    }

    #[test]
    fn a_stream_of_long_connections_evens_out() {
        let counts = after_a_stream_of_long_connections(&RandomTwo);
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
        assert_eq!(order(&RandomTwo, &m, 3), [1]);
        let none = [0, 0];
        let m = Members::new(&b, &none, None);
        assert!(order(&RandomTwo, &m, 3).is_empty());
    }
}
