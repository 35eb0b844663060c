//! The `login_throttle` rows: one per account and per client address, keyed by a digest
//! (no login name or address is stored). What a row's figures mean and when a login is
//! refused is `auth::throttle`'s arithmetic and `service::identity::throttle`'s rules.

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbErr,
    sea_query::{Expr, ExprTrait, LockType, OnConflict, Query},
};

use crate::auth::throttle::Record;

const TABLE: &str = "login_throttle";
const COLUMNS: [&str; 5] = ["failures", "window_start", "blocked_until", "blocks", "keep_until"];

/// The row's `blocked_until`, if there is a row.
pub async fn blocked_until(conn: &impl ConnectionTrait, digest: &str) -> Result<Option<i64>, DbErr> {
    let select =
        Query::select().column("blocked_until").from(TABLE).and_where(Expr::col("key_hash").eq(digest)).to_owned();
    match conn.query_one_raw(conn.get_database_backend().build(&select)).await? {
        Some(row) => Ok(Some(row.try_get("", "blocked_until")?)),
        None => Ok(None),
    }
}

/// The row of `digest`, created empty (its window starting at `now`) if missing, and
/// locked for the rest of `txn` (`FOR UPDATE`; on SQLite the write transaction's lock),
/// so that concurrent attempts on several replicas read and write it one at a time.
pub async fn lock(txn: &DatabaseTransaction, digest: &str, now: i64) -> Result<Record, DbErr> {
    let backend = txn.get_database_backend();
    let insert = Query::insert()
        .into_table(TABLE)
        .columns(std::iter::once("key_hash").chain(COLUMNS))
        .values_panic([digest.into(), 0.into(), now.into(), 0i64.into(), 0.into(), now.into()])
        .on_conflict(OnConflict::column("key_hash").do_nothing_on(["key_hash"]).to_owned())
        .to_owned();
    txn.execute_raw(backend.build(&insert)).await?;
    let select = Query::select()
        .columns(COLUMNS)
        .from(TABLE)
        .and_where(Expr::col("key_hash").eq(digest))
        .lock(LockType::Update)
        .to_owned();
    let row = txn
        .query_one_raw(backend.build(&select))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("{TABLE} row just inserted")))?;
    Ok(Record {
        failures: row.try_get("", "failures")?,
        window_start: row.try_get("", "window_start")?,
        blocked_until: row.try_get("", "blocked_until")?,
        blocks: row.try_get("", "blocks")?,
    })
}

/// Writes `record` to the row of `digest`, kept until `keep_until`.
pub async fn store(conn: &impl ConnectionTrait, digest: &str, record: &Record, keep_until: i64) -> Result<(), DbErr> {
    let update = Query::update()
        .table(TABLE)
        .values([
            ("failures", record.failures.into()),
            ("window_start", record.window_start.into()),
            ("blocked_until", record.blocked_until.into()),
            ("blocks", record.blocks.into()),
            ("keep_until", keep_until.into()),
        ])
        .and_where(Expr::col("key_hash").eq(digest))
        .to_owned();
    conn.execute_raw(conn.get_database_backend().build(&update)).await?;
    Ok(())
}

/// Deletes the row of `digest`.
pub async fn delete(conn: &impl ConnectionTrait, digest: &str) -> Result<(), DbErr> {
    let delete = Query::delete().from_table(TABLE).and_where(Expr::col("key_hash").eq(digest)).to_owned();
    conn.execute_raw(conn.get_database_backend().build(&delete)).await?;
    Ok(())
}

/// Deletes rows kept until before `now`.
pub async fn prune(conn: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
    let delete = Query::delete().from_table(TABLE).and_where(Expr::col("keep_until").lt(now)).to_owned();
    conn.execute_raw(conn.get_database_backend().build(&delete)).await?;
    Ok(())
}
