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
//!
//! The same row also holds the hour's five-second slots (`fine`), for range queries whose
//! start and step are whole multiples of five seconds but not of a minute (a 100 s step,
//! a 15 s step from a quarter past): 720 slots at most, where a 10 s scrape has 360
//! samples. Each entry, in slot order, starts with a header byte: its six high bits are
//! the number of empty slots since the previous entry (63: the slot follows as a `u16`),
//! its two low bits the kind of what follows:
//! - 0: `[count: i64][sum: f64][min: f64][max: f64]`, a slot of several samples;
//! - 1: `[value: f64]`, a slot of one sample;
//! - 2: a slot of one sample whose value is a whole number (below 2^53, not -0), as
//!   its difference from the previous such value in the blob (0 before the first), zigzag
//!   LEB128: a counter or a byte gauge scraped every 10 s takes 2 to 4 bytes a slot.
//!
//! Replicas of a release before the slots keep writing the minutes alone during a rolling
//! update: a row they create has no slots (`NULL`), and a row they add to has slots that
//! miss samples. So a row whose slots are kept starts its minutes with a mark, an entry
//! of no samples under the first minute, which merges into that minute as nothing, for
//! every release. Those replicas rewrite the minutes from their decoded entries, one per
//! minute, which drops the mark. A row without the mark (or whose slots count other
//! samples than its minutes, which ingest also checks) has its slots dropped and never
//! added to again, and queries over it ([`read_fine`] answers `false`) read the samples.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{Stream, TryStreamExt};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult, Statement, Value,
    sea_query::{Expr, ExprTrait, Query, SelectStatement},
    sqlx,
};

use super::{compaction, value::loaded_value};
use crate::float::whole;

/// One minute, in microseconds.
pub const MINUTE: i64 = 60_000_000;
/// The width of a fine slot: five seconds, in microseconds.
pub const FINE: i64 = 5_000_000;
const HOUR: i64 = 60 * MINUTE;
const ENTRY: usize = 33;
/// Slots an hour.
const SLOTS: i32 = (HOUR / FINE) as i32;
/// The kinds of a slot's entry (its header's two low bits).
const SLOT_MANY: u8 = 0;
const SLOT_FLOAT: u8 = 1;
const SLOT_INTEGER: u8 = 2;
/// The gap (a header's six high bits) that means "the slot follows in two bytes".
const GAP_ABSOLUTE: u8 = 63;
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
/// One series-hour's five-second slots, by slot of the hour.
type Slots = BTreeMap<u16, Partial>;

/// One series-hour of rollups: its minutes, and its five-second slots unless they are not
/// kept for this row (see the module's documentation).
#[derive(Debug, PartialEq)]
pub struct Hour {
    minutes: Minutes,
    fine: Option<Slots>,
}

impl Hour {
    /// An empty hour, with slots kept or not.
    fn new(fine: bool) -> Self {
        Hour { minutes: Minutes::new(), fine: fine.then(Slots::new) }
    }

    /// Adds the samples of `p`, all in the hour's slot that starts `offset` into it.
    fn add(&mut self, offset: i64, p: &Partial) {
        merge_into(&mut self.minutes, (offset / MINUTE) as u8, p);
        if let Some(slots) = &mut self.fine {
            merge_into(slots, (offset / FINE) as u16, p);
        }
    }
}

fn merge_into<K: Ord>(entries: &mut BTreeMap<K, Partial>, key: K, p: &Partial) {
    entries.entry(key).and_modify(|kept| kept.merge(p)).or_insert(*p);
}

/// A stored row: `(series_id, hour, minutes, fine)`.
type Row = (i64, i64, Vec<u8>, Option<Vec<u8>>);

/// The eight bytes at `at`.
fn word(bytes: &[u8], at: usize) -> [u8; 8] {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    word
}

/// The count, sum, min and max stored from `at` on.
fn partial_at(bytes: &[u8], at: usize) -> Partial {
    Partial {
        count: i64::from_le_bytes(word(bytes, at)),
        sum: f64::from_le_bytes(word(bytes, at + 8)),
        min: f64::from_le_bytes(word(bytes, at + 16)),
        max: f64::from_le_bytes(word(bytes, at + 24)),
    }
}

fn push_partial(blob: &mut Vec<u8>, p: &Partial) {
    blob.extend_from_slice(&p.count.to_le_bytes());
    for v in [p.sum, p.min, p.max] {
        blob.extend_from_slice(&v.to_le_bytes());
    }
}

/// An entry that counts no sample: merging it changes nothing.
const MARK: Partial = Partial { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY };

/// The minutes' blob; `marked`, it starts with [`MARK`] under the first minute, which says
/// the row's slots were written with these minutes (see the module's documentation).
fn encode(minutes: &Minutes, marked: bool) -> Vec<u8> {
    let mut blob = Vec::with_capacity((minutes.len() + 1) * ENTRY);
    if let Some(first) = minutes.keys().next().filter(|_| marked) {
        blob.push(*first);
        push_partial(&mut blob, &MARK);
    }
    for (minute, p) in minutes {
        blob.push(*minute);
        push_partial(&mut blob, p);
    }
    blob
}

/// The entries of a blob; a malformed one is an error, never a panic.
fn decode(blob: &[u8]) -> Result<impl Iterator<Item = (u8, Partial)> + '_, DbErr> {
    if !blob.len().is_multiple_of(ENTRY) {
        return Err(DbErr::Custom(format!("metric rollup of {} bytes is not whole entries", blob.len())));
    }
    Ok(blob.chunks_exact(ENTRY).map(|e| (e[0], partial_at(e, 1))))
}

fn encode_fine(slots: &Slots) -> Vec<u8> {
    let mut blob = Vec::with_capacity(slots.len() * 3);
    let (mut previous_slot, mut previous_integer) = (-1i32, 0i64);
    for (slot, p) in slots {
        // Whole numbers below 2^53 (every integer there is a float), not -0.
        let integer = (p.count == 1).then(|| whole(p.sum)).flatten();
        let kind = match (p.count, integer) {
            (1, Some(_)) => SLOT_INTEGER,
            (1, None) => SLOT_FLOAT,
            _ => SLOT_MANY,
        };
        let gap = i32::from(*slot) - previous_slot - 1;
        previous_slot = i32::from(*slot);
        if gap < GAP_ABSOLUTE as i32 {
            blob.push(((gap as u8) << 2) | kind);
        } else {
            blob.push((GAP_ABSOLUTE << 2) | kind);
            blob.extend_from_slice(&slot.to_le_bytes());
        }
        match (kind, integer) {
            (SLOT_INTEGER, Some(n)) => {
                // Zigzag, so that small decreases are small too; no overflow within 2^53.
                let delta = n - previous_integer;
                previous_integer = n;
                let mut zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
                while zigzag >= 0x80 {
                    blob.push((zigzag as u8) | 0x80);
                    zigzag >>= 7;
                }
                blob.push(zigzag as u8);
            }
            (SLOT_FLOAT, _) => blob.extend_from_slice(&p.sum.to_le_bytes()),
            _ => push_partial(&mut blob, p),
        }
    }
    blob
}

/// Calls `each` with every slot of a blob, in order; a malformed blob is an error, never a
/// panic (`each` may have seen the slots before the fault).
fn each_slot(blob: &[u8], mut each: impl FnMut(u16, Partial)) -> Result<(), DbErr> {
    let malformed = || DbErr::Custom(format!("metric rollup slots of {} bytes are malformed", blob.len()));
    // The next `n` bytes, if there are that many.
    fn take<'a>(blob: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
        let bytes = blob.get(*at..*at + n)?;
        *at += n;
        Some(bytes)
    }
    let (mut at, mut previous_slot, mut previous_integer) = (0usize, -1i32, 0i64);
    while at < blob.len() {
        let header = take(blob, &mut at, 1).ok_or_else(malformed)?[0];
        let slot = match header >> 2 {
            GAP_ABSOLUTE => {
                let bytes = take(blob, &mut at, 2).ok_or_else(malformed)?;
                i32::from(u16::from_le_bytes([bytes[0], bytes[1]]))
            }
            gap => previous_slot + 1 + i32::from(gap),
        };
        if slot <= previous_slot || slot >= SLOTS {
            return Err(malformed());
        }
        previous_slot = slot;
        let p = match header & 3 {
            SLOT_MANY => partial_at(take(blob, &mut at, 32).ok_or_else(malformed)?, 0),
            SLOT_FLOAT => Partial::of(f64::from_le_bytes(word(take(blob, &mut at, 8).ok_or_else(malformed)?, 0))),
            SLOT_INTEGER => {
                let mut zigzag = 0u64;
                for shift in (0..64).step_by(7) {
                    let byte = take(blob, &mut at, 1).ok_or_else(malformed)?[0];
                    // The tenth byte holds the 64th bit alone.
                    if shift == 63 && byte > 1 {
                        return Err(malformed());
                    }
                    zigzag |= u64::from(byte & 0x7f) << shift;
                    if byte < 0x80 {
                        break;
                    }
                }
                let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
                previous_integer = previous_integer.checked_add(delta).ok_or_else(malformed)?;
                Partial::of(previous_integer as f64)
            }
            _ => return Err(malformed()),
        };
        each(slot as u16, p);
    }
    Ok(())
}

/// The slots of a blob.
fn decode_fine(blob: &[u8]) -> Result<Vec<(u16, Partial)>, DbErr> {
    let mut slots = Vec::with_capacity(blob.len() / 2);
    each_slot(blob, |slot, p| slots.push((slot, p)))?;
    Ok(slots)
}

/// Whether a minutes' blob starts with [`MARK`], given its first entry's count (bytes 1 to
/// 8, which queries read alone): no release before the slots ever writes an entry of no
/// samples.
fn is_mark(count: &[u8]) -> bool {
    count == [0; 8]
}

/// Whether a whole minutes' blob starts with [`MARK`].
fn marked(minutes: &[u8]) -> bool {
    minutes.get(1..9).is_some_and(is_mark)
}

/// The samples a row's minutes count.
fn counted(minutes: &[u8]) -> Result<i64, DbErr> {
    Ok(decode(minutes)?.fold(0i64, |n, (_, p)| n.wrapping_add(p.count)))
}

/// Whether a row's slots (a blob) count the samples its minutes count: a replica of a
/// release before the slots adds samples to the minutes alone.
fn consistent(minutes: &[u8], slots: &[u8]) -> Result<bool, DbErr> {
    let mut in_slots = 0i64;
    each_slot(slots, |_, p| in_slots = in_slots.wrapping_add(p.count))?;
    Ok(counted(minutes)? == in_slots)
}

/// A batch's `(series_id, ts, value)` samples summed up per series-hour, minute and slot,
/// in key order (the order in which concurrent batches meet the rollups' primary key).
pub fn of_batch(samples: impl Iterator<Item = (i64, i64, f64)>) -> BTreeMap<(i64, i64), Hour> {
    let mut rows: BTreeMap<(i64, i64), Hour> = BTreeMap::new();
    for (series_id, ts, value) in samples {
        let hour = floor(ts, HOUR);
        rows.entry((series_id, hour)).or_insert_with(|| Hour::new(true)).add(ts - hour, &Partial::of(value));
    }
    rows
}

/// Merges `batch` into the stored rows it shares a key with; returns the rows to write.
/// Stored slots that count other samples than their minutes are dropped, not merged.
fn merged(mut batch: BTreeMap<(i64, i64), Hour>, stored: Vec<Row>) -> Result<Vec<Row>, DbErr> {
    for (series_id, hour, minutes, fine) in stored {
        let Some(row) = batch.get_mut(&(series_id, hour)) else { continue };
        let stored_slots = match fine {
            Some(fine) if marked(&minutes) && consistent(&minutes, &fine)? => Some(decode_fine(&fine)?),
            _ => None,
        };
        for (minute, p) in decode(&minutes)?.filter(|(_, p)| p.count > 0) {
            merge_into(&mut row.minutes, minute, &p);
        }
        match (stored_slots, &mut row.fine) {
            (Some(stored_slots), Some(slots)) => {
                for (slot, p) in stored_slots {
                    merge_into(slots, slot, &p);
                }
            }
            _ => row.fine = None,
        }
    }
    Ok(encoded(batch))
}

fn encoded(rows: BTreeMap<(i64, i64), Hour>) -> Vec<Row> {
    rows.into_iter()
        .map(|((series_id, hour), row)| {
            (series_id, hour, encode(&row.minutes, row.fine.is_some()), row.fine.as_ref().map(encode_fine))
        })
        .collect()
}

/// Adds a batch to the rollups, inside the batch's transaction (SQLite and MariaDB
/// ingest).
///
/// The caller holds the batch's series rows (SQLite: the write lock; MariaDB: the series
/// upserts lock them), so no other batch changes these rollups meanwhile, and a plain
/// read finds them as they are: MariaDB ingest reads at READ COMMITTED, which sees the
/// latest committed rows, not a snapshot from the transaction's start. A locking read
/// would lock the gaps where the rollups it does not find would go, and two batches
/// inserting into one gap deadlock.
pub async fn add(txn: &DatabaseTransaction, batch: BTreeMap<(i64, i64), Hour>) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let keys: Vec<(i64, i64)> = batch.keys().copied().collect();
    let mut stored = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let pairs = tuples(backend, chunk.len(), 2);
        // SQLite takes a list of row values only as a subquery.
        let pairs = match backend {
            DbBackend::MySql => pairs,
            _ => format!("VALUES {pairs}"),
        };
        let sql =
            format!("SELECT series_id, hour, minutes, fine FROM metric_rollups WHERE (series_id, hour) IN ({pairs})");
        let values = chunk.iter().flat_map(|(s, h)| [Value::from(*s), Value::from(*h)]);
        for row in txn.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await? {
            stored.push((
                row.try_get_by_index(0)?,
                row.try_get_by_index(1)?,
                row.try_get_by_index(2)?,
                row.try_get_by_index(3)?,
            ));
        }
    }
    write(txn, &merged(batch, stored)?, true).await
}

/// Writes whole rows over any stored under their keys; with `fine` false, the minutes
/// alone (the rollups migration runs before the slots' column exists).
async fn write(txn: &DatabaseTransaction, rows: &[Row], fine: bool) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let (columns, set) = match fine {
        true => ("series_id, hour, minutes, fine", ["minutes", "fine"].as_slice()),
        false => ("series_id, hour, minutes", ["minutes"].as_slice()),
    };
    let replace = match backend {
        DbBackend::MySql => {
            let set: Vec<String> = set.iter().map(|c| format!("{c} = VALUES({c})")).collect();
            format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
        }
        _ => {
            let set: Vec<String> = set.iter().map(|c| format!("{c} = excluded.{c}")).collect();
            format!(" ON CONFLICT (series_id, hour) DO UPDATE SET {}", set.join(", "))
        }
    };
    for chunk in rows.chunks(CHUNK) {
        let tuples = tuples(backend, chunk.len(), if fine { 4 } else { 3 });
        let sql = format!("INSERT INTO metric_rollups ({columns}) VALUES {tuples}{replace}");
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for (series_id, hour, minutes, slots) in chunk {
            values.extend([Value::from(*series_id), Value::from(*hour), Value::from(minutes.clone())]);
            if fine {
                values.push(Value::from(slots.clone()));
            }
        }
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

/// The samples a rollup sums up: those whose value is a number (`bits` marks the others,
/// and -0.0, whose bits are `i64::MIN`).
pub const NUMBERS_ONLY: &str = "(bits IS NULL OR bits = -9223372036854775808)";

/// The rollup row `(series, hour)` a sample at `ts` falls in.
pub fn row_of(series_id: i64, ts: i64) -> (i64, i64) {
    (series_id, floor(ts, HOUR))
}

/// Rebuilds the rollup rows `keys` from the samples stored in their hours (chunks and
/// head), after a batch replaced samples there (a sum, minimum or maximum cannot give a
/// value back). The caller holds the series rows, as for [`add`].
pub async fn rebuild(txn: &DatabaseTransaction, keys: &BTreeSet<(i64, i64)>) -> Result<(), DbErr> {
    let mut samples = Vec::new();
    for &(series_id, hour) in keys {
        let delete = Query::delete()
            .from_table("metric_rollups")
            .and_where(Expr::col("series_id").eq(series_id))
            .and_where(Expr::col("hour").eq(hour))
            .to_owned();
        txn.execute(&delete).await?;
        let select = Query::select()
            .columns(["ts", "value", "bits"])
            .from("metric_samples")
            .and_where(Expr::col("series_id").eq(series_id))
            .and_where(Expr::col("ts").gte(hour))
            .and_where(Expr::col("ts").lt(hour + HOUR))
            .to_owned();
        let mut head = BTreeMap::new();
        for row in txn.query_all(&select).await? {
            head.insert(row.try_get_by_index(0)?, loaded_value(row.try_get_by_index(1)?, row.try_get_by_index(2)?));
        }
        let chunks = compaction::chunk_samples(txn, series_id, hour, hour + HOUR).await?;
        samples.extend(numbers_of_hour(series_id, chunks, head));
    }
    add(txn, of_batch(samples.into_iter())).await
}

/// PostgreSQL ingest: [`rebuild`] over the transaction's connection.
pub async fn rebuild_pg(txn: &mut sqlx::PgConnection, keys: &BTreeSet<(i64, i64)>) -> Result<(), sqlx::Error> {
    let mut samples = Vec::new();
    for &(series_id, hour) in keys {
        sqlx::query("DELETE FROM metric_rollups WHERE series_id = $1 AND hour = $2")
            .bind(series_id)
            .bind(hour)
            .execute(&mut *txn)
            .await?;
        let rows: Vec<(i64, f64, Option<i64>)> =
            sqlx::query_as("SELECT ts, value, bits FROM metric_samples WHERE series_id = $1 AND ts >= $2 AND ts < $3")
                .bind(series_id)
                .bind(hour)
                .bind(hour + HOUR)
                .fetch_all(&mut *txn)
                .await?;
        let head = rows.into_iter().map(|(ts, value, bits)| (ts, loaded_value(value, bits))).collect();
        let chunks = compaction::chunk_samples_pg(txn, series_id, hour, hour + HOUR).await?;
        samples.extend(numbers_of_hour(series_id, chunks, head));
    }
    add_pg(txn, of_batch(samples.into_iter())).await
}

/// An hour's stored samples whose value is a number, as `(series_id, ts, value)`: the
/// chunks' and the head's, the head's winning on equal times.
fn numbers_of_hour(
    series_id: i64,
    chunks: Vec<(i64, f64)>,
    mut head: BTreeMap<i64, f64>,
) -> impl Iterator<Item = (i64, i64, f64)> {
    for (ts, value) in chunks {
        head.entry(ts).or_insert(value);
    }
    head.into_iter().filter(|(_, value)| value.is_finite()).map(move |(ts, value)| (series_id, ts, value))
}

/// PostgreSQL ingest: [`add`] in two statements over arrays. The caller holds the batch's series
/// rows (`FOR NO KEY UPDATE`).
pub async fn add_pg(txn: &mut sqlx::PgConnection, batch: BTreeMap<(i64, i64), Hour>) -> Result<(), sqlx::Error> {
    let series: Vec<i64> = batch.keys().map(|k| k.0).collect();
    let hours: Vec<i64> = batch.keys().map(|k| k.1).collect();
    let stored: Vec<Row> = sqlx::query_as(
        "SELECT r.series_id, r.hour, r.minutes, r.fine FROM metric_rollups AS r \
         JOIN UNNEST($1::int8[], $2::int8[]) AS k(series_id, hour) USING (series_id, hour) FOR UPDATE OF r",
    )
    .bind(&series)
    .bind(&hours)
    .fetch_all(&mut *txn)
    .await?;
    // A stored blob that is not whole entries: a decoding error, as sqlx reports others.
    let rows = merged(batch, stored).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let (mut series, mut hours, mut minutes, mut fine) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (s, h, m, f) in rows {
        series.push(s);
        hours.push(h);
        minutes.push(m);
        fine.push(f);
    }
    sqlx::query(
        "INSERT INTO metric_rollups (series_id, hour, minutes, fine) \
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::bytea[], $4::bytea[]) \
         ON CONFLICT (series_id, hour) DO UPDATE SET minutes = EXCLUDED.minutes, fine = EXCLUDED.fine",
    )
    .bind(series)
    .bind(hours)
    .bind(minutes)
    .bind(fine)
    .execute(&mut *txn)
    .await?;
    Ok(())
}

/// The rows of the series `ids` for the hours that overlap `[from, until)`.
fn in_range(ids: &[i64], from: i64, until: i64, columns: &[&'static str]) -> SelectStatement {
    Query::select()
        .columns(columns.iter().copied())
        .from("metric_rollups")
        .and_where(Expr::col("series_id").is_in(ids.iter().copied()))
        .and_where(Expr::col("hour").gte(floor(from, HOUR)))
        .and_where(Expr::col("hour").lt(until))
        .to_owned()
}

/// Calls `each` with the minutes in `[from, until)` of the series `ids` as `(series_id,
/// minute start, partial)`, a row's minutes in order; `from` and `until` are whole minutes.
pub async fn read(
    db: &DatabaseConnection,
    ids: &[i64],
    from: i64,
    until: i64,
    mut each: impl FnMut(i64, i64, Partial),
) -> Result<(), DbErr> {
    let mut rows = stream(db, &in_range(ids, from, until, &["series_id", "hour", "minutes"])).await?;
    while let Some(row) = rows.try_next().await? {
        let (series_id, hour): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        let blob: Vec<u8> = row.try_get_by_index(2)?;
        for (minute, p) in decode(&blob)?.filter(|(_, p)| p.count > 0) {
            let at = hour + i64::from(minute) * MINUTE;
            if (from..until).contains(&at) {
                each(series_id, at, p);
            }
        }
    }
    Ok(())
}

/// The rows of a query as they come: each is decoded while the database reads the next
/// (on SQLite, a thread of its own), and the rows are never all held at once.
async fn stream<'a>(
    db: &'a DatabaseConnection,
    statement: &SelectStatement,
) -> Result<impl Stream<Item = Result<QueryResult, DbErr>> + 'a, DbErr> {
    // Imported here only: its `get_database_backend` would be ambiguous with
    // `ConnectionTrait`'s everywhere else in the module.
    use sea_orm::StreamTrait;
    db.stream(statement).await
}

/// Calls `each` with the five-second slots in `[from, until)` of the series `ids`, as
/// [`read`] gives the minutes; `from` and `until` are whole slots. A callback, as an
/// all-series day at 10 s is a million slots. Answers `false` if a row in range has no
/// slots, or minutes without the mark, last written by a replica that does not keep slots
/// (see the module's documentation): only the samples can answer then, and what `each`
/// was given must be thrown away. Of the minutes, only the mark's count is read: reading
/// them whole to compare counts, as ingest does, would decode every minute for nothing.
pub async fn read_fine(
    db: &DatabaseConnection,
    ids: &[i64],
    from: i64,
    until: i64,
    mut each: impl FnMut(i64, i64, Partial),
) -> Result<bool, DbErr> {
    let mut statement = in_range(ids, from, until, &["series_id", "hour", "fine"]);
    statement.expr(Expr::cust("substr(minutes, 2, 8)"));
    let mut rows = stream(db, &statement).await?;
    while let Some(row) = rows.try_next().await? {
        let Some(slots) = row.try_get_by_index::<Option<Vec<u8>>>(2)? else { return Ok(false) };
        if !is_mark(&row.try_get_by_index::<Vec<u8>>(3)?) {
            return Ok(false);
        }
        let (series_id, hour): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        each_slot(&slots, |slot, p| {
            let at = hour + i64::from(slot) * FINE;
            if (from..until).contains(&at) {
                each(series_id, at, p);
            }
        })?;
    }
    Ok(true)
}

/// Builds the rollups of the samples stored, series by series, replacing any stored for
/// them: the minutes alone (the migration that creates the table), or with the slots too
/// (the one that adds them).
pub async fn backfill(txn: &DatabaseTransaction, fine: bool) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let ids = txn.query_all_raw(Statement::from_string(backend, "SELECT id FROM metric_series ORDER BY id")).await?;
    // The slot a sample falls in, floored also before 1970.
    let slot = format!("ts - ((ts % {FINE}) + {FINE}) % {FINE}");
    for id in ids {
        let id: i64 = id.try_get_by_index(0)?;
        let statement = Query::select()
            .expr(Expr::cust(slot.clone()))
            .exprs(Part::ALL.map(|part| Expr::cust(part.sql())))
            .from("metric_samples")
            .and_where(Expr::col("series_id").eq(id))
            .add_group_by([Expr::cust(slot.clone())])
            .to_owned();
        let mut rows: BTreeMap<(i64, i64), Hour> = BTreeMap::new();
        for row in txn.query_all(&statement).await? {
            let at: i64 = row.try_get_by_index(0)?;
            let hour = floor(at, HOUR);
            rows.entry((id, hour))
                .or_insert_with(|| Hour::new(fine))
                .add(at - hour, &Partial::read(&row, 1, &Part::ALL)?);
        }
        write(txn, &encoded(rows), fine).await?;
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
        let minutes = &batch[&(1, hour)].minutes;
        assert_eq!(minutes[&0], Partial { count: 2, sum: 6.0, min: 2.0, max: 4.0 });
        assert_eq!(minutes[&59], Partial::of(-1.5));
        let blob = encode(minutes, true);
        assert_eq!(blob.len(), 3 * ENTRY);
        let entries = vec![(0, MARK), (0, minutes[&0]), (59, minutes[&59])];
        assert_eq!(decode(&blob).unwrap().collect::<Vec<_>>(), entries);
        // A release before the mark merges it into its minute as nothing.
        let mut earlier = Minutes::new();
        for (minute, p) in decode(&blob).unwrap() {
            earlier.entry(minute).and_modify(|kept| kept.merge(&p)).or_insert(p);
        }
        assert_eq!(&earlier, minutes);
        let fine = batch[&(1, hour)].fine.as_ref().map(encode_fine);

        // A second batch for minute 0 and a new minute merges into the stored row.
        let second = of_batch([(1, hour + 30, 10.0), (1, hour + MINUTE, 7.0)].into_iter());
        let rows = merged(second, vec![(1, hour, blob, fine)]).unwrap();
        assert_eq!(rows.len(), 1);
        let merged: Vec<_> = decode(&rows[0].2).unwrap().collect();
        assert_eq!(
            merged,
            vec![
                (0, MARK),
                (0, Partial { count: 3, sum: 16.0, min: 2.0, max: 10.0 }),
                (1, Partial::of(7.0)),
                (59, Partial::of(-1.5))
            ]
        );
        assert!(decode(&[0; ENTRY + 1]).is_err());
    }

    #[test]
    fn slots_round_trip_and_merge_slot_by_slot() {
        let hour = 1_767_225_600_000_000;
        let last = hour + HOUR - 1;
        let batch =
            of_batch([(1, hour, 2.0), (1, hour + FINE - 1, 4.0), (1, hour + FINE, -0.5), (1, last, 8.0)].into_iter());
        let slots = batch[&(1, hour)].fine.clone().unwrap();
        assert_eq!(slots.keys().copied().collect::<Vec<_>>(), vec![0, 1, 719]);
        assert_eq!(slots[&0], Partial { count: 2, sum: 6.0, min: 2.0, max: 4.0 });
        let blob = encode_fine(&slots);
        // Several samples; a float; slot 719, 717 slots on, and the integer 8 from 0.
        assert_eq!(blob.len(), (1 + 32) + (1 + 8) + (1 + 2 + 1));
        assert_eq!(decode_fine(&blob).unwrap(), slots.clone().into_iter().collect::<Vec<_>>());

        let stored = (1, hour, encode(&batch[&(1, hour)].minutes, true), Some(blob.clone()));
        let rows = merged(of_batch([(1, hour + FINE + 1, 1.5)].into_iter()), vec![stored]).unwrap();
        let merged = decode_fine(rows[0].3.as_deref().unwrap()).unwrap();
        assert_eq!(merged[1], (1, Partial { count: 2, sum: 1.0, min: -0.5, max: 1.5 }));
        assert_eq!(merged.len(), 3);
        assert!(consistent(&rows[0].2, rows[0].3.as_deref().unwrap()).unwrap());

        // Cut anywhere but between entries: an error, not a panic.
        for cut in 1..blob.len() {
            assert_eq!(decode_fine(&blob[..cut]).is_ok(), [33, 42].contains(&cut), "cut at {cut}");
        }
    }

    #[test]
    fn slots_of_one_whole_number_take_a_few_bytes_and_keep_every_value_exact() {
        let hour = 1_767_225_600_000_000;
        const MAX_EXACT: f64 = 9_007_199_254_740_992.0;
        let values = [
            0.0,
            1.0,
            -1.0,
            1e15,
            -1e15,
            MAX_EXACT,
            -MAX_EXACT,
            MAX_EXACT * 2.0,
            -0.0,
            0.5,
            f64::MAX,
            f64::MIN_POSITIVE,
            3.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            7.0,
        ];
        // Every value once in a slot of its own, with gaps of 0, 62, 63 and more.
        let mut slots = Slots::new();
        let mut slot = 0;
        for (i, v) in values.iter().enumerate() {
            slots.insert(slot, Partial::of(*v));
            slot += [1, 63, 64, 10][i % 4];
        }
        let decoded = decode_fine(&encode_fine(&slots)).unwrap();
        assert_eq!(decoded.len(), values.len());
        for ((slot, p), (want_slot, want)) in decoded.iter().zip(&slots) {
            assert_eq!(slot, want_slot);
            assert_eq!(p.sum.to_bits(), want.sum.to_bits(), "slot {slot}");
            assert_eq!((p.count, p.min.to_bits(), p.max.to_bits()), (1, want.min.to_bits(), want.max.to_bits()));
        }

        // A counter scraped every 10 s: two bytes a slot, where a float takes nine.
        let counter = of_batch((0..360).map(|i| (1, hour + i * 10_000_000, (1_000_000 + 37 * i) as f64)));
        assert_eq!(encode_fine(counter[&(1, hour)].fine.as_ref().unwrap()).len(), 1 + 3 + 359 * 2);
    }

    #[test]
    fn malformed_slots_are_errors() {
        for blob in [
            vec![3],                                                                                 // an unknown kind
            vec![2 | (63 << 2), 208, 2, 0],                                                          // slot 720
            vec![2 | (63 << 2), 0, 0, 0, 2 | (63 << 2), 0, 0, 0],                                    // slot 0 twice
            vec![2 | (63 << 2), 5, 0, 0, 2 | (63 << 2), 1, 0, 0], // slot 5, then slot 1
            vec![2, 0x80],                                        // a varint cut short
            [vec![2], vec![0xff; 9], vec![0x7f]].concat(),        // a varint over 64 bits
            [vec![2, 0xfe], vec![0xff; 8], vec![0x01, 2, 0xfe], vec![0xff; 8], vec![0x01]].concat(), // i64::MAX twice: an overflow
        ] {
            assert!(decode_fine(&blob).is_err(), "{blob:?}");
        }
        // Once, i64::MAX is well formed (though no encoder writes it): the one above failed
        // on the sum.
        let once = decode_fine(&[vec![2, 0xfe], vec![0xff; 8], vec![0x01]].concat()).unwrap();
        assert_eq!(once, vec![(0, Partial::of(i64::MAX as f64))]);
    }

    #[test]
    fn slots_a_replica_of_an_earlier_release_missed_are_dropped_not_merged() {
        let hour = 1_767_225_600_000_000;
        let first = &of_batch([(1, hour, 2.0)].into_iter())[&(1, hour)];
        let slots = first.fine.as_ref().map(encode_fine);
        let two = of_batch([(1, hour, 2.0), (1, hour + 1, 3.0)].into_iter());
        // That replica's rewrite after adding a sample: no mark.
        let added = encode(&two[&(1, hour)].minutes, false);
        // Marked, but counting a sample the slots miss (ingest compares the counts too).
        let marked_more = encode(&two[&(1, hour)].minutes, true);
        // The slots' very samples, rewritten without the mark.
        let unmarked = encode(&first.minutes, false);
        let later = || of_batch([(1, hour + MINUTE, 4.0)].into_iter());
        for (minutes, stored_slots, samples) in [
            (added.clone(), slots.clone(), 2),
            (added, None, 2),
            (marked_more, slots.clone(), 2),
            (unmarked, slots.clone(), 1),
        ] {
            let rows = merged(later(), vec![(1, hour, minutes, stored_slots)]).unwrap();
            assert_eq!(rows[0].3, None);
            assert!(!marked(&rows[0].2));
            assert_eq!(decode(&rows[0].2).unwrap().map(|(_, p)| p.count).sum::<i64>(), samples + 1);
        }
        // Marked and whole: kept, and marked again.
        let rows = merged(later(), vec![(1, hour, encode(&first.minutes, true), slots)]).unwrap();
        assert_eq!(decode_fine(rows[0].3.as_deref().unwrap()).unwrap().len(), 2);
        assert!(marked(&rows[0].2));
    }

    #[test]
    fn minutes_and_hours_floor_before_1970_too() {
        assert_eq!(floor(-1, MINUTE), -MINUTE);
        assert_eq!(floor(-MINUTE, MINUTE), -MINUTE);
        let batch = of_batch([(7, -1, 1.0)].into_iter());
        assert_eq!(batch.keys().next(), Some(&(7, -HOUR)));
        assert!(batch[&(7, -HOUR)].minutes.contains_key(&59));
        assert!(batch[&(7, -HOUR)].fine.as_ref().unwrap().contains_key(&719));
    }
}
