//! Login throttling shared by every replica: each account's and each client address's
//! failures are one row of `login_throttle`, so attempts spread over N replicas meet the
//! same limits as attempts at one. Rows are keyed by a digest (no login name or address is
//! stored) and deleted once they no longer matter.

use std::net::IpAddr;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr,
    sea_query::{Expr, ExprTrait, LockType, OnConflict, Query},
};

use crate::auth::{
    keys,
    throttle::{Limiter, Record},
};

const TABLE: &str = "login_throttle";
const COLUMNS: [&str; 5] = ["failures", "window_start", "blocked_until", "blocks", "keep_until"];
/// Failed logins per account: 10 in 15 minutes.
const ACCOUNTS: Limiter = Limiter::new(10, 15 * 60);
/// Failed logins per client address: 60 in a minute.
const CLIENTS: Limiter = Limiter::new(60, 60);

/// The rows a login attempt counts against: its account (a user id, or the name tried when
/// no user has it) and, when known, its client address.
fn rows(account: &str, client: Option<IpAddr>) -> impl Iterator<Item = (String, Limiter)> {
    let account = (keys::digest(&format!("account:{account}")), ACCOUNTS);
    let client = client.map(|ip| (keys::digest(&format!("client:{ip}")), CLIENTS));
    std::iter::once(account).chain(client)
}

/// `Some(seconds)` while the account or the client is blocked at `now` (microseconds).
pub async fn blocked_for(
    db: &impl ConnectionTrait,
    account: &str,
    client: Option<IpAddr>,
    now: i64,
) -> Result<Option<u64>, DbErr> {
    let digests: Vec<String> = rows(account, client).map(|(digest, _)| digest).collect();
    let select =
        Query::select().column("blocked_until").from(TABLE).and_where(Expr::col("key_hash").is_in(digests)).to_owned();
    let backend = db.get_database_backend();
    let mut blocked = None;
    for row in db.query_all_raw(backend.build(&select)).await? {
        let record = Record { blocked_until: row.try_get("", "blocked_until")?, ..Record::default() };
        blocked = Ord::max(blocked, Limiter::blocked_for(&record, now));
    }
    Ok(blocked)
}

/// Counts a failed login against the account and the client; `Some(seconds)` if that
/// started a block.
pub async fn fail(
    db: &DatabaseConnection,
    account: &str,
    client: Option<IpAddr>,
    now: i64,
) -> Result<Option<u64>, DbErr> {
    let mut blocked = None;
    for (digest, limiter) in rows(account, client) {
        blocked = Ord::max(blocked, fail_one(db, &digest, limiter, now).await?);
    }
    Ok(blocked)
}

/// One row's read-count-write, under the row's lock (the write lock on SQLite), so that
/// concurrent failures on several replicas are all counted.
async fn fail_one(db: &DatabaseConnection, digest: &str, limiter: Limiter, now: i64) -> Result<Option<u64>, DbErr> {
    let backend = db.get_database_backend();
    let txn = crate::db::begin_write(db).await?;
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
    let mut record = Record {
        failures: row.try_get("", "failures")?,
        window_start: row.try_get("", "window_start")?,
        blocked_until: row.try_get("", "blocked_until")?,
        blocks: row.try_get("", "blocks")?,
    };
    let blocked = limiter.fail(&mut record, now);
    let update = Query::update()
        .table(TABLE)
        .values([
            ("failures", record.failures.into()),
            ("window_start", record.window_start.into()),
            ("blocked_until", record.blocked_until.into()),
            ("blocks", record.blocks.into()),
            ("keep_until", limiter.keep_until(&record).into()),
        ])
        .and_where(Expr::col("key_hash").eq(digest))
        .to_owned();
    txn.execute_raw(backend.build(&update)).await?;
    txn.commit().await?;
    Ok(blocked)
}

/// Forgets the account's failures (after a successful login).
pub async fn reset(db: &impl ConnectionTrait, account: &str) -> Result<(), DbErr> {
    let digests: Vec<String> = rows(account, None).map(|(digest, _)| digest).collect();
    let delete = Query::delete().from_table(TABLE).and_where(Expr::col("key_hash").is_in(digests)).to_owned();
    db.execute_raw(db.get_database_backend().build(&delete)).await?;
    Ok(())
}

/// Deletes rows that no longer count, block or lengthen a block.
pub async fn prune(db: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
    let delete = Query::delete().from_table(TABLE).and_where(Expr::col("keep_until").lt(now)).to_owned();
    db.execute_raw(db.get_database_backend().build(&delete)).await?;
    Ok(())
}
