//! Login throttling policy: after `limit` failures inside `window`, a key is blocked for a
//! back-off that starts at 60 s and doubles with each further block, capped at 900 s. A
//! success clears the account's record.
//!
//! This is the arithmetic only, on wall-clock microseconds so that every replica reads a
//! record the same way; `identity::throttle` keeps the records in the database.

/// Microseconds in a second.
const SECOND: i64 = 1_000_000;
const FIRST_BLOCK: i64 = 60 * SECOND;
pub const MAX_BLOCK: i64 = 900 * SECOND;

/// One key's failures, as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Failures since `window_start`.
    pub failures: i32,
    pub window_start: i64,
    /// When the current (or last) block ends; 0 if there never was one.
    pub blocked_until: i64,
    /// Blocks so far, which sets the next one's length.
    pub blocks: i32,
}

/// The policy for one kind of key (account or client address).
#[derive(Clone, Copy, Debug)]
pub struct Limiter {
    limit: i32,
    window: i64,
}

impl Limiter {
    pub const fn new(limit: i32, window_seconds: i64) -> Self {
        Self { limit, window: window_seconds * SECOND }
    }

    /// `Some(seconds)` while `record` is blocked at `now`.
    pub fn blocked_for(record: &Record, now: i64) -> Option<u64> {
        let left = record.blocked_until.saturating_sub(now);
        (left > 0).then(|| u64::try_from((left + SECOND - 1) / SECOND).unwrap_or(1).max(1))
    }

    /// Counts a failure at `now`; `Some(seconds)` if it started a block. Failures count
    /// from the first one of a window; a window ends `window` after its first failure.
    pub fn fail(&self, record: &mut Record, now: i64) -> Option<u64> {
        if record.failures == 0 || now.saturating_sub(record.window_start) >= self.window {
            record.failures = 0;
            record.window_start = now;
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures < self.limit {
            return None;
        }
        let doublings = u32::try_from(record.blocks).unwrap_or(0).min(16);
        let block = FIRST_BLOCK.saturating_mul(1 << doublings).min(MAX_BLOCK);
        record.blocks = record.blocks.saturating_add(1);
        record.blocked_until = now.saturating_add(block);
        record.failures = 0;
        Some(u64::try_from(block / SECOND).unwrap_or(1))
    }

    /// Takes back one failure counted at `now` in the current window (the attempt
    /// succeeded); false when there is none to take back.
    pub fn take_back(&self, record: &mut Record, now: i64) -> bool {
        if record.failures == 0 || now.saturating_sub(record.window_start) >= self.window {
            return false;
        }
        record.failures -= 1;
        true
    }

    /// Until when `record` is worth keeping: while it counts failures, is blocked, or may
    /// still lengthen the next block (for `MAX_BLOCK` after a block ends).
    pub fn keep_until(&self, record: &Record) -> i64 {
        let counting = if record.failures > 0 { record.window_start.saturating_add(self.window) } else { 0 };
        let backing_off = if record.blocks > 0 { record.blocked_until.saturating_add(MAX_BLOCK) } else { 0 };
        counting.max(backing_off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_backs_off() {
        let limiter = Limiter::new(3, 60);
        let t0 = 1_700_000_000 * SECOND;
        let mut a = Record::default();
        assert_eq!(limiter.fail(&mut a, t0), None);
        assert_eq!(limiter.fail(&mut a, t0), None);
        assert_eq!(limiter.fail(&mut a, t0), Some(60));
        assert_eq!(Limiter::blocked_for(&a, t0), Some(60));
        assert_eq!(Limiter::blocked_for(&a, t0 + 59 * SECOND + 1), Some(1), "rounded up");
        assert_eq!(Limiter::blocked_for(&Record::default(), t0), None);
        let later = t0 + 61 * SECOND;
        assert_eq!(Limiter::blocked_for(&a, later), None);
        limiter.fail(&mut a, later);
        limiter.fail(&mut a, later);
        assert_eq!(limiter.fail(&mut a, later), Some(120), "the second block doubles");
        for _ in 0..40 {
            limiter.fail(&mut a, later);
        }
        assert_eq!(Limiter::blocked_for(&a, later), Some(900), "capped");
    }

    #[test]
    fn a_success_takes_back_one_failure_of_the_window() {
        let limiter = Limiter::new(3, 60);
        let t0 = 1_700_000_000 * SECOND;
        let mut a = Record::default();
        assert!(!limiter.take_back(&mut a, t0), "nothing to take back");
        limiter.fail(&mut a, t0);
        limiter.fail(&mut a, t0);
        assert!(limiter.take_back(&mut a, t0));
        assert_eq!(a.failures, 1);
        assert_eq!(limiter.fail(&mut a, t0), None, "two failures, not three");
        assert!(!limiter.take_back(&mut a, t0 + 61 * SECOND), "the window is over");
    }

    #[test]
    fn a_window_starts_at_its_first_failure_and_records_expire() {
        let limiter = Limiter::new(2, 10);
        let t0 = 1_700_000_000 * SECOND;
        let mut a = Record::default();
        limiter.fail(&mut a, t0);
        assert_eq!(limiter.keep_until(&a), t0 + 10 * SECOND);
        assert_eq!(limiter.fail(&mut a, t0 + 11 * SECOND), None, "the first failure has left the window");
        assert_eq!(limiter.fail(&mut a, t0 + 12 * SECOND), Some(60));
        assert_eq!(limiter.keep_until(&a), t0 + 12 * SECOND + 60 * SECOND + MAX_BLOCK);
    }
}
