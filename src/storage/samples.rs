//! The metric tables: series (`metric_series`, one per source, name and labels, with its
//! last value) and their samples (`metric_samples`); the rollups kept beside them are
//! `rollups`'.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
    sqlx,
};

use super::{
    Backend, Database,
    entity::{sample, series, source},
    rollups::{self, Part, Partial},
};

const INSERT_CHUNK: usize = 2_000;

/// A valid sample, as it will be stored, with what its series is made of.
pub struct SampleRow {
    /// The series' unique key (`metric_series.series_key`).
    pub key: String,
    pub name: String,
    /// A JSON object of strings, as text.
    pub labels: String,
    pub metric_type: &'static str,
    pub ts: i64,
    pub value: f64,
}

/// Stores the samples of a source's batch in one transaction, or none: the series it
/// introduces, the samples, the series' last values and the rollups.
pub async fn insert(db: &Database, source_id: &str, samples: &[SampleRow]) -> Result<usize, DbErr> {
    // Create the series this batch introduces; concurrent batches may race to do so.
    // A BTreeMap: series rows are locked in key order, so concurrent batches that touch
    // the same series cannot deadlock each other.
    let mut latest: BTreeMap<&str, &SampleRow> = BTreeMap::new();
    for s in samples {
        let entry = latest.entry(s.key.as_str()).or_insert(s);
        if s.ts >= entry.ts {
            *entry = s;
        }
    }
    super::retry_deadlocks(|| async {
        match db.backend() {
            Backend::Postgres => store_unnest(db.conn().get_postgres_connection_pool(), source_id, &latest, samples)
                .await
                .map_err(super::exec_error),
            Backend::Sqlite | Backend::MySql => store(db.conn(), source_id, &latest, samples).await,
        }
    })
    .await
}

/// SQLite and MariaDB: the series the batch introduces (one INSERT each), their ids, the
/// samples in multi-row INSERTs, then each series' last value, in one transaction.
async fn store(
    conn: &DatabaseConnection,
    source_id: &str,
    latest: &BTreeMap<&str, &SampleRow>,
    samples: &[SampleRow],
) -> Result<usize, DbErr> {
    // The upserts below lock the batch's series rows, in key order (the BTreeMap's), on
    // MariaDB (SQLite's writer holds the whole file). They keep every other batch off
    // these series' rollups, so those are read without locking gaps (see `rollups::add`).
    let txn = super::begin_write_gapless(conn).await?;
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
    latest: &BTreeMap<&str, &SampleRow>,
    samples: &[SampleRow],
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

/// Calls `each` with the samples of the series `ids` at the times `range`, reduced to
/// `parts` in the database by `step`-wide bucket from `start`: `(series_id, bucket
/// index, partial)`, in no particular order.
pub async fn read_buckets(
    db: &DatabaseConnection,
    ids: &[i64],
    (start, step): (i64, i64),
    range: std::ops::RangeInclusive<i64>,
    parts: &[Part],
    mut each: impl FnMut(i64, i64, Partial),
) -> Result<(), DbErr> {
    // start and step are integers we computed: safe to render as literals.
    let bucket = match db.get_database_backend() {
        DbBackend::MySql => format!("(ts - {start}) DIV {step}"),
        _ => format!("(ts - {start}) / {step}"),
    };
    let statement = Query::select()
        .column(sample::Column::SeriesId)
        .expr_as(Expr::cust(bucket), "bucket")
        .exprs(parts.iter().map(|part| Expr::cust(part.sql())))
        .from(sample::Entity)
        .and_where(Expr::col(sample::Column::SeriesId).is_in(ids.iter().copied()))
        .and_where(Expr::col(sample::Column::Ts).gte(*range.start()))
        .and_where(Expr::col(sample::Column::Ts).lte(*range.end()))
        .add_group_by([Expr::col(sample::Column::SeriesId), Expr::cust("bucket")])
        .to_owned();
    for row in db.query_all(&statement).await? {
        let partial = Partial::read(&row, 2, parts)?;
        each(row.try_get_by_index(0)?, row.try_get_by_index(1)?, partial);
    }
    Ok(())
}
