//! The metric tables: series (`metric_series`, one per source, name and labels, with its
//! last value) and their samples: the head (`metric_samples`, a row a sample, as ingest
//! writes them) and the chunks compaction makes of it (`compaction`). Reads merge both.

use std::{
    collections::{BTreeMap, HashMap},
    ops::ControlFlow,
};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
    sea_query::{Alias, Expr, ExprTrait, LikeExpr, OnConflict, Order, Query},
    sqlx,
};

use super::{
    Backend, Database, compaction,
    entity::{metadata, sample, series},
};

/// Sample rows in one upserting INSERT (four bound values each, under SQLite's 32,766).
const INSERT_CHUNK: usize = 2_000;
/// Series in one statement setting last values on SQLite (four bound values each).
const LAST_VALUES_CHUNK: usize = 2_000;
/// Series ids [`SeriesIds`] remembers at most (about 40 bytes each); past it, it starts
/// over.
const SERIES_IDS_KEPT: usize = 1_000_000;

pub use super::value::{loaded_value, stored_value};

/// A valid sample, as it will be stored, with what its series is made of.
pub struct SampleRow {
    /// The series' unique key (`metric_series.series_key`): 64 hex digits.
    pub key: String,
    pub name: String,
    /// A JSON object of strings, as text.
    pub labels: String,
    pub metric_type: &'static str,
    pub ts: i64,
    pub value: f64,
}

/// The ids of series this process has seen stored, by key, so that a batch of known
/// series neither inserts nor looks them up again. A series row keeps its id for as long
/// as it exists and is deleted only with its source (whose batches then fail on the source
/// first), so a remembered id is never wrong for a batch that may write.
#[derive(Default)]
pub struct SeriesIds(std::sync::Mutex<HashMap<u128, i64>>);

impl std::fmt::Debug for SeriesIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesIds").finish_non_exhaustive()
    }
}

/// A series key (hex SHA-256, [`SampleRow::key`]) by its first 128 bits, which tell
/// series apart as well; 0 for a key that is not one.
pub fn short_key(key: &str) -> u128 {
    key.get(..32).and_then(|hex| u128::from_str_radix(hex, 16).ok()).unwrap_or_default()
}

impl SeriesIds {
    fn known<'a>(&self, keys: impl Iterator<Item = &'a str>) -> HashMap<&'a str, i64> {
        let Ok(ids) = self.0.lock() else { return HashMap::new() };
        keys.filter_map(|key| Some((key, *ids.get(&short_key(key))?))).collect()
    }

    fn remember<'a>(&self, found: impl Iterator<Item = (&'a str, i64)>) {
        let Ok(mut ids) = self.0.lock() else { return };
        for (key, id) in found {
            if ids.len() >= SERIES_IDS_KEPT {
                ids.clear();
            }
            ids.insert(short_key(key), id);
        }
    }
}

/// Stores the samples of a source's batch in one transaction, or none: the series it
/// introduces, the samples (replacing any stored at the same series and time: the last
/// write wins) and the series' last values. The batch holds at most one sample per
/// series and time.
pub async fn insert(db: &Database, source_id: &str, samples: &[SampleRow]) -> Result<usize, DbErr> {
    // A BTreeMap: series rows are locked in key order, so concurrent batches that touch
    // the same series cannot deadlock each other.
    let mut latest: BTreeMap<&str, &SampleRow> = BTreeMap::new();
    for s in samples {
        let entry = latest.entry(s.key.as_str()).or_insert(s);
        if s.ts >= entry.ts {
            *entry = s;
        }
    }
    let (stored, introduced) = super::retry_deadlocks(|| async {
        match db.backend() {
            Backend::Postgres => {
                let txn = db.conn().get_postgres_connection_pool().begin().await.map_err(super::acquire_error)?;
                store_unnest(db, txn, source_id, &latest, samples).await.map_err(super::exec_error)
            }
            Backend::Sqlite | Backend::MySql => store(db, source_id, &latest, samples).await,
        }
    })
    .await?;
    db.series_ids().remember(introduced.iter().map(|(key, id)| (*key, *id)));
    Ok(stored)
}

/// The series of a batch and the ids of those stored: `(id by key, the batch's keys
/// whose ids are not known yet)`. MariaDB knows none: there the series' upserts are what
/// locks their rows in key order (see [`store`]).
fn split_known<'a>(db: &Database, latest: &BTreeMap<&'a str, &SampleRow>) -> (HashMap<&'a str, i64>, Vec<&'a str>) {
    let ids = match db.backend() {
        Backend::MySql => HashMap::new(),
        Backend::Sqlite | Backend::Postgres => db.series_ids().known(latest.keys().copied()),
    };
    let unknown = latest.keys().copied().filter(|key| !ids.contains_key(key)).collect();
    (ids, unknown)
}

/// SQLite and MariaDB: the series the batch introduces (one INSERT each) and their ids,
/// the samples in multi-row upserts, then each series' last value, in one transaction.
/// Answers how many samples it stored and the ids it found of series unknown before.
async fn store<'a>(
    db: &Database,
    source_id: &str,
    latest: &BTreeMap<&'a str, &SampleRow>,
    samples: &[SampleRow],
) -> Result<(usize, Vec<(&'a str, i64)>), DbErr> {
    let conn = db.conn();
    // The upserts below lock the batch's series rows, in key order (the BTreeMap's), on
    // MariaDB (SQLite's writer holds the whole file), so no gap locks are needed.
    let txn = super::begin_write_gapless(conn).await?;
    // The source first, shared: a deletion of it (which locks it, then cascades to the
    // series) waits for the batch, or the batch for the deletion, instead of each holding
    // series rows the other wants. A source already gone fails the series' foreign key
    // below.
    super::sources::lock_shared(&txn, source_id).await?;
    let (mut ids, unknown) = split_known(db, latest);
    for key in &unknown {
        let s = latest[key];
        let insert = Query::insert()
            .into_table(series::Entity)
            .columns([
                series::Column::SourceId,
                series::Column::SeriesKey,
                series::Column::Name,
                series::Column::Labels,
                series::Column::MetricType,
                series::Column::LastValue,
                series::Column::LastTimestamp,
            ])
            .values_panic([
                source_id.into(),
                s.key.clone().into(),
                s.name.clone().into(),
                s.labels.clone().into(),
                s.metric_type.into(),
                stored_value(s.value).0.into(),
                i64::MIN.into(),
            ])
            .on_conflict(
                OnConflict::column(series::Column::SeriesKey).do_nothing_on([series::Column::SeriesKey]).to_owned(),
            )
            .to_owned();
        txn.execute(&insert).await?;
    }
    let mut introduced = Vec::new();
    if !unknown.is_empty() {
        let found: Vec<(String, i64)> = series::Entity::find()
            .select_only()
            .column(series::Column::SeriesKey)
            .column(series::Column::Id)
            .filter(series::Column::SeriesKey.is_in(unknown.iter().copied()))
            .into_tuple()
            .all(&txn)
            .await?;
        for (key, id) in found {
            if let Some((key, _)) = latest.get_key_value(key.as_str()) {
                ids.insert(key, id);
                introduced.push((*key, id));
            }
        }
    }
    let mut rows = samples.iter().filter_map(|s| Some((*ids.get(s.key.as_str())?, s.ts, s.value)));
    let mut stored = 0;
    loop {
        let chunk: Vec<_> = rows.by_ref().take(INSERT_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        stored += chunk.len();
        txn.execute(&upsert_samples(&chunk)).await?;
    }
    let last: Vec<(i64, &SampleRow)> = latest.iter().filter_map(|(key, s)| Some((*ids.get(key)?, *s))).collect();
    match db.backend() {
        Backend::Sqlite => {
            for chunk in last.chunks(LAST_VALUES_CHUNK) {
                txn.execute_raw(sqlite_last_values(chunk)).await?;
            }
        }
        _ => {
            for (id, s) in last {
                let (value, bits) = stored_value(s.value);
                series::Entity::update_many()
                    .col_expr(series::Column::LastValue, Expr::value(value))
                    .col_expr(series::Column::LastBits, Expr::value(bits))
                    .col_expr(series::Column::LastTimestamp, Expr::value(s.ts))
                    .filter(series::Column::Id.eq(id))
                    .filter(series::Column::LastTimestamp.lte(s.ts))
                    .exec(&txn)
                    .await?;
            }
        }
    }
    txn.commit().await?;
    Ok((stored, introduced))
}

/// One INSERT of head samples `(series_id, ts, value)`, each replacing the one stored at
/// its series and time.
fn upsert_samples(rows: &[(i64, i64, f64)]) -> sea_orm::sea_query::InsertStatement {
    let mut insert = Query::insert()
        .into_table(sample::Entity)
        .columns([sample::Column::SeriesId, sample::Column::Ts, sample::Column::Value, sample::Column::Bits])
        .to_owned();
    for (series_id, ts, value) in rows {
        let (value, bits) = stored_value(*value);
        insert.values_panic([(*series_id).into(), (*ts).into(), value.into(), bits.into()]);
    }
    insert
        .on_conflict(
            OnConflict::columns([sample::Column::SeriesId, sample::Column::Ts])
                .update_columns([sample::Column::Value, sample::Column::Bits])
                .to_owned(),
        )
        .to_owned()
}

/// SQLite: the last values of many series in one UPDATE, each kept where the series
/// already holds a later sample.
fn sqlite_last_values(rows: &[(i64, &SampleRow)]) -> Statement {
    let mut sql = String::from(
        "UPDATE metric_series SET last_value = u.column2, last_bits = u.column3, last_timestamp = u.column4 \
         FROM (VALUES ",
    );
    let mut values = Vec::with_capacity(rows.len() * 4);
    for (n, (id, s)) in rows.iter().enumerate() {
        sql.push_str(if n == 0 { "(?, ?, ?, ?)" } else { ", (?, ?, ?, ?)" });
        let (value, bits) = stored_value(s.value);
        values.extend([(*id).into(), value.into(), bits.into(), s.ts.into()]);
    }
    sql.push_str(") AS u WHERE metric_series.id = u.column1 AND metric_series.last_timestamp <= u.column4");
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// PostgreSQL: the same steps as [`store`], each one statement over arrays.
async fn store_unnest<'a>(
    db: &Database,
    mut txn: sqlx::Transaction<'_, sqlx::Postgres>,
    source_id: &str,
    latest: &BTreeMap<&'a str, &SampleRow>,
    samples: &[SampleRow],
) -> Result<(usize, Vec<(&'a str, i64)>), sqlx::Error> {
    // The source first, shared, as in `store` (see `sources::lock_shared`).
    sqlx::query(super::sources::PG_LOCK_SHARED).bind(source_id).execute(&mut *txn).await?;
    let (mut ids, unknown) = split_known(db, latest);
    let mut introduced = Vec::new();
    if !unknown.is_empty() {
        let new: Vec<&SampleRow> = unknown.iter().map(|key| latest[key]).collect();
        // Keys in sorted order, so concurrent batches meet the unique index in the same order.
        sqlx::query(
            "INSERT INTO metric_series \
             (source_id, series_key, name, labels, metric_type, last_value, last_timestamp) \
             SELECT $1, t.series_key, t.name, t.labels, t.metric_type, t.last_value, $7 \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::float8[]) WITH ORDINALITY \
             AS t(series_key, name, labels, metric_type, last_value, n) ORDER BY t.n \
             ON CONFLICT (series_key) DO NOTHING",
        )
        .bind(source_id)
        .bind(&unknown)
        .bind(new.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|s| s.labels.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|s| s.metric_type).collect::<Vec<_>>())
        .bind(new.iter().map(|s| stored_value(s.value).0).collect::<Vec<_>>())
        .bind(i64::MIN)
        .execute(&mut *txn)
        .await?;
        let found: Vec<(String, i64)> =
            sqlx::query_as("SELECT series_key, id FROM metric_series WHERE series_key = ANY($1)")
                .bind(&unknown)
                .fetch_all(&mut *txn)
                .await?;
        for (key, id) in found {
            if let Some((key, _)) = latest.get_key_value(key.as_str()) {
                ids.insert(key, id);
                introduced.push((*key, id));
            }
        }
    }
    // Locks the series rows in key order (as `store` does on MariaDB) before the samples'
    // foreign-key checks share-lock them in sample order; NO KEY UPDATE does not conflict
    // with those share locks, and the last values' UPDATE below finds them locked already.
    let batch_ids: Vec<i64> = latest.keys().filter_map(|key| ids.get(key).copied()).collect();
    sqlx::query("SELECT id FROM metric_series WHERE id = ANY($1) ORDER BY series_key FOR NO KEY UPDATE")
        .bind(&batch_ids)
        .execute(&mut *txn)
        .await?;
    let (mut series_ids, mut ts, mut values, mut bits) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in samples {
        if let Some(id) = ids.get(s.key.as_str()) {
            let (value, value_bits) = stored_value(s.value);
            series_ids.push(*id);
            ts.push(s.ts);
            values.push(value);
            bits.push(value_bits);
        }
    }
    let stored = series_ids.len();
    sqlx::query(
        "INSERT INTO metric_samples (series_id, ts, value, bits) \
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::float8[], $4::int8[]) \
         ON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value, bits = EXCLUDED.bits",
    )
    .bind(series_ids)
    .bind(ts)
    .bind(values)
    .bind(bits)
    .execute(&mut *txn)
    .await?;
    let (mut last_ids, mut last_values, mut last_bits, mut last_ts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, s) in latest {
        if let Some(id) = ids.get(key) {
            let (value, bits) = stored_value(s.value);
            last_ids.push(*id);
            last_values.push(value);
            last_bits.push(bits);
            last_ts.push(s.ts);
        }
    }
    sqlx::query(
        "UPDATE metric_series AS s SET last_value = u.last_value, last_bits = u.last_bits, last_timestamp = u.ts \
         FROM UNNEST($1::int8[], $2::float8[], $3::int8[], $4::int8[]) AS u(id, last_value, last_bits, ts) \
         WHERE s.id = u.id AND s.last_timestamp <= u.ts",
    )
    .bind(last_ids)
    .bind(last_values)
    .bind(last_bits)
    .bind(last_ts)
    .execute(&mut *txn)
    .await?;
    txn.commit().await?;
    Ok((stored, introduced))
}

/// A page of the series named `name` and of `source_id` (any when `None`), by name, and
/// how many there are in all.
pub async fn list_series(
    db: &impl ConnectionTrait,
    name: Option<&str>,
    source_id: Option<&str>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<series::Model>, u64), DbErr> {
    let mut query = series::Entity::find();
    if let Some(name) = name {
        query = query.filter(series::Column::Name.eq(name));
    }
    if let Some(source_id) = source_id {
        query = query.filter(series::Column::SourceId.eq(source_id));
    }
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_asc(series::Column::Name)
        .order_by_asc(series::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// Every series named `name`, of any source.
pub async fn series_named(db: &impl ConnectionTrait, name: &str) -> Result<Vec<series::Model>, DbErr> {
    series::Entity::find().filter(series::Column::Name.eq(name)).all(db).await
}

/// Calls `each` with the samples of the series `ids` at the times `range` whose value is
/// a number (not NaN nor ±Inf), reduced by `step`-wide bucket from `start`: `(series_id,
/// bucket index, partial)`, a series' buckets in order.
pub async fn read_buckets(
    db: &DatabaseConnection,
    ids: &[i64],
    (start, step): (i64, i64),
    range: std::ops::RangeInclusive<i64>,
    mut each: impl FnMut(i64, i64, Partial),
) -> Result<(), DbErr> {
    read_series(db, ids, range, |series_id, samples| {
        let mut open: Option<(i64, Partial)> = None;
        for (ts, value) in samples.into_iter().filter(|(_, value)| value.is_finite()) {
            let bucket = (ts - start).div_euclid(step);
            match &mut open {
                Some((at, p)) if *at == bucket => p.merge(&Partial::of(value)),
                _ => {
                    if let Some((at, p)) = open.replace((bucket, Partial::of(value))) {
                        each(series_id, at, p);
                    }
                }
            }
        }
        if let Some((at, p)) = open {
            each(series_id, at, p);
        }
        ControlFlow::Continue(())
    })
    .await
}

/// The count, sum, min and max of some samples: every aggregation of the seed's range
/// query is computed from these, and two of them merge into those of both sets.
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

/// A metric family's declared type, help and unit, as stored.
pub struct MetadataRow {
    pub name: String,
    pub metric_type: &'static str,
    pub help: String,
    pub unit: String,
}

/// The series names a family's samples are stored under: the family's own, and those of
/// its counter, histogram and summary parts.
fn family_series_names(family: &str) -> [String; 5] {
    ["", "_total", "_bucket", "_sum", "_count"].map(|suffix| format!("{family}{suffix}"))
}

/// Records what a source declared about metric families (the last declaration wins), and
/// gives the source's series of each family that type, in one transaction.
pub async fn upsert_metadata(db: &Database, source_id: &str, rows: &[MetadataRow], now: i64) -> Result<(), DbErr> {
    super::retry_deadlocks(|| async {
        let txn = super::begin_write(db.conn()).await?;
        // The source first, shared: an existing declaration's row is updated (and locked)
        // without a foreign-key check, so without this a deletion cascading to the
        // declarations could wait for one this batch holds while the batch waits for
        // another the deletion has already taken.
        super::sources::lock_shared(&txn, source_id).await?;
        for row in rows {
            let insert = Query::insert()
                .into_table(metadata::Entity)
                .columns([
                    metadata::Column::SourceId,
                    metadata::Column::Name,
                    metadata::Column::MetricType,
                    metadata::Column::Help,
                    metadata::Column::Unit,
                    metadata::Column::UpdatedAt,
                ])
                .values_panic([
                    source_id.into(),
                    row.name.clone().into(),
                    row.metric_type.into(),
                    row.help.clone().into(),
                    row.unit.clone().into(),
                    now.into(),
                ])
                .on_conflict(
                    OnConflict::columns([metadata::Column::SourceId, metadata::Column::Name])
                        .update_columns([
                            metadata::Column::MetricType,
                            metadata::Column::Help,
                            metadata::Column::Unit,
                            metadata::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .to_owned();
            txn.execute(&insert).await?;
            series::Entity::update_many()
                .col_expr(series::Column::MetricType, Expr::value(row.metric_type))
                .filter(series::Column::SourceId.eq(source_id))
                .filter(series::Column::Name.is_in(family_series_names(&row.name)))
                .filter(series::Column::MetricType.ne(row.metric_type))
                .exec(&txn)
                .await?;
        }
        txn.commit().await
    })
    .await
}

/// The declared type of each of `families` that `source_id` declared one for.
pub async fn declared_types(
    db: &impl ConnectionTrait,
    source_id: &str,
    families: Vec<String>,
) -> Result<HashMap<String, String>, DbErr> {
    if families.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> = metadata::Entity::find()
        .select_only()
        .column(metadata::Column::Name)
        .column(metadata::Column::MetricType)
        .filter(metadata::Column::SourceId.eq(source_id))
        .filter(metadata::Column::Name.is_in(families))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The metadata a source declared for `name`, if any.
pub async fn metadata_of(
    db: &impl ConnectionTrait,
    source_id: &str,
    name: &str,
) -> Result<Option<metadata::Model>, DbErr> {
    metadata::Entity::find_by_id((source_id.to_owned(), name.to_owned())).one(db).await
}

/// The samples of a series at the times `range`, oldest first, each value as it arrived
/// (NaN payloads and infinities included), from its chunks and its head.
pub async fn points(
    db: &DatabaseConnection,
    series_id: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Vec<(i64, f64)>, DbErr> {
    let mut points = Vec::new();
    read_series(db, &[series_id], range, |_, samples| {
        points = samples;
        ControlFlow::Continue(())
    })
    .await?;
    Ok(points)
}

/// How a series lookup narrows by name in SQL; what it lets through is filtered again
/// by the caller (a prefix test may ignore case, as SQLite's `LIKE` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameFilter<'a> {
    Any,
    Exact(&'a str),
    /// Names starting with this (metric names hold only `[a-zA-Z0-9_:]`).
    Prefix(&'a str),
}

/// A series as the query engine sees it: its row, name, labels (a JSON object) and
/// newest sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesRow {
    pub id: i64,
    pub name: String,
    pub labels: String,
    /// The time (µs) and value of the series' newest sample.
    pub last: (i64, f64),
}

/// The series of every source that pass `name`, have a sample at `since` or later, and,
/// with `sample_in`, one at those times (microseconds, inclusive).
pub async fn find_series(
    db: &DatabaseConnection,
    name: NameFilter<'_>,
    since: Option<i64>,
    sample_in: Option<std::ops::RangeInclusive<i64>>,
) -> Result<Vec<SeriesRow>, DbErr> {
    let mut query = series_where(name, since, sample_in);
    query.columns([
        series::Column::Id,
        series::Column::Name,
        series::Column::Labels,
        series::Column::LastTimestamp,
        series::Column::LastValue,
        series::Column::LastBits,
    ]);
    let mut rows = Vec::new();
    for row in db.query_all(&query).await? {
        rows.push(SeriesRow {
            id: row.try_get_by_index(0)?,
            name: row.try_get_by_index(1)?,
            labels: row.try_get_by_index(2)?,
            last: (row.try_get_by_index(3)?, loaded_value(row.try_get_by_index(4)?, row.try_get_by_index(5)?)),
        });
    }
    Ok(rows)
}

/// The distinct names of the series [`find_series`] finds with no name filter, without
/// reading their labels.
pub async fn series_names(
    db: &DatabaseConnection,
    since: Option<i64>,
    sample_in: Option<std::ops::RangeInclusive<i64>>,
) -> Result<Vec<String>, DbErr> {
    let mut query = series_where(NameFilter::Any, since, sample_in);
    query.distinct().column(series::Column::Name);
    db.query_all(&query).await?.iter().map(|row| row.try_get_by_index(0)).collect()
}

/// A query of `metric_series` (its columns still to choose) narrowed as [`find_series`]
/// says.
fn series_where(
    name: NameFilter<'_>,
    since: Option<i64>,
    sample_in: Option<std::ops::RangeInclusive<i64>>,
) -> sea_orm::sea_query::SelectStatement {
    let mut query = Query::select().from(series::Entity).to_owned();
    match name {
        NameFilter::Any => {}
        NameFilter::Exact(name) => {
            query.and_where(Expr::col(series::Column::Name).eq(name));
        }
        NameFilter::Prefix(prefix) => {
            let pattern = format!("{}%", prefix.replace('\\', "\\\\").replace('_', "\\_").replace('%', "\\%"));
            query.and_where(Expr::col(series::Column::Name).like(LikeExpr::new(pattern).escape('\\')));
        }
    }
    if let Some(since) = since {
        // The last timestamp is the latest sample's: a series that ended before is left
        // out without looking at its samples.
        query.and_where(Expr::col(series::Column::LastTimestamp).gte(since));
    }
    if let Some(times) = sample_in {
        // A sample in the head, or a chunk whose samples span some of the times: a chunk
        // counts even when the times fall in a gap between two of its samples (as a
        // Prometheus chunk does).
        let in_head = Query::select()
            .expr(Expr::val(1))
            .from(sample::Entity)
            .and_where(
                Expr::col((sample::Entity, sample::Column::SeriesId)).equals((series::Entity, series::Column::Id)),
            )
            .and_where(Expr::col((sample::Entity, sample::Column::Ts)).gte(*times.start()))
            .and_where(Expr::col((sample::Entity, sample::Column::Ts)).lte(*times.end()))
            .to_owned();
        let chunks = Alias::new("metric_chunks");
        let in_chunk = Query::select()
            .expr(Expr::val(1))
            .from(chunks.clone())
            .and_where(
                Expr::col((chunks.clone(), Alias::new("series_id"))).equals((series::Entity, series::Column::Id)),
            )
            .and_where(Expr::col((chunks.clone(), Alias::new("start_ts"))).gte(compaction::window_of(*times.start())))
            .and_where(Expr::col((chunks.clone(), Alias::new("start_ts"))).lte(*times.end()))
            .and_where(Expr::col((chunks.clone(), Alias::new("first_ts"))).lte(*times.end()))
            .and_where(Expr::col((chunks, Alias::new("end_ts"))).gte(*times.start()))
            .to_owned();
        query.cond_where(Condition::any().add(Expr::exists(in_head)).add(Expr::exists(in_chunk)));
    }
    query
}

/// Series ids in one statement of [`read_points`]: well under every backend's limit of
/// bound parameters.
const POINTS_CHUNK: usize = 1_000;

/// Calls `each(series_id, ts, value)` with the samples of the series `ids` at the times
/// `range` (inclusive), a series' samples in time order, each value as it arrived (NaN
/// payloads and infinities included); `each` stops the reading by answering `Break`.
pub async fn read_points(
    db: &DatabaseConnection,
    ids: &[i64],
    range: std::ops::RangeInclusive<i64>,
    mut each: impl FnMut(i64, i64, f64) -> ControlFlow<()>,
) -> Result<(), DbErr> {
    read_series(db, ids, range, |series_id, samples| {
        for (ts, value) in samples {
            each(series_id, ts, value)?;
        }
        ControlFlow::Continue(())
    })
    .await
}

/// The one reader of stored samples: calls `each(series_id, samples)` once for each of
/// the series `ids` with samples at the times `range` (inclusive), with all of them in
/// time order: those of its chunks and of its head, the head's winning on equal times.
/// A statement per 1,000 series; `each` stops the reading by answering `Break`.
///
/// The head is read before the chunks: a compaction committing in between moves samples
/// the head already gave into a chunk, where they are found again (and merged away), while
/// the other order would miss them.
pub async fn read_series(
    db: &DatabaseConnection,
    ids: &[i64],
    range: std::ops::RangeInclusive<i64>,
    mut each: impl FnMut(i64, Vec<(i64, f64)>) -> ControlFlow<()>,
) -> Result<(), DbErr> {
    use futures_util::TryStreamExt;
    use sea_orm::StreamTrait;
    for batch in ids.chunks(POINTS_CHUNK) {
        let statement = Query::select()
            .columns([sample::Column::SeriesId, sample::Column::Ts, sample::Column::Value, sample::Column::Bits])
            .from(sample::Entity)
            .and_where(Expr::col(sample::Column::SeriesId).is_in(batch.iter().copied()))
            .and_where(Expr::col(sample::Column::Ts).gte(*range.start()))
            .and_where(Expr::col(sample::Column::Ts).lte(*range.end()))
            .order_by(sample::Column::SeriesId, Order::Asc)
            .order_by(sample::Column::Ts, Order::Asc)
            .to_owned();
        let mut head: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        let mut rows = db.stream(&statement).await?;
        while let Some(row) = rows.try_next().await? {
            let value = loaded_value(row.try_get_by_index(2)?, row.try_get_by_index(3)?);
            head.entry(row.try_get_by_index(0)?).or_default().push((row.try_get_by_index(1)?, value));
        }
        drop(rows);
        // A series' chunks come in a run, in time order; it is handed over when the next
        // series' begin.
        let mut current: Option<(i64, Vec<(i64, f64)>)> = None;
        let mut chunks = db.stream(&compaction::chunks_over(batch, &range)).await?;
        while let Some(row) = chunks.try_next().await? {
            let (series_id, samples) = compaction::decode_in(&row, &range)?;
            match &mut current {
                Some((id, kept)) if *id == series_id => kept.extend(samples),
                _ => {
                    if let Some((id, kept)) = current.replace((series_id, samples)) {
                        let merged = merge(kept, head.remove(&id).unwrap_or_default());
                        if !merged.is_empty() && each(id, merged).is_break() {
                            return Ok(());
                        }
                    }
                }
            }
        }
        drop(chunks);
        if let Some((id, kept)) = current {
            let merged = merge(kept, head.remove(&id).unwrap_or_default());
            if !merged.is_empty() && each(id, merged).is_break() {
                return Ok(());
            }
        }
        for (id, samples) in head {
            if each(id, samples).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Two runs of samples in time order merged into one; `head`'s wins on equal times.
fn merge(chunks: Vec<(i64, f64)>, head: Vec<(i64, f64)>) -> Vec<(i64, f64)> {
    if head.is_empty() {
        return chunks;
    }
    let mut merged = Vec::with_capacity(chunks.len() + head.len());
    let mut head = head.into_iter().peekable();
    for (ts, value) in chunks {
        while let Some(h) = head.next_if(|h| h.0 < ts) {
            merged.push(h);
        }
        if head.peek().is_some_and(|h| h.0 == ts) {
            continue;
        }
        merged.push((ts, value));
    }
    merged.extend(head);
    merged
}

/// What every source declared about the metric family `name` (all families when
/// `None`), by family name.
pub async fn metadata_rows(db: &impl ConnectionTrait, name: Option<&str>) -> Result<Vec<metadata::Model>, DbErr> {
    let mut query = metadata::Entity::find();
    if let Some(name) = name {
        query = query.filter(metadata::Column::Name.eq(name));
    }
    query.order_by_asc(metadata::Column::Name).all(db).await
}
