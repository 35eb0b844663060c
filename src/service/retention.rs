//! Retention: how long each source's log lines and metric samples are kept, the rule that
//! ingest drops what has already expired, and the sweep that removes what expires later.
//!
//! A source's `retention_days` wins over the global settings (`LOG_RETENTION_DAYS`,
//! `METRIC_RETENTION_DAYS`); 0 keeps data forever. The audit log is never swept.
//!
//! The sweep runs every `RETENTION_INTERVAL_SECONDS` on every replica, but only the one
//! that takes the database's sweep lock works (see `storage::retention::SweepLock`); the
//! others skip that round. It deletes source by source, in chunks of at most
//! [`CHUNK`] rows, each its own short transaction, through the time indexes, so ingest is
//! never kept waiting for long. Metric chunks go once their whole window has expired.
//! Series whose samples have all expired are kept, with their last value (see
//! docs/OPERATIONS.md). After each sweep, the sweeper compacts (`service::compaction`).

use std::time::{Duration, Instant};

use sea_orm::DbErr;

use super::compaction::{self, Compaction};
use crate::{
    config::Retention,
    metrics::{IngestKind, Metrics},
    storage::{self, Database, entity::source, retention::SweepLock},
    time::now_micros,
};

/// Rows one deleting statement removes at most (metric chunks: a tenth of it, each being
/// up to a few kilobytes).
pub const CHUNK: u64 = 10_000;
const METRIC_CHUNKS: u64 = CHUNK / 10;
const DAY_MICROS: i64 = 86_400_000_000;
/// The longest pause between two chunks.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The oldest time kept under a retention of `days` at `now` (microseconds): anything
/// before it has expired. `None` for 0 days (forever).
pub fn cutoff(days: u32, now: i64) -> Option<i64> {
    (days > 0).then(|| now.saturating_sub(i64::from(days) * DAY_MICROS))
}

/// The days `source`'s data of `kind` is kept (0 for forever).
pub fn days_of(source_days: Option<i32>, global: Retention, kind: IngestKind) -> u32 {
    match source_days.and_then(|d| u32::try_from(d).ok()) {
        Some(days) => days,
        None if kind == IngestKind::Logs => global.log_days,
        None => global.metric_days,
    }
}

/// The oldest time of `source`'s data of `kind` that ingest stores now, if any is too old.
pub fn ingest_cutoff(source: &source::Model, global: Retention, kind: IngestKind) -> Option<i64> {
    cutoff(days_of(source.retention_days, global, kind), now_micros())
}

/// What an ingest batch came to: the items stored, and the valid items not stored
/// because they were already older than their source's retention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: usize,
    pub dropped: usize,
}

/// What became of a valid item of a batch answered item by item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    Stored,
    /// Older than its source's retention: accepted, not stored.
    Dropped,
}

/// What one sweep removed, and how long it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub logs: u64,
    pub samples: u64,
    /// Metric chunks of whole windows that had expired.
    pub chunks: u64,
    pub duration: Duration,
}

/// How a sweep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    Done(Swept),
    /// Another replica holds the sweep lock: it sweeps this round.
    Busy,
}

/// Runs one sweep now if this replica can take the sweep lock; counts it in `/metrics`
/// and logs it (one line when it removed something). Tests call this to sweep at a time
/// of their choosing.
pub async fn sweep(db: &Database, metrics: &Metrics, global: Retention) -> Result<Sweep, DbErr> {
    let result = sweep_locked(db, global).await;
    observe(metrics, &result);
    result
}

/// Counts and logs a sweep's result.
fn observe(metrics: &Metrics, result: &Result<Sweep, DbErr>) {
    match result {
        Ok(Sweep::Done(swept)) => {
            metrics.observe_sweep(swept.logs, swept.samples, swept.chunks, now_micros().div_euclid(1_000_000));
            if swept.logs + swept.samples + swept.chunks > 0 {
                tracing::info!(
                    event = "retention_swept",
                    logs_removed = swept.logs,
                    samples_removed = swept.samples,
                    chunks_removed = swept.chunks,
                    duration_seconds = swept.duration.as_secs_f64(),
                );
            }
        }
        Ok(Sweep::Busy) => tracing::debug!(event = "retention_sweep_skipped", reason = "another replica sweeps"),
        Err(err) => {
            metrics.observe_sweep_error();
            tracing::error!(event = "retention_sweep_failed", error = %err);
        }
    }
}

async fn sweep_locked(db: &Database, global: Retention) -> Result<Sweep, DbErr> {
    let Some(lock) = SweepLock::try_acquire(db).await? else {
        return Ok(Sweep::Busy);
    };
    let result = remove_expired(db, global).await;
    lock.release().await;
    result.map(Sweep::Done)
}

/// The sweeper's round: a sweep, then a compaction of the metric samples, both under one
/// hold of the sweep lock (released before either is counted, so that a round counted is
/// a lock free again).
async fn sweep_and_compact(db: &Database, metrics: &Metrics, global: Retention) {
    let lock = match SweepLock::try_acquire(db).await {
        Ok(Some(lock)) => lock,
        busy_or_failed => {
            let result = busy_or_failed.map(|_| Sweep::Busy);
            observe(metrics, &result);
            return;
        }
    };
    let swept = remove_expired(db, global).await.map(Sweep::Done);
    let compacted = compaction::compact_held(db, now_micros()).await.map(Compaction::Done);
    lock.release().await;
    observe(metrics, &swept);
    compaction::observe(metrics, &compacted);
}

async fn remove_expired(db: &Database, global: Retention) -> Result<Swept, DbErr> {
    let started = Instant::now();
    let now = now_micros();
    let mut swept = Swept::default();
    for (source_id, days) in storage::sources::retention_settings(db.conn()).await? {
        let id = source_id.as_str();
        if let Some(before) = cutoff(days_of(days, global, IngestKind::Logs), now) {
            swept.logs +=
                in_chunks(db, CHUNK, move |db| storage::retention::delete_logs(db, id, before, CHUNK)).await?;
        }
        if let Some(before) = cutoff(days_of(days, global, IngestKind::Samples), now) {
            swept.samples +=
                in_chunks(db, CHUNK, move |db| storage::retention::delete_samples(db, id, before, CHUNK)).await?;
            swept.chunks += in_chunks(db, METRIC_CHUNKS, move |db| {
                storage::retention::delete_chunks(db, id, before, METRIC_CHUNKS)
            })
            .await?;
        }
    }
    swept.duration = started.elapsed();
    Ok(swept)
}

/// Runs `delete` (one chunk of at most `chunk` rows) until a chunk comes back short;
/// returns the rows removed. After a full chunk it pauses as long as the chunk took, so
/// that a backlog is worked off at no more than half the pace the database could take
/// and ingest keeps most of it. On SQLite each chunk also waits for a turn among the
/// ingest batches (`Database::ingest_turn`), so producers are served in between, in order.
async fn in_chunks<'a, F, Fut>(db: &'a Database, chunk: u64, mut delete: F) -> Result<u64, DbErr>
where
    F: FnMut(&'a Database) -> Fut,
    Fut: Future<Output = Result<u64, DbErr>>,
{
    let mut removed = 0;
    loop {
        let started = Instant::now();
        let turn = db.ingest_turn().await;
        let deleted = delete(db).await?;
        drop(turn);
        removed += deleted;
        if deleted < chunk {
            return Ok(removed);
        }
        tokio::time::sleep(started.elapsed().min(MAX_PAUSE)).await;
    }
}

/// Sweeps, then compacts the metric samples (see `service::compaction`), every `every`,
/// the first time at once, until the task is aborted.
pub fn spawn_sweeper(
    db: Database,
    metrics: std::sync::Arc<Metrics>,
    global: Retention,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // Errors are counted and logged; the next round tries again.
            sweep_and_compact(&db, &metrics, global).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keep_forever_and_a_source_wins_over_the_global_setting() {
        let global = Retention { log_days: 30, metric_days: 90 };
        assert_eq!(cutoff(0, 1_000), None);
        assert_eq!(cutoff(1, 2 * DAY_MICROS), Some(DAY_MICROS));
        assert_eq!(days_of(None, global, IngestKind::Logs), 30);
        assert_eq!(days_of(None, global, IngestKind::Samples), 90);
        assert_eq!(days_of(Some(0), global, IngestKind::Logs), 0);
        assert_eq!(days_of(Some(7), global, IngestKind::Samples), 7);
    }
}
