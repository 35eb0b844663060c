//! Login throttling: per account and per client address, in memory, bounded.
//!
//! After `limit` failures inside `window`, the key is blocked for a back-off that starts
//! at 60 s and doubles with each further block, capped at 900 s. A success clears the
//! account's record. Each replica keeps its own counts (documented in OPERATIONS).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

const FIRST_BLOCK: Duration = Duration::from_secs(60);
const MAX_BLOCK: Duration = Duration::from_secs(900);
/// Entries kept per table before old ones are pruned.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
struct Record {
    failures: Vec<Instant>,
    blocked_until: Option<Instant>,
    blocks: u32,
}

/// Failure counts for one kind of key (account name or client address).
#[derive(Debug)]
pub struct Limiter<K> {
    limit: usize,
    window: Duration,
    records: Mutex<HashMap<K, Record>>,
}

impl<K: Eq + Hash + Clone> Limiter<K> {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self { limit, window, records: Mutex::new(HashMap::new()) }
    }

    /// `Some(seconds)` while `key` is blocked.
    pub fn blocked_for(&self, key: &K, now: Instant) -> Option<u64> {
        let records = self.records.lock().ok()?;
        let until = records.get(key)?.blocked_until?;
        (until > now).then(|| until.duration_since(now).as_secs().max(1))
    }

    /// Records a failure; returns `Some(seconds)` if this failure started a block.
    pub fn fail(&self, key: &K, now: Instant) -> Option<u64> {
        let mut records = self.records.lock().ok()?;
        if records.len() >= MAX_ENTRIES && !records.contains_key(key) {
            prune(&mut records, now, self.window);
        }
        let record = records.entry(key.clone()).or_default();
        record.failures.retain(|t| now.duration_since(*t) < self.window);
        record.failures.push(now);
        if record.failures.len() < self.limit {
            return None;
        }
        let block = FIRST_BLOCK.saturating_mul(2u32.saturating_pow(record.blocks)).min(MAX_BLOCK);
        record.blocks = record.blocks.saturating_add(1);
        record.blocked_until = Some(now + block);
        record.failures.clear();
        Some(block.as_secs())
    }

    pub fn reset(&self, key: &K) {
        if let Ok(mut records) = self.records.lock() {
            records.remove(key);
        }
    }

    /// Drops records with nothing recent in them.
    pub fn prune(&self, now: Instant) {
        if let Ok(mut records) = self.records.lock() {
            prune(&mut records, now, self.window);
        }
    }

    pub fn len(&self) -> usize {
        self.records.lock().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn prune<K>(records: &mut HashMap<K, Record>, now: Instant, window: Duration) {
    records.retain(|_, r| {
        let blocked = r.blocked_until.is_some_and(|u| u > now);
        // Keep the back-off memory for a while after a block ends.
        let recently_blocked = r.blocked_until.is_some_and(|u| now.saturating_duration_since(u) < MAX_BLOCK);
        blocked || recently_blocked || r.failures.iter().any(|t| now.duration_since(*t) < window)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_backs_off() {
        let limiter = Limiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(limiter.fail(&"a", t0), None);
        assert_eq!(limiter.fail(&"a", t0), None);
        assert_eq!(limiter.fail(&"a", t0), Some(60));
        assert_eq!(limiter.blocked_for(&"a", t0), Some(60));
        assert_eq!(limiter.blocked_for(&"b", t0), None);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(limiter.blocked_for(&"a", later), None);
        limiter.fail(&"a", later);
        limiter.fail(&"a", later);
        assert_eq!(limiter.fail(&"a", later), Some(120), "the second block doubles");
        limiter.reset(&"a");
        assert_eq!(limiter.blocked_for(&"a", later), None);
    }

    #[test]
    fn old_failures_leave_the_window_and_state_is_pruned() {
        let limiter = Limiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        limiter.fail(&1, t0);
        assert_eq!(limiter.fail(&1, t0 + Duration::from_secs(11)), None);
        limiter.prune(t0 + Duration::from_secs(30));
        assert!(limiter.is_empty());
    }
}
