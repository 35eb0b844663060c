//! What the retention sweep needs from the database: the sweep lock that keeps replicas
//! from sweeping at once, and deletions of expired rows in bounded chunks.
//!
//! Each chunk selects at most a given number of keys of expired rows through a time
//! index, then deletes those rows by key, as one statement in its own short transaction:
//! no deletion holds the writer (SQLite) or row locks (PostgreSQL, MariaDB) for long,
//! and the same two statements work on all three databases (MariaDB cannot delete with
//! a `LIMIT` subquery on the table it deletes from; PostgreSQL has no `DELETE … LIMIT`).

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, Query},
    sqlx::{self, Connection},
};

use super::{
    Backend, Database, compaction,
    entity::{log, series},
};

/// Arbitrary, fixed key of the PostgreSQL advisory lock ("kkrete" in ASCII).
const PG_LOCK_KEY: i64 = 0x6b6b_7265_7465;
/// MariaDB's named locks are the server's, not a database's: the name is made of the
/// database's, so that deployments sharing a server do not hold each other's sweeps
/// back (a digest, as a name has at most 64 characters).
const MYSQL_LOCK: &str = "SELECT GET_LOCK(CONCAT('killkrill_retention_', MD5(DATABASE())), 0)";
const MYSQL_UNLOCK: &str = "SELECT RELEASE_LOCK(CONCAT('killkrill_retention_', MD5(DATABASE())))";

/// The sweep lock, held by one replica at a time, on a connection of its own taken out
/// of the pool: a session-level advisory lock on PostgreSQL, a named lock (`GET_LOCK`) on
/// MariaDB. A replica that dies, or drops the lock without releasing it, closes that
/// connection, and the database frees the lock at once. On SQLite, one process per
/// database file is the deployment model, and there is nothing to hold.
pub enum SweepLock {
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
    Sqlite,
}

impl std::fmt::Debug for SweepLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = match self {
            SweepLock::Postgres(_) => "postgres advisory lock",
            SweepLock::MySql(_) => "mariadb named lock",
            SweepLock::Sqlite => "sqlite (none)",
        };
        f.debug_tuple("SweepLock").field(&held).finish()
    }
}

impl SweepLock {
    /// Takes the lock without waiting; `None` when another replica holds it.
    pub async fn try_acquire(db: &Database) -> Result<Option<SweepLock>, DbErr> {
        match db.backend() {
            Backend::Sqlite => Ok(Some(SweepLock::Sqlite)),
            Backend::Postgres => {
                let pool = db.conn().get_postgres_connection_pool();
                let mut conn = pool.acquire().await.map_err(super::acquire_error)?.detach();
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(PG_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(super::exec_error)?;
                if got {
                    return Ok(Some(SweepLock::Postgres(conn)));
                }
                let _ = conn.close().await;
                Ok(None)
            }
            Backend::MySql => {
                let pool = db.conn().get_mysql_connection_pool();
                let mut conn = pool.acquire().await.map_err(super::acquire_error)?.detach();
                let got: Option<i64> =
                    sqlx::query_scalar(MYSQL_LOCK).fetch_one(&mut conn).await.map_err(super::exec_error)?;
                if got == Some(1) {
                    return Ok(Some(SweepLock::MySql(conn)));
                }
                let _ = conn.close().await;
                Ok(None)
            }
        }
    }

    /// Releases the lock and closes its connection. (Closing alone would release it too;
    /// releasing first says so to the server before the connection goes.)
    pub async fn release(self) {
        match self {
            SweepLock::Sqlite => {}
            SweepLock::Postgres(mut conn) => {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(PG_LOCK_KEY).execute(&mut conn).await;
                let _ = conn.close().await;
            }
            SweepLock::MySql(mut conn) => {
                let _ = sqlx::query(MYSQL_UNLOCK).execute(&mut conn).await;
                let _ = conn.close().await;
            }
        }
    }
}

/// Deletes up to `chunk` log lines of `source_id` older than `before` (microseconds);
/// returns how many it deleted. The lines are found through `ix_logs_source_ts`.
pub async fn delete_logs(db: &Database, source_id: &str, before: i64, chunk: u64) -> Result<u64, DbErr> {
    let ids: Vec<i64> = log::Entity::find()
        .select_only()
        .column(log::Column::Id)
        .filter(log::Column::SourceId.eq(source_id))
        .filter(log::Column::Ts.lt(before))
        .limit(chunk)
        .into_tuple()
        .all(db.conn())
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let txn = super::begin_write_gapless(db.conn()).await?;
    let deleted = log::Entity::delete_many().filter(log::Column::Id.is_in(ids)).exec(&txn).await?.rows_affected;
    txn.commit().await?;
    Ok(deleted)
}

/// Deletes up to `chunk` head samples of the series of `source_id` older than `before`;
/// returns how many it deleted. The samples are found series by series through the
/// head's `(series_id, ts)` key.
pub async fn delete_samples(db: &Database, source_id: &str, before: i64, chunk: u64) -> Result<u64, DbErr> {
    // A "window" one microsecond wide: the samples at `before - 1` and earlier.
    delete_windows(db, ("metric_samples", "ts", 1), source_id, before, chunk).await
}

/// Deletes up to `chunk` metric chunks of the series of `source_id` whose whole window
/// ends by `before`; returns how many it deleted. A chunk whose window is only partly
/// expired stays, samples before `before` included, until the sweep after its window has
/// passed (at most [`compaction::WINDOW`] later).
pub async fn delete_chunks(db: &Database, source_id: &str, before: i64, chunk: u64) -> Result<u64, DbErr> {
    delete_windows(db, ("metric_chunks", "start_ts", compaction::WINDOW), source_id, before, chunk).await
}

/// Deletes up to `chunk` rows of `table` (keyed by `series_id` and the start of a window
/// `width` long, in `start`) of the series of `source_id` whose whole window ends by
/// `before`.
async fn delete_windows(
    db: &Database,
    (table, start, width): (&'static str, &'static str, i64),
    source_id: &str,
    before: i64,
    chunk: u64,
) -> Result<u64, DbErr> {
    let table = Alias::new(table);
    let (series_id, start) = (Alias::new("series_id"), Alias::new(start));
    let select = Query::select()
        .column((table.clone(), series_id.clone()))
        .column((table.clone(), start.clone()))
        .from(series::Entity)
        .inner_join(
            table.clone(),
            Expr::col((table.clone(), series_id.clone())).equals((series::Entity, series::Column::Id)),
        )
        .and_where(Expr::col((series::Entity, series::Column::SourceId)).eq(source_id))
        .and_where(Expr::col((table.clone(), start.clone())).lte(before.saturating_sub(width)))
        .limit(chunk)
        .to_owned();
    let keys: Vec<(i64, i64)> = db
        .conn()
        .query_all(&select)
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index::<i64>(0)?, row.try_get_by_index::<i64>(1)?)))
        .collect::<Result<_, DbErr>>()?;
    if keys.is_empty() {
        return Ok(0);
    }
    let delete = Query::delete()
        .from_table(table)
        .and_where(
            Expr::tuple([Expr::col(series_id), Expr::col(start)])
                .in_tuples(keys.into_iter().map(|(s, h)| sea_orm::sea_query::ValueTuple::Two(s.into(), h.into()))),
        )
        .to_owned();
    let txn = super::begin_write_gapless(db.conn()).await?;
    let deleted = txn.execute(&delete).await?.rows_affected();
    txn.commit().await?;
    Ok(deleted)
}
