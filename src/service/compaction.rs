//! Compaction: moves the metric samples of closed windows from the head, where ingest
//! writes them, into compressed chunks (see `storage::compaction`).
//!
//! It runs in the retention sweeper's loop, after each sweep, under the same hold of the
//! sweep lock (`storage::retention::SweepLock`), so on one replica at a time, whatever the
//! retention (0 days too). Each transaction takes a few series and a few windows of each (see
//! `storage::compaction`); after each, it pauses as long as the transaction took and, on
//! SQLite, waits for a turn among the ingest batches, as the sweep's chunks do, so ingest
//! is never kept waiting for long. Samples that arrive late for a compacted window land in
//! the head and are merged into its chunk by a later run.

use std::time::{Duration, Instant};

use sea_orm::DbErr;

use crate::{
    metrics::Metrics,
    storage::{
        Database,
        compaction::{self, Moved},
        retention::SweepLock,
    },
    time::now_micros,
};

/// The longest pause between two transactions.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What one compaction did, and how long it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub samples: u64,
    pub chunks: u64,
    pub duration: Duration,
}

/// How a compaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compaction {
    Done(Compacted),
    /// Another replica holds the sweep lock: it compacts this round.
    Busy,
}

/// Compacts the windows closed at `now` (microseconds) if this replica can take the sweep
/// lock; counts it in `/metrics` and logs it (one line when it moved something). Tests
/// call this to compact at a time of their choosing.
pub async fn compact(db: &Database, metrics: &Metrics, now: i64) -> Result<Compaction, DbErr> {
    let result = compact_locked(db, now).await;
    observe(metrics, &result);
    result
}

/// Counts and logs a compaction's result.
pub fn observe(metrics: &Metrics, result: &Result<Compaction, DbErr>) {
    match result {
        Ok(Compaction::Done(done)) => {
            metrics.observe_compaction(done.samples, done.chunks, now_micros().div_euclid(1_000_000));
            if done.samples > 0 {
                tracing::info!(
                    event = "metrics_compacted",
                    samples_moved = done.samples,
                    chunks_written = done.chunks,
                    duration_seconds = done.duration.as_secs_f64(),
                );
            }
        }
        Ok(Compaction::Busy) => tracing::debug!(event = "compaction_skipped", reason = "another replica compacts"),
        Err(err) => {
            metrics.observe_compaction_error();
            tracing::error!(event = "compaction_failed", error = %err);
        }
    }
}

async fn compact_locked(db: &Database, now: i64) -> Result<Compaction, DbErr> {
    let Some(lock) = SweepLock::try_acquire(db).await? else {
        return Ok(Compaction::Busy);
    };
    let result = compact_held(db, now).await;
    lock.release().await;
    result.map(Compaction::Done)
}

/// Compacts the windows closed at `now`; the caller holds the sweep lock.
pub async fn compact_held(db: &Database, now: i64) -> Result<Compacted, DbErr> {
    compact_closed(db, compaction::closed_before(now)).await
}

/// Compacts, a batch of series after another (by id), every head sample before `before`.
async fn compact_closed(db: &Database, before: i64) -> Result<Compacted, DbErr> {
    let started = Instant::now();
    let mut done = Compacted::default();
    let mut after = i64::MIN;
    loop {
        let ids = compaction::series_to_compact(db, after, before).await?;
        let Some(&last) = ids.last() else { break };
        loop {
            let transaction = Instant::now();
            let turn = db.ingest_turn().await;
            let (moved, finished): (Moved, bool) = compaction::compact(db, &ids, before).await?;
            drop(turn);
            done.samples += moved.samples;
            done.chunks += moved.chunks;
            if moved.samples > 0 {
                tokio::time::sleep(transaction.elapsed().min(MAX_PAUSE)).await;
            }
            if finished {
                break;
            }
        }
        after = last;
    }
    done.duration = started.elapsed();
    Ok(done)
}
