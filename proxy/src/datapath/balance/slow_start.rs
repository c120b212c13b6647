//! Slow start: a backend that comes up (health, runtime `ready`, added by a reload)
//! gets a share of its weight that grows linearly from [`FLOOR_PERMILLE`] to all of
//! it over the pool's `slow_start` (Envoy's default shape). Least connections would
//! otherwise send a fresh backend every new connection until it caught up.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The share of its weight a backend gets the moment it comes up: 10 %.
pub const FLOOR_PERMILLE: u64 = 100;

/// Milliseconds on this process's monotonic clock, from 1 (0 means "never").
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// Thousandths of its weight a backend that came up at `since_ms` gets at `now_ms`
/// with a ramp of `ramp` (`since_ms` 0: it never ramped, or it is past the ramp).
pub fn permille(since_ms: u64, now_ms: u64, ramp: Duration) -> u64 {
    let ramp_ms = u64::try_from(ramp.as_millis()).unwrap_or(u64::MAX);
    let elapsed = now_ms.saturating_sub(since_ms);
    if since_ms == 0 || ramp_ms == 0 || elapsed >= ramp_ms {
        return 1000;
    }
    // elapsed < ramp_ms, so the product fits in u128 and the quotient is below 1000.
    let share = (u128::from(elapsed) * 1000 / u128::from(ramp_ms)) as u64;
    share.max(FLOOR_PERMILLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_from_the_floor() {
        let ramp = Duration::from_secs(10);
        assert_eq!(permille(0, 5_000, ramp), 1000, "never came up: full");
        assert_eq!(permille(1_000, 1_000, ramp), FLOOR_PERMILLE);
        assert_eq!(
            permille(1_000, 1_500, ramp),
            FLOOR_PERMILLE,
            "5 % is below the floor"
        );
        assert_eq!(permille(1_000, 6_000, ramp), 500);
        assert_eq!(permille(1_000, 10_999, ramp), 999);
        assert_eq!(permille(1_000, 11_000, ramp), 1000);
        assert_eq!(permille(1_000, u64::MAX, Duration::MAX), 999);
        assert!(now_ms() >= 1);
    }
}
