//! The metric chunks (`metric_chunks`): what compaction moves there from the head
//! (`metric_samples`), and how they are read back.
//!
//! Time is cut into fixed, aligned windows of [`WINDOW`]; a series has at most one chunk
//! per window (see `storage::chunk` for the blob). Ingest writes only the head; the
//! compaction moves the head's samples of closed windows into chunks, merging them into a
//! window's chunk when it already has one (a late sample), the head winning on equal
//! times: the last write wins across both.

use std::collections::BTreeMap;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement,
    sea_query::{Expr, ExprTrait, OnConflict, Order, Query, SelectStatement},
};

use super::{
    Database,
    chunk::{self, Corrupt},
    entity::{sample, series},
    value::loaded_value,
};

/// A chunk's time window: 30 minutes, in microseconds. Prometheus cuts its chunks at 120
/// samples, 30 minutes of a 15 s scrape: the deltas then repeat often enough that a
/// sample takes about a byte or two, while a query over a short range decodes little
/// more than it needs and a late sample rewrites one small blob.
pub const WINDOW: i64 = 1_800_000_000;
/// How long after its end a window is left to the head, for samples still on their way.
pub const SETTLE: i64 = 60_000_000;
/// Series one compaction transaction takes at most.
const SERIES_BATCH: u64 = 16;
/// Windows of each series one compaction transaction moves at most (8 hours: at a 15 s
/// scrape, 16 series x 1,920 samples), so that none holds the writer for long.
const WINDOWS_PER_TRANSACTION: i64 = 16;
/// Chunk rows in one upserting statement.
const UPSERT_ROWS: usize = 200;

/// The window a time falls in (its aligned start), floored before 1970 too; the first
/// partial window of `i64` time starts at `i64::MIN`.
pub fn window_of(ts: i64) -> i64 {
    ts.div_euclid(WINDOW).saturating_mul(WINDOW)
}

/// The end of the windows that are closed at `now`: compaction moves the head's samples
/// before it.
pub fn closed_before(now: i64) -> i64 {
    window_of(now.saturating_sub(SETTLE))
}

/// A series' window: `(series_id, start_ts)`.
type WindowKey = (i64, i64);

/// What a compaction transaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Head rows moved into chunks.
    pub samples: u64,
    /// Chunks written (new or rewritten).
    pub chunks: u64,
}

fn corrupt(err: Corrupt) -> DbErr {
    DbErr::Custom(err.to_string())
}

/// Up to [`SERIES_BATCH`] series after `after` (by id) that have head samples before
/// `before`, found through the head's `(series_id, ts)` index.
pub async fn series_to_compact(db: &Database, after: i64, before: i64) -> Result<Vec<i64>, DbErr> {
    let select = Query::select()
        .column(series::Column::Id)
        .from(series::Entity)
        .and_where(Expr::col(series::Column::Id).gt(after))
        .and_where(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(sample::Entity)
                .and_where(
                    Expr::col((sample::Entity, sample::Column::SeriesId)).equals((series::Entity, series::Column::Id)),
                )
                .and_where(Expr::col((sample::Entity, sample::Column::Ts)).lt(before))
                .to_owned(),
        ))
        .order_by(series::Column::Id, Order::Asc)
        .limit(SERIES_BATCH)
        .to_owned();
    db.conn().query_all(&select).await?.iter().map(|row| row.try_get_by_index(0)).collect()
}

/// Moves the head samples of the series `ids` before `before` into chunks, in one
/// transaction, up to [`WINDOWS_PER_TRANSACTION`] windows from the oldest; answers
/// whether that was all of them. Retried whole when the database chose it as a deadlock
/// victim.
pub async fn compact(db: &Database, ids: &[i64], before: i64) -> Result<(Moved, bool), DbErr> {
    super::retry_deadlocks(|| compact_once(db, ids, before)).await
}

async fn compact_once(db: &Database, ids: &[i64], before: i64) -> Result<(Moved, bool), DbErr> {
    let txn = super::begin_write_gapless(db.conn()).await?;
    lock_series(&txn, ids).await?;
    let oldest = Query::select()
        .expr(Expr::col(sample::Column::Ts).min())
        .from(sample::Entity)
        .and_where(Expr::col(sample::Column::SeriesId).is_in(ids.iter().copied()))
        .and_where(Expr::col(sample::Column::Ts).lt(before))
        .to_owned();
    let oldest: Option<i64> = match txn.query_one(&oldest).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => None,
    };
    let Some(oldest) = oldest else {
        txn.commit().await?;
        return Ok((Moved::default(), true));
    };
    let from = window_of(oldest);
    let until = Ord::min(from.saturating_add(WINDOWS_PER_TRANSACTION * WINDOW), before);
    let head = Query::select()
        .columns([sample::Column::SeriesId, sample::Column::Ts, sample::Column::Value, sample::Column::Bits])
        .from(sample::Entity)
        .and_where(Expr::col(sample::Column::SeriesId).is_in(ids.iter().copied()))
        .and_where(Expr::col(sample::Column::Ts).lt(until))
        .order_by(sample::Column::SeriesId, Order::Asc)
        .order_by(sample::Column::Ts, Order::Asc)
        .to_owned();
    // (series, window) -> samples by time (the head holds one a series and time).
    let mut windows: BTreeMap<WindowKey, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut moved = Moved::default();
    for row in txn.query_all(&head).await? {
        let (series_id, ts): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        let value = loaded_value(row.try_get_by_index(2)?, row.try_get_by_index(3)?);
        windows.entry((series_id, window_of(ts))).or_default().insert(ts, value);
        moved.samples += 1;
    }
    let delete = Query::delete()
        .from_table(sample::Entity)
        .and_where(Expr::col(sample::Column::SeriesId).is_in(ids.iter().copied()))
        .and_where(Expr::col(sample::Column::Ts).lt(until))
        .to_owned();
    txn.execute(&delete).await?;
    let stored = chunks_in(ids, from, until);
    for row in txn.query_all(&stored).await? {
        let (series_id, start): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        let Some(head) = windows.get_mut(&(series_id, start)) else { continue };
        let blob: Vec<u8> = row.try_get_by_index(2)?;
        for (ts, value) in chunk::decode(&blob).map_err(corrupt)? {
            head.entry(ts).or_insert(value);
        }
    }
    let rows: Vec<_> = windows.into_iter().filter(|(_, samples)| !samples.is_empty()).collect();
    moved.chunks = rows.len() as u64;
    for batch in rows.chunks(UPSERT_ROWS) {
        upsert(&txn, batch).await?;
    }
    txn.commit().await?;
    Ok((moved, until == before))
}

/// Locks the rows of the series `ids` in key order, as ingest does, so that no batch
/// writes their head meanwhile and the two cannot deadlock each other. SQLite's write
/// transaction holds the whole file already.
async fn lock_series(txn: &DatabaseTransaction, ids: &[i64]) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let lock = match backend {
        DbBackend::Postgres => "SELECT id FROM metric_series WHERE id = $1 FOR NO KEY UPDATE",
        DbBackend::MySql => "SELECT id FROM metric_series WHERE id = ? FOR UPDATE",
        _ => return Ok(()),
    };
    let in_key_order = Query::select()
        .column(series::Column::Id)
        .from(series::Entity)
        .and_where(Expr::col(series::Column::Id).is_in(ids.iter().copied()))
        .order_by(series::Column::SeriesKey, Order::Asc)
        .to_owned();
    // One row a statement: a single locking read would lock in the order it scans (by id
    // on MariaDB), not in the order it returns.
    for row in txn.query_all(&in_key_order).await? {
        let id: i64 = row.try_get_by_index(0)?;
        txn.execute_raw(Statement::from_sql_and_values(backend, lock, [id.into()])).await?;
    }
    Ok(())
}

/// Writes chunks, replacing those stored for the same series and window.
async fn upsert(txn: &DatabaseTransaction, rows: &[(WindowKey, BTreeMap<i64, f64>)]) -> Result<(), DbErr> {
    let mut insert = Query::insert()
        .into_table("metric_chunks")
        .columns(["series_id", "start_ts", "first_ts", "end_ts", "samples", "data"])
        .to_owned();
    for ((series_id, start), samples) in rows {
        let points: Vec<(i64, f64)> = samples.iter().map(|(ts, value)| (*ts, *value)).collect();
        let (Some(first), Some(last)) = (points.first(), points.last()) else { continue };
        insert.values_panic([
            (*series_id).into(),
            (*start).into(),
            first.0.into(),
            last.0.into(),
            (points.len() as i32).into(),
            chunk::encode(&points).into(),
        ]);
    }
    insert.on_conflict(
        OnConflict::columns(["series_id", "start_ts"])
            .update_columns(["first_ts", "end_ts", "samples", "data"])
            .to_owned(),
    );
    txn.execute(&insert).await?;
    Ok(())
}

/// The chunks of the series `ids` whose windows start in `[from, until)`: `(series_id,
/// start_ts, data)`, by series and time.
fn chunks_in(ids: &[i64], from: i64, until: i64) -> SelectStatement {
    Query::select()
        .columns(["series_id", "start_ts", "data"])
        .from("metric_chunks")
        .and_where(Expr::col("series_id").is_in(ids.iter().copied()))
        .and_where(Expr::col("start_ts").gte(from))
        .and_where(Expr::col("start_ts").lt(until))
        .order_by("series_id", Order::Asc)
        .order_by("start_ts", Order::Asc)
        .to_owned()
}

/// The chunks of the series `ids` that may hold samples at the times `range`.
pub fn chunks_over(ids: &[i64], range: &std::ops::RangeInclusive<i64>) -> SelectStatement {
    chunks_in(ids, window_of(*range.start()), range.end().saturating_add(1))
}

/// The samples of a chunk row of [`chunks_over`] at the times `range`.
pub fn decode_in(
    row: &sea_orm::QueryResult,
    range: &std::ops::RangeInclusive<i64>,
) -> Result<(i64, Vec<(i64, f64)>), DbErr> {
    let series_id: i64 = row.try_get_by_index(0)?;
    let blob: Vec<u8> = row.try_get_by_index(2)?;
    let mut samples = chunk::decode(&blob).map_err(corrupt)?;
    samples.retain(|(ts, _)| range.contains(ts));
    Ok((series_id, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_and_floor_before_1970() {
        assert_eq!(window_of(0), 0);
        assert_eq!(window_of(WINDOW - 1), 0);
        assert_eq!(window_of(WINDOW), WINDOW);
        assert_eq!(window_of(-1), -WINDOW);
        assert_eq!(closed_before(WINDOW + SETTLE - 1), 0);
        assert_eq!(closed_before(WINDOW + SETTLE), WINDOW);
        assert_eq!(window_of(i64::MIN + 5), i64::MIN);
        assert_eq!(window_of(i64::MAX), i64::MAX - i64::MAX.rem_euclid(WINDOW));
    }
}
