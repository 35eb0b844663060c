//! Metrics: samples grouped in series (source, name, labels), the list of known series,
//! and range queries reduced per step bucket.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
    sqlx,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::logs::parse_timestamp;
use crate::{
    error::{AppError, FieldError},
    storage::entity::{sample, series, source},
    storage::rollups::{self, FINE, MINUTE, Part, Partial},
    storage::{Backend, Database},
    time::{micros_to_rfc3339, now_micros},
};

pub const MAX_BATCH: usize = 10_000;
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;
const MAX_LABELS: usize = 32;
const MAX_LABEL_NAME_CHARS: usize = 128;
const MAX_LABEL_VALUE_CHARS: usize = 1024;
const INSERT_CHUNK: usize = 2_000;
const METRIC_TYPES: [&str; 3] = ["counter", "gauge", "histogram"];

/// One sample as clients send it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SampleInput {
    #[schema(required = true, max_length = 255, pattern = "^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    #[schema(pattern = "^(counter|gauge|histogram)$")]
    pub metric_type: Option<String>,
    pub labels: Option<BTreeMap<String, Value>>,
    #[schema(required = true)]
    pub value: Option<f64>,
    pub timestamp: Option<Value>,
}

fn valid_name(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':'))
}

struct Validated {
    key: String,
    name: String,
    labels: String,
    metric_type: &'static str,
    ts: i64,
    value: f64,
}

fn series_key(source_id: &str, name: &str, labels: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [source_id, name, labels] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

fn validate(
    index: usize,
    input: SampleInput,
    source_id: &str,
    now: i64,
    problems: &mut Vec<FieldError>,
) -> Option<Validated> {
    let field = |name: &str| format!("metrics[{index}].{name}");
    let before = problems.len();
    let name = input.name.unwrap_or_default();
    if name.len() > 255 || !valid_name(&name, true) {
        problems.push(FieldError::new(field("name"), "must match [a-zA-Z_:][a-zA-Z0-9_:]* (at most 255 characters)"));
    }
    let requested = input.metric_type.as_deref().unwrap_or("gauge");
    let metric_type = METRIC_TYPES.iter().copied().find(|known| *known == requested);
    if metric_type.is_none() {
        problems.push(FieldError::new(field("type"), "must be counter, gauge or histogram"));
    }
    let mut labels = BTreeMap::new();
    let given = input.labels.unwrap_or_default();
    if given.len() > MAX_LABELS {
        problems.push(FieldError::new(field("labels"), format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in given {
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                problems.push(FieldError::new(field("labels"), format!("label `{key}` must be a string")));
                continue;
            }
        };
        let too_long = key.len() > MAX_LABEL_NAME_CHARS || text.chars().count() > MAX_LABEL_VALUE_CHARS;
        if !valid_name(&key, false) || key.starts_with("__") || too_long || text.contains('\0') {
            problems.push(FieldError::new(field("labels"), format!("label `{key}` is not a valid label or value")));
            continue;
        }
        labels.insert(key, text);
    }
    let value = input.value.filter(|v| v.is_finite());
    if value.is_none() {
        problems.push(FieldError::new(field("value"), "must be a finite number"));
    }
    let ts = match input.timestamp.as_ref().filter(|v| !v.is_null()) {
        Some(t) => parse_timestamp(t).map_err(|m| problems.push(FieldError::new(field("timestamp"), m))).ok(),
        None => Some(now),
    };
    if problems.len() > before {
        return None;
    }
    let labels = serde_json::to_string(&labels).ok()?;
    Some(Validated {
        key: series_key(source_id, &name, &labels),
        name,
        labels,
        metric_type: metric_type?,
        ts: ts?,
        value: value?,
    })
}

/// Validates every sample, then stores all of them in one transaction, or none.
pub async fn ingest(db: &Database, source_id: &str, inputs: Vec<SampleInput>) -> Result<usize, AppError> {
    if inputs.is_empty() {
        return Err(AppError::Validation(vec![FieldError::new("metrics", "must contain at least one sample")]));
    }
    if inputs.len() > MAX_BATCH {
        return Err(AppError::TooLarge(format!("A batch holds at most {MAX_BATCH} samples")));
    }
    let _turn = db.ingest_turn().await;
    let now = now_micros();
    let mut problems = Vec::new();
    let samples: Vec<Validated> = inputs
        .into_iter()
        .enumerate()
        .filter_map(|(i, input)| validate(i, input, source_id, now, &mut problems))
        .collect();
    if !problems.is_empty() {
        problems.truncate(50);
        return Err(AppError::Validation(problems));
    }
    // Create the series this batch introduces; concurrent batches may race to do so.
    // A BTreeMap: series rows are locked in key order, so concurrent batches that touch
    // the same series cannot deadlock each other.
    let mut latest: BTreeMap<&str, &Validated> = BTreeMap::new();
    for s in &samples {
        let entry = latest.entry(s.key.as_str()).or_insert(s);
        if s.ts >= entry.ts {
            *entry = s;
        }
    }
    let stored = crate::storage::retry_deadlocks(|| async {
        match db.backend() {
            Backend::Postgres => store_unnest(db.conn().get_postgres_connection_pool(), source_id, &latest, &samples)
                .await
                .map_err(crate::storage::exec_error),
            Backend::Sqlite | Backend::MySql => store(db.conn(), source_id, &latest, &samples).await,
        }
    })
    .await
    .map_err(|err| super::source_gone_or(err, source_id))?;
    Ok(stored)
}

/// SQLite and MariaDB: the series the batch introduces (one INSERT each), their ids, the
/// samples in multi-row INSERTs, then each series' last value, in one transaction.
async fn store(
    conn: &DatabaseConnection,
    source_id: &str,
    latest: &BTreeMap<&str, &Validated>,
    samples: &[Validated],
) -> Result<usize, DbErr> {
    // The upserts below lock the batch's series rows, in key order (the BTreeMap's), on
    // MariaDB (SQLite's writer holds the whole file). They keep every other batch off
    // these series' rollups, so those are read without locking gaps (see `rollups::add`).
    let txn = crate::storage::begin_write_gapless(conn).await?;
    if conn.get_database_backend() == DbBackend::MySql {
        // The source first, shared: a deletion of it (which locks it, then cascades to
        // the series) waits for the batch, or the batch for the deletion, instead of each
        // holding series rows the other wants. A source already gone fails the series'
        // foreign key below.
        source::Entity::find_by_id(source_id.to_owned())
            .select_only()
            .column(source::Column::Id)
            .lock_shared()
            .into_tuple::<String>()
            .one(&txn)
            .await?;
    }
    for s in latest.values() {
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
                s.value.into(),
                i64::MIN.into(),
            ])
            .on_conflict(
                OnConflict::column(series::Column::SeriesKey).do_nothing_on([series::Column::SeriesKey]).to_owned(),
            )
            .to_owned();
        txn.execute(&insert).await?;
    }
    let keys: Vec<String> = latest.keys().map(|k| (*k).to_owned()).collect();
    let ids: HashMap<String, i64> = series::Entity::find()
        .filter(series::Column::SeriesKey.is_in(keys))
        .all(&txn)
        .await?
        .into_iter()
        .map(|s| (s.series_key, s.id))
        .collect();
    // Each sample's series id, looked up once for the rollups and the rows.
    let resolved: Vec<(i64, i64, f64)> =
        samples.iter().filter_map(|s| Some((*ids.get(&s.key)?, s.ts, s.value))).collect();
    let rollups = rollups::of_batch(resolved.iter().copied());
    let mut rows = resolved.into_iter().map(|(series_id, ts, value)| sample::ActiveModel {
        series_id: Set(series_id),
        ts: Set(ts),
        value: Set(value),
        ..Default::default()
    });
    let mut stored = 0;
    loop {
        let chunk: Vec<_> = rows.by_ref().take(INSERT_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        stored += chunk.len();
        sample::Entity::insert_many(chunk).exec_without_returning(&txn).await?;
    }
    for s in latest.values() {
        let Some(id) = ids.get(&s.key) else { continue };
        series::Entity::update_many()
            .col_expr(series::Column::LastValue, Expr::value(s.value))
            .col_expr(series::Column::LastTimestamp, Expr::value(s.ts))
            .filter(series::Column::Id.eq(*id))
            .filter(series::Column::LastTimestamp.lte(s.ts))
            .exec(&txn)
            .await?;
    }
    // A batch only touches a series' rollups while it holds that series.
    rollups::add(&txn, rollups).await?;
    txn.commit().await?;
    Ok(stored)
}

/// PostgreSQL: the same steps as [`store`], each one statement over arrays (five round
/// trips per batch instead of two per series plus one per 2,000 samples).
async fn store_unnest(
    pool: &sqlx::PgPool,
    source_id: &str,
    latest: &BTreeMap<&str, &Validated>,
    samples: &[Validated],
) -> Result<usize, sqlx::Error> {
    let mut txn = pool.begin().await?;
    let keys: Vec<&str> = latest.keys().copied().collect();
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
    .bind(&keys)
    .bind(latest.values().map(|s| s.name.as_str()).collect::<Vec<_>>())
    .bind(latest.values().map(|s| s.labels.as_str()).collect::<Vec<_>>())
    .bind(latest.values().map(|s| s.metric_type).collect::<Vec<_>>())
    .bind(latest.values().map(|s| s.value).collect::<Vec<_>>())
    .bind(i64::MIN)
    .execute(&mut *txn)
    .await?;
    // Locks the series rows in key order (as `store` updates them) before the samples'
    // foreign-key checks share-lock them in sample order; NO KEY UPDATE does not conflict
    // with those share locks.
    let ids: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT series_key, id FROM metric_series WHERE series_key = ANY($1) ORDER BY series_key FOR NO KEY UPDATE",
    )
    .bind(&keys)
    .fetch_all(&mut *txn)
    .await?
    .into_iter()
    .collect();
    let (mut series_ids, mut ts, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for s in samples {
        if let Some(id) = ids.get(&s.key) {
            series_ids.push(*id);
            ts.push(s.ts);
            values.push(s.value);
        }
    }
    let stored = series_ids.len();
    let rollups =
        rollups::of_batch(series_ids.iter().zip(&ts).zip(&values).map(|((id, ts), value)| (*id, *ts, *value)));
    sqlx::query(
        "INSERT INTO metric_samples (series_id, ts, value) SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::float8[])",
    )
    .bind(series_ids)
    .bind(ts)
    .bind(values)
    .execute(&mut *txn)
    .await?;
    // The series rows are locked: no other batch touches their rollups meanwhile.
    rollups::add_pg(&mut txn, rollups).await?;
    let (mut last_ids, mut last_values, mut last_ts) = (Vec::new(), Vec::new(), Vec::new());
    for s in latest.values() {
        if let Some(id) = ids.get(&s.key) {
            last_ids.push(*id);
            last_values.push(s.value);
            last_ts.push(s.ts);
        }
    }
    sqlx::query(
        "UPDATE metric_series AS s SET last_value = u.last_value, last_timestamp = u.ts \
         FROM UNNEST($1::int8[], $2::float8[], $3::int8[]) AS u(id, last_value, ts) \
         WHERE s.id = u.id AND s.last_timestamp <= u.ts",
    )
    .bind(last_ids)
    .bind(last_values)
    .bind(last_ts)
    .execute(&mut *txn)
    .await?;
    txn.commit().await?;
    Ok(stored)
}

/// A known series as `GET /api/v1/metrics` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    /// The row's number as a UUID ([`crate::ids::of_row`]).
    pub id: String,
    pub source_id: String,
    pub name: String,
    #[schema(value_type = Option<BTreeMap<String, String>>, required = true)]
    pub labels: Value,
    #[serde(rename = "type")]
    pub metric_type: String,
    pub last_value: f64,
    pub last_timestamp: String,
}

impl From<series::Model> for SeriesView {
    fn from(s: series::Model) -> Self {
        Self {
            id: crate::ids::of_row(s.id),
            source_id: s.source_id,
            name: s.name,
            labels: serde_json::from_str(&s.labels).unwrap_or(Value::Null),
            metric_type: s.metric_type,
            last_value: s.last_value,
            last_timestamp: micros_to_rfc3339(s.last_timestamp),
        }
    }
}

pub async fn list_series(
    db: &DatabaseConnection,
    name: Option<&str>,
    source_id: Option<&str>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<SeriesView>, u64), AppError> {
    let mut query = series::Entity::find();
    if let Some(name) = name {
        if !valid_name(name, true) {
            return Err(AppError::Validation(vec![FieldError::new("name", "must be a valid metric name")]));
        }
        query = query.filter(series::Column::Name.eq(name));
    }
    if let Some(source_id) = source_id {
        query = query.filter(series::Column::SourceId.eq(crate::ids::filter(source_id, "source_id")?));
    }
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_asc(series::Column::Name)
        .order_by_asc(series::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    Ok((rows.into_iter().map(SeriesView::from).collect(), total))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Avg,
    Sum,
    Min,
    Max,
    Count,
    Rate,
}

/// `POST /api/v1/metrics/query`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    #[schema(pattern = "^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    pub metric: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 (`"2026-11-25T10:30:00Z"`) or Unix seconds, as a number or a string.
    pub start: Value,
    /// As `start`; not before it.
    pub end: Value,
    /// Seconds (a number), or a duration: `"500ms"`, `"60s"`, `"5m"`, `"1h"`, `"1d"`. At
    /// most 11,000 steps per series.
    pub step: Value,
    #[schema(pattern = "^(avg|sum|min|max|count|rate)$")]
    pub aggregation: Option<String>,
}

/// `60`, `"60"`, `"60s"`, `"5m"`, `"1h"`, `"1d"`, `"500ms"` → microseconds.
pub fn parse_step(step: &Value) -> Result<i64, String> {
    let err = || "must be seconds (a number) or a duration such as \"60s\", \"5m\", \"1h\"".to_owned();
    let seconds = match step {
        Value::Number(n) => n.as_f64().ok_or_else(err)?,
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
            let (number, unit) = s.split_at(split);
            let number: f64 = number.parse().map_err(|_| err())?;
            let factor = match unit {
                "" | "s" => 1.0,
                "ms" => 0.001,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                _ => return Err(err()),
            };
            number * factor
        }
        _ => return Err(err()),
    };
    let micros = (seconds * 1_000_000.0).round();
    if !micros.is_finite() || micros < 1_000.0 {
        return Err("must be at least 1 ms".to_owned());
    }
    Ok(micros as i64)
}

/// Runs a range query: each matching series' samples in `[start, end]`, grouped into
/// `step`-wide buckets from `start`, each bucket reduced by the aggregation. `rate` is the
/// bucket's increase (max − min, counters without resets) per second of step. Empty
/// buckets are omitted.
pub async fn query(db: &DatabaseConnection, q: RangeQuery) -> Result<Vec<SeriesPoints>, AppError> {
    let bad = |field: &str, message: String| AppError::Validation(vec![FieldError::new(field, message)]);
    let start = parse_timestamp(&q.start).map_err(|m| bad("start", m))?;
    let end = parse_timestamp(&q.end).map_err(|m| bad("end", m))?;
    let step = parse_step(&q.step).map_err(|m| bad("step", m))?;
    if end < start {
        return Err(bad("end", "must not be before start".to_owned()));
    }
    if (end - start) / step + 1 > MAX_POINTS_PER_SERIES {
        return Err(bad(
            "step",
            format!("yields more than {MAX_POINTS_PER_SERIES} points per series; use a larger step"),
        ));
    }
    if !valid_name(&q.metric, true) {
        return Err(bad("metric", "must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)".to_owned()));
    }
    if q.labels.values().any(|v| v.contains('\0')) {
        return Err(bad("labels", "must not contain NUL characters".to_owned()));
    }
    let aggregation: Aggregation = serde_json::from_value(json!(q.aggregation.as_deref().unwrap_or("avg")))
        .map_err(|_| bad("aggregation", "must be avg, sum, min, max, count or rate".to_owned()))?;
    let candidates = series::Entity::find().filter(series::Column::Name.eq(q.metric.as_str())).all(db).await?;
    let matching: Vec<(series::Model, BTreeMap<String, String>)> = candidates
        .into_iter()
        .filter_map(|s| {
            let labels: BTreeMap<String, String> = serde_json::from_str(&s.labels).ok()?;
            q.labels.iter().all(|(k, v)| labels.get(k) == Some(v)).then_some((s, labels))
        })
        .collect();
    let mut result = Vec::with_capacity(matching.len());
    if !matching.is_empty() {
        let ids: Vec<i64> = matching.iter().map(|(s, _)| s.id).collect();
        let step_seconds = step as f64 / 1e6;
        let mut buckets = buckets(db, &ids, start, end, step, aggregation).await?;
        for (series, mut metric) in matching {
            let Some(series_buckets) = buckets.remove(&series.id) else { continue };
            let values = series_buckets
                .into_iter()
                .map(|(bucket, p)| ((start + bucket * step) as f64 / 1e6, aggregation.reduce(&p, step_seconds)))
                .collect();
            metric.insert("__name__".into(), series.name);
            result.push(SeriesPoints { metric, values });
        }
    }
    Ok(result)
}

impl Aggregation {
    /// The parts it is computed from: the samples query computes only those.
    fn parts(self) -> &'static [Part] {
        match self {
            Aggregation::Avg => &[Part::Count, Part::Sum],
            Aggregation::Sum => &[Part::Sum],
            Aggregation::Min => &[Part::Min],
            Aggregation::Max => &[Part::Max],
            Aggregation::Count => &[Part::Count],
            Aggregation::Rate => &[Part::Min, Part::Max],
        }
    }

    fn reduce(self, p: &Partial, step_seconds: f64) -> f64 {
        match self {
            Aggregation::Avg => p.sum / p.count as f64,
            Aggregation::Sum => p.sum,
            Aggregation::Min => p.min,
            Aggregation::Max => p.max,
            Aggregation::Count => p.count as f64,
            Aggregation::Rate => (p.max - p.min) / step_seconds,
        }
    }
}

/// One series of a range query's answer.
#[derive(Debug, PartialEq)]
pub struct SeriesPoints {
    /// The series' labels, with its name under `__name__`.
    pub metric: BTreeMap<String, String>,
    /// `(bucket start in Unix seconds, value)`, oldest first.
    pub values: Vec<(f64, f64)>,
}

/// Each series' non-empty buckets as `(bucket index, partial)`, in order. When
/// `start` is on a minute and `step` is whole minutes, every bucket is made of whole
/// minutes: those read the minute rollups, and only the samples of a last,
/// partial minute are read one by one. Likewise with five-second slots when `start` and
/// `step` are whole multiples of five seconds (unless some hour in range has none kept).
/// Otherwise the samples are reduced in the database.
async fn buckets(
    db: &DatabaseConnection,
    ids: &[i64],
    start: i64,
    end: i64,
    step: i64,
    aggregation: Aggregation,
) -> Result<HashMap<i64, Vec<(i64, Partial)>>, AppError> {
    let mut buckets = Buckets::new(start, step);
    let mut samples_from = start;
    // The first minute, and slot, that does not end by `end`.
    let partial = |width: i64| (end + 1) - (end + 1).rem_euclid(width);
    let on = |width: i64| start.rem_euclid(width) == 0 && step % width == 0 && partial(width) > start;
    if on(MINUTE) {
        rollups::read(db, ids, start, partial(MINUTE), |id, minute, p| buckets.add_at(id, minute, p)).await?;
        samples_from = partial(MINUTE);
    } else if on(FINE) {
        let mut slots = Buckets::new(start, step);
        if rollups::read_fine(db, ids, start, partial(FINE), |id, slot, p| slots.add_at(id, slot, p)).await? {
            buckets = slots;
            samples_from = partial(FINE);
        }
    }
    if samples_from <= end {
        // start and step are integers we computed: safe to render as literals.
        let bucket = match db.get_database_backend() {
            DbBackend::MySql => format!("(ts - {start}) DIV {step}"),
            _ => format!("(ts - {start}) / {step}"),
        };
        let statement = Query::select()
            .column(sample::Column::SeriesId)
            .expr_as(Expr::cust(bucket), "bucket")
            .exprs(aggregation.parts().iter().map(|part| Expr::cust(part.sql())))
            .from(sample::Entity)
            .and_where(Expr::col(sample::Column::SeriesId).is_in(ids.iter().copied()))
            .and_where(Expr::col(sample::Column::Ts).gte(samples_from))
            .and_where(Expr::col(sample::Column::Ts).lte(end))
            .add_group_by([Expr::col(sample::Column::SeriesId), Expr::cust("bucket")])
            .to_owned();
        for row in db.query_all(&statement).await? {
            let partial = Partial::read(&row, 2, aggregation.parts())?;
            buckets.add(row.try_get_by_index(0)?, row.try_get_by_index(1)?, partial);
        }
    }
    Ok(buckets.done())
}

/// Buckets gathered per series, `step` wide from `start`. Rows mostly arrive in order (a
/// series' rollup minutes, then its partial last minute): an entry for the bucket just
/// added merges into it, and only a series whose entries came out of order is sorted and
/// merged afterwards. The series last added to is remembered, as entries come in runs of
/// a series.
struct Buckets {
    start: i64,
    step: i64,
    index: HashMap<i64, usize>,
    series: Vec<(i64, Vec<(i64, Partial)>)>,
    last: Option<(i64, usize)>,
    /// The bucket [`Buckets::add_at`] merges into while what it is given falls in it.
    open: Option<Open>,
}

/// A bucket being filled: `series_id`'s `bucket`, the times `[from, until)` (kept, not
/// derived from `bucket`, as every entry added is checked against them).
struct Open {
    series_id: i64,
    bucket: i64,
    from: i64,
    until: i64,
    p: Partial,
}

impl Buckets {
    fn new(start: i64, step: i64) -> Self {
        Self { start, step, index: HashMap::new(), series: Vec::new(), last: None, open: None }
    }

    /// Adds what a series measured from `at` on (a minute or slot start, at or after
    /// `start`). A row's minutes and slots come in time order, about ten to a bucket: the
    /// bucket is divided out only when one falls outside the last, not once an entry (an
    /// all-series day of slots is a million of them).
    fn add_at(&mut self, series_id: i64, at: i64, p: Partial) {
        if let Some(open) = &mut self.open
            && open.series_id == series_id
            && (open.from..open.until).contains(&at)
        {
            open.p.merge(&p);
            return;
        }
        let bucket = (at - self.start).div_euclid(self.step);
        let from = self.start + bucket * self.step;
        self.close();
        self.open = Some(Open { series_id, bucket, from, until: from.saturating_add(self.step), p });
    }

    /// Adds to a series' `bucket`.
    fn add(&mut self, series_id: i64, bucket: i64, p: Partial) {
        self.close();
        self.add_closed(series_id, bucket, p);
    }

    /// Adds the open bucket, if any, to its series.
    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            self.add_closed(open.series_id, open.bucket, open.p);
        }
    }

    fn add_closed(&mut self, series_id: i64, bucket: i64, p: Partial) {
        let at = match self.last {
            Some((id, at)) if id == series_id => at,
            _ => {
                let at = *self.index.entry(series_id).or_insert_with(|| {
                    self.series.push((series_id, Vec::new()));
                    self.series.len() - 1
                });
                self.last = Some((series_id, at));
                at
            }
        };
        let entries = &mut self.series[at].1;
        match entries.last_mut() {
            Some((last, kept)) if *last == bucket => kept.merge(&p),
            _ => entries.push((bucket, p)),
        }
    }

    fn done(mut self) -> HashMap<i64, Vec<(i64, Partial)>> {
        self.close();
        let mut done = HashMap::with_capacity(self.series.len());
        for (series_id, mut entries) in self.series {
            if !entries.is_sorted_by(|a, b| a.0 < b.0) {
                entries.sort_by_key(|(bucket, _)| *bucket);
                entries.dedup_by(|later, kept| {
                    let same = later.0 == kept.0;
                    if same {
                        kept.1.merge(&later.1);
                    }
                    same
                });
            }
            done.insert(series_id, entries);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_in_seconds_and_units() {
        assert_eq!(parse_step(&json!(60)), Ok(60_000_000));
        assert_eq!(parse_step(&json!("60s")), Ok(60_000_000));
        assert_eq!(parse_step(&json!("5m")), Ok(300_000_000));
        assert_eq!(parse_step(&json!("1h")), Ok(3_600_000_000));
        assert_eq!(parse_step(&json!("250ms")), Ok(250_000));
        assert_eq!(parse_step(&json!("15")), Ok(15_000_000));
        for bad in [json!(0), json!("-5s"), json!("5 parsecs"), json!(null), json!("")] {
            assert!(parse_step(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets_merge_and_sort_whatever_order_rows_arrive_in() {
        let mut buckets = Buckets::new(0, 10);
        for (series, bucket, value) in [(1, 0, 1.0), (1, 0, 2.0), (2, 5, 7.0), (1, 3, 4.0), (1, 1, 8.0), (1, 3, -1.0)] {
            buckets.add(series, bucket, Partial::of(value));
        }
        let done = buckets.done();
        let one: Vec<(i64, i64, f64)> = done[&1].iter().map(|(b, p)| (*b, p.count, p.sum)).collect();
        assert_eq!(one, [(0, 2, 3.0), (1, 1, 8.0), (3, 2, 3.0)]);
        assert_eq!(done[&2], [(5, Partial::of(7.0))]);
    }

    #[test]
    fn entries_by_time_land_in_the_bucket_they_fall_in() {
        // Buckets 100 wide from 1,000; the entries of two series, as rows of a few
        // entries each come: in time order within a row, rows in any order.
        let rows: [(i64, &[i64]); 5] = [
            (1, &[1_000, 1_010, 1_090, 1_100, 1_150]),
            (2, &[1_000, 1_099]),
            (1, &[1_190, 1_200, 1_299]),
            (1, &[1_050]),
            (2, &[1_100, 5_000]),
        ];
        let mut buckets = Buckets::new(1_000, 100);
        for (series, times) in rows {
            for at in times {
                buckets.add_at(series, *at, Partial::of(*at as f64));
            }
        }
        // A bucket index from the samples' query merges with what came by time.
        buckets.add(2, 40, Partial::of(1.0));
        let done = buckets.done();
        let by_bucket =
            |series: i64| -> Vec<(i64, i64, f64)> { done[&series].iter().map(|(b, p)| (*b, p.count, p.sum)).collect() };
        assert_eq!(by_bucket(1), [(0, 4, 4_150.0), (1, 3, 3_440.0), (2, 2, 2_499.0)]);
        assert_eq!(by_bucket(2), [(0, 2, 2_099.0), (1, 1, 1_100.0), (40, 2, 5_001.0)]);
    }

    #[test]
    fn metric_and_label_names_follow_prometheus() {
        assert!(valid_name("http_requests_total", true) && valid_name("a:b", true));
        assert!(!valid_name("a:b", false) && !valid_name("9lives", true) && !valid_name("", true));
    }
}
