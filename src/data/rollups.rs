//! Per-minute rollups of metric samples: each series' count, sum, min and max of every
//! minute, kept by ingest in the samples' transaction, so that a range query whose
//! buckets are whole minutes reads one entry a minute instead of every sample.
//!
//! A row holds one hour of one series (`metric_rollups`: `series_id`, `hour`, `minutes`),
//! its minutes packed in a blob: a query over 100 series and a day reads 2,400 rows, not
//! 144,000. Every database driver pays per row returned (on SQLite, a channel send and a
//! thread wake-up each), so the row count is what the query's time follows.
//!
//! The blob is a sequence of 33-byte entries, ordered by minute, each
//! `[minute 0-59: u8][count: i64][sum: f64][min: f64][max: f64]`, little-endian.

use std::collections::BTreeMap;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult, Statement, Value,
    sea_query::{Expr, ExprTrait, Query},
    sqlx,
};

/// One minute, in microseconds.
pub const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const ENTRY: usize = 33;
/// Rows per statement when reading or writing rollups (two or three parameters each).
const CHUNK: usize = 1_000;

/// The count, sum, min and max of some samples: every aggregation is computed from these,
/// and two of them merge into those of both sets of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partial {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Partial {
    pub fn of(value: f64) -> Self {
        Self { count: 1, sum: value, min: value, max: value }
    }

    pub fn merge(&mut self, other: &Partial) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// A part of a [`Partial`], computed over samples in SQL.
#[derive(Clone, Copy)]
pub enum Part {
    Count,
    Sum,
    Min,
    Max,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Count, Part::Sum, Part::Min, Part::Max];

    pub fn sql(self) -> &'static str {
        match self {
            Part::Count => "COUNT(*)",
            Part::Sum => "SUM(value)",
            Part::Min => "MIN(value)",
            Part::Max => "MAX(value)",
        }
    }
}

impl Partial {
    /// `parts` from the row's columns from `first` on; the other parts stay empty (a
    /// query that computes only some of them reads only those).
    pub fn read(row: &QueryResult, first: usize, parts: &[Part]) -> Result<Self, DbErr> {
        let mut p = Partial { count: 0, sum: 0.0, min: f64::NAN, max: f64::NAN };
        for (i, part) in parts.iter().enumerate() {
            match part {
                Part::Count => p.count = row.try_get_by_index(first + i)?,
                Part::Sum => p.sum = row.try_get_by_index(first + i)?,
                Part::Min => p.min = row.try_get_by_index(first + i)?,
                Part::Max => p.max = row.try_get_by_index(first + i)?,
            }
        }
        Ok(p)
    }
}

/// The start of the minute or hour `ts` falls in, also before 1970.
fn floor(ts: i64, width: i64) -> i64 {
    ts - ts.rem_euclid(width)
}

/// One series-hour's minutes, by minute of the hour.
type Minutes = BTreeMap<u8, Partial>;

fn encode(minutes: &Minutes) -> Vec<u8> {
    let mut blob = Vec::with_capacity(minutes.len() * ENTRY);
    for (minute, p) in minutes {
        blob.push(*minute);
        blob.extend_from_slice(&p.count.to_le_bytes());
        for v in [p.sum, p.min, p.max] {
            blob.extend_from_slice(&v.to_le_bytes());
        }
    }
    blob
}

/// The entries of a blob; a malformed one is an error, never a panic.
fn decode(blob: &[u8]) -> Result<impl Iterator<Item = (u8, Partial)> + '_, DbErr> {
    if !blob.len().is_multiple_of(ENTRY) {
        return Err(DbErr::Custom(format!("metric rollup of {} bytes is not whole entries", blob.len())));
    }
    Ok(blob.chunks_exact(ENTRY).map(|e| {
        let word = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&e[at..at + 8]);
            bytes
        };
        let p = Partial {
            count: i64::from_le_bytes(word(1)),
            sum: f64::from_le_bytes(word(9)),
            min: f64::from_le_bytes(word(17)),
            max: f64::from_le_bytes(word(25)),
        };
        (e[0], p)
    }))
}

/// A batch's `(series_id, ts, value)` samples summed up per series-hour and minute, in
/// key order (the order in which concurrent batches meet the rollups' primary key).
pub fn of_batch(samples: impl Iterator<Item = (i64, i64, f64)>) -> BTreeMap<(i64, i64), Minutes> {
    let mut rows: BTreeMap<(i64, i64), Minutes> = BTreeMap::new();
    for (series_id, ts, value) in samples {
        let hour = floor(ts, HOUR);
        let minute = ((ts - hour) / MINUTE) as u8;
        let minutes = rows.entry((series_id, hour)).or_default();
        minutes.entry(minute).and_modify(|p| p.merge(&Partial::of(value))).or_insert(Partial::of(value));
    }
    rows
}

/// Merges `batch` into the stored rows it shares a key with; returns the rows to write.
fn merged(
    mut batch: BTreeMap<(i64, i64), Minutes>,
    stored: Vec<(i64, i64, Vec<u8>)>,
) -> Result<Vec<(i64, i64, Vec<u8>)>, DbErr> {
    for (series_id, hour, blob) in stored {
        if let Some(minutes) = batch.get_mut(&(series_id, hour)) {
            for (minute, p) in decode(&blob)? {
                minutes.entry(minute).and_modify(|m| m.merge(&p)).or_insert(p);
            }
        }
    }
    Ok(batch.into_iter().map(|((series_id, hour), minutes)| (series_id, hour, encode(&minutes))).collect())
}

/// Adds a batch to the rollups, inside the batch's transaction (SQLite and MariaDB
/// ingest, and the backfill on every backend).
///
/// The caller holds the batch's series rows (SQLite: the write lock; MariaDB: the series
/// upserts lock them), so no other batch changes these rollups meanwhile, and a plain
/// read finds them as they are: MariaDB ingest reads at READ COMMITTED, which sees the
/// latest committed rows, not a snapshot from the transaction's start (the backfill runs
/// before anything else writes rollups). A locking read would lock the gaps where the
/// rollups it does not find would go, and two batches inserting into one gap deadlock.
/// PostgreSQL (only the backfill comes here) reads with `FOR UPDATE`.
pub async fn add(txn: &DatabaseTransaction, batch: BTreeMap<(i64, i64), Minutes>) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let keys: Vec<(i64, i64)> = batch.keys().copied().collect();
    let mut stored = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let pairs = tuples(backend, chunk.len(), 2);
        // SQLite takes a list of row values only as a subquery.
        let (pairs, lock) = match backend {
            DbBackend::MySql => (pairs, ""),
            DbBackend::Postgres => (format!("VALUES {pairs}"), " FOR UPDATE"),
            _ => (format!("VALUES {pairs}"), ""),
        };
        let sql =
            format!("SELECT series_id, hour, minutes FROM metric_rollups WHERE (series_id, hour) IN ({pairs}){lock}");
        let values = chunk.iter().flat_map(|(s, h)| [Value::from(*s), Value::from(*h)]);
        for row in txn.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await? {
            stored.push((row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?));
        }
    }
    let rows = merged(batch, stored)?;
    let replace = match backend {
        DbBackend::MySql => " ON DUPLICATE KEY UPDATE minutes = VALUES(minutes)",
        _ => " ON CONFLICT (series_id, hour) DO UPDATE SET minutes = excluded.minutes",
    };
    for chunk in rows.chunks(CHUNK) {
        let rows = tuples(backend, chunk.len(), 3);
        let sql = format!("INSERT INTO metric_rollups (series_id, hour, minutes) VALUES {rows}{replace}");
        let values = chunk.iter().flat_map(|(s, h, m)| [Value::from(*s), Value::from(*h), Value::from(m.clone())]);
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    }
    Ok(())
}

/// `(?, ?), (?, ?)` (`($1, $2), ($3, $4)` on PostgreSQL): `rows` tuples of `width`.
fn tuples(backend: DbBackend, rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                DbBackend::Postgres => sql.push_str(&format!("${}", row * width + column + 1)),
                _ => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// PostgreSQL ingest: [`add`] in two statements over arrays. The caller holds the batch's series
/// rows (`FOR NO KEY UPDATE`).
pub async fn add_pg(txn: &mut sqlx::PgConnection, batch: BTreeMap<(i64, i64), Minutes>) -> Result<(), sqlx::Error> {
    let series: Vec<i64> = batch.keys().map(|k| k.0).collect();
    let hours: Vec<i64> = batch.keys().map(|k| k.1).collect();
    let stored: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT r.series_id, r.hour, r.minutes FROM metric_rollups AS r \
         JOIN UNNEST($1::int8[], $2::int8[]) AS k(series_id, hour) USING (series_id, hour) FOR UPDATE OF r",
    )
    .bind(&series)
    .bind(&hours)
    .fetch_all(&mut *txn)
    .await?;
    // A stored blob that is not whole entries: a decoding error, as sqlx reports others.
    let rows = merged(batch, stored).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let (mut series, mut hours, mut blobs) = (Vec::new(), Vec::new(), Vec::new());
    for (s, h, m) in rows {
        series.push(s);
        hours.push(h);
        blobs.push(m);
    }
    sqlx::query(
        "INSERT INTO metric_rollups (series_id, hour, minutes) \
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::bytea[]) \
         ON CONFLICT (series_id, hour) DO UPDATE SET minutes = EXCLUDED.minutes",
    )
    .bind(series)
    .bind(hours)
    .bind(blobs)
    .execute(&mut *txn)
    .await?;
    Ok(())
}

/// The minutes in `[from, until)` of the series `ids` as `(series_id, minute start,
/// partial)`; `from` and `until` are whole minutes.
pub async fn read(
    db: &DatabaseConnection,
    ids: &[i64],
    from: i64,
    until: i64,
) -> Result<Vec<(i64, i64, Partial)>, DbErr> {
    let statement = Query::select()
        .columns(["series_id", "hour", "minutes"])
        .from("metric_rollups")
        .and_where(Expr::col("series_id").is_in(ids.iter().copied()))
        .and_where(Expr::col("hour").gte(floor(from, HOUR)))
        .and_where(Expr::col("hour").lt(until))
        .to_owned();
    let mut minutes = Vec::new();
    for row in db.query_all(&statement).await? {
        let (series_id, hour): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        let blob: Vec<u8> = row.try_get_by_index(2)?;
        for (minute, p) in decode(&blob)? {
            let at = hour + i64::from(minute) * MINUTE;
            if (from..until).contains(&at) {
                minutes.push((series_id, at, p));
            }
        }
    }
    Ok(minutes)
}

/// Builds the rollups of the samples already stored, series by series (the migration
/// that creates the table runs it).
pub async fn backfill(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let ids = txn.query_all_raw(Statement::from_string(backend, "SELECT id FROM metric_series ORDER BY id")).await?;
    // The minute a sample falls in, floored also before 1970.
    let minute = format!("ts - ((ts % {MINUTE}) + {MINUTE}) % {MINUTE}");
    for id in ids {
        let id: i64 = id.try_get_by_index(0)?;
        let statement = Query::select()
            .expr(Expr::cust(minute.clone()))
            .exprs(Part::ALL.map(|part| Expr::cust(part.sql())))
            .from("metric_samples")
            .and_where(Expr::col("series_id").eq(id))
            .add_group_by([Expr::cust(minute.clone())])
            .to_owned();
        let mut batch: BTreeMap<(i64, i64), Minutes> = BTreeMap::new();
        for row in txn.query_all(&statement).await? {
            let at: i64 = row.try_get_by_index(0)?;
            let p = Partial::read(&row, 1, &Part::ALL)?;
            let hour = floor(at, HOUR);
            batch.entry((id, hour)).or_default().insert(((at - hour) / MINUTE) as u8, p);
        }
        add(txn, batch).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_merge_minute_by_minute() {
        let hour = 1_767_225_600_000_000;
        let batch = of_batch([(1, hour, 2.0), (1, hour + 59 * MINUTE + 1, -1.5), (1, hour, 4.0)].into_iter());
        let minutes = &batch[&(1, hour)];
        assert_eq!(minutes[&0], Partial { count: 2, sum: 6.0, min: 2.0, max: 4.0 });
        assert_eq!(minutes[&59], Partial::of(-1.5));
        let blob = encode(minutes);
        assert_eq!(blob.len(), 2 * ENTRY);
        assert_eq!(decode(&blob).unwrap().collect::<Vec<_>>(), vec![(0, minutes[&0]), (59, minutes[&59])]);

        // A second batch for minute 0 and a new minute merges into the stored row.
        let rows = merged(of_batch([(1, hour + 30, 10.0), (1, hour + MINUTE, 7.0)].into_iter()), vec![(1, hour, blob)])
            .unwrap();
        assert_eq!(rows.len(), 1);
        let merged: Vec<_> = decode(&rows[0].2).unwrap().collect();
        assert_eq!(
            merged,
            vec![
                (0, Partial { count: 3, sum: 16.0, min: 2.0, max: 10.0 }),
                (1, Partial::of(7.0)),
                (59, Partial::of(-1.5))
            ]
        );
        assert!(decode(&[0; ENTRY + 1]).is_err());
    }

    #[test]
    fn minutes_and_hours_floor_before_1970_too() {
        assert_eq!(floor(-1, MINUTE), -MINUTE);
        assert_eq!(floor(-MINUTE, MINUTE), -MINUTE);
        let batch = of_batch([(7, -1, 1.0)].into_iter());
        assert_eq!(batch.keys().next(), Some(&(7, -HOUR)));
        assert!(batch[&(7, -HOUR)].contains_key(&59));
    }
}
