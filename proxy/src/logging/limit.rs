//! A limit on log lines per second, so a flood of bad input cannot flood the log.

use std::sync::Mutex;

/// Lets at most `per_second` lines through per second and reports how many it held
/// back, so a flood of bad handshakes cannot flood the log.
#[derive(Debug, Default)]
pub struct LogLimiter(Mutex<LogWindow>);

#[derive(Debug, Default)]
struct LogWindow {
    second: u64,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new() -> LogLimiter {
        LogLimiter(Mutex::new(LogWindow {
            second: 0,
            logged: 0,
            suppressed: 0,
        }))
    }

    /// `(may log this one, lines suppressed in the previous window)`.
    pub fn check(&self, per_second: u32) -> (bool, u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = 0;
        if w.second != now {
            report = w.suppressed;
            *w = LogWindow {
                second: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < per_second {
            w.logged += 1;
            (true, report)
        } else {
            w.suppressed += 1;
            (false, report)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_caps_lines() {
        let l = LogLimiter::default();
        let allowed = (0..100).filter(|_| l.check(5).0).count();
        // The loop may straddle a second boundary: at most two windows' worth.
        assert!((5..=10).contains(&allowed), "{allowed}");
    }
}
