//! Login throttling shared by every replica: each account's and each client address's
//! failures are one row of `login_throttle`, so attempts spread over N replicas meet the
//! same limits as attempts at one. Rows are keyed by a digest (no login name or address is
//! stored) and deleted once they no longer matter.

use std::net::IpAddr;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use crate::{
    auth::{
        keys,
        throttle::{Limiter, Record},
    },
    storage::throttle as rows,
};
/// Failed logins per account: 10 in 15 minutes.
const ACCOUNTS: Limiter = Limiter::new(10, 15 * 60);
/// Failed logins per client address: 60 in a minute.
const CLIENTS: Limiter = Limiter::new(60, 60);

/// The row of an account: a user id, or the name tried when no user has it.
fn account_digest(account: &str) -> String {
    keys::digest(&format!("account:{account}"))
}

/// The row of a client address.
fn client_digest(client: IpAddr) -> String {
    keys::digest(&format!("client:{client}"))
}

/// What counting one login attempt against a row found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// The row is blocked for this many more seconds; nothing was counted.
    Blocked(u64),
    /// The attempt was counted; `Some(seconds)` if it started a block.
    Counted(Option<u64>),
}

/// Before a password is checked: `Blocked` while the account or the client is blocked;
/// otherwise the attempt is counted against the account as a failure at once, so that a
/// burst of concurrent attempts (on any replica) gets no more guesses than the limit. A
/// success takes the count back with `reset`; a failure adds the client's with `failed`.
pub async fn attempt(
    db: &DatabaseConnection,
    account: &str,
    client: Option<IpAddr>,
    now: i64,
) -> Result<Counted, DbErr> {
    if let Some(client) = client
        && let Some(blocked_until) = rows::blocked_until(db, &client_digest(client)).await?
    {
        let record = Record { blocked_until, ..Record::default() };
        if let Some(seconds) = Limiter::blocked_for(&record, now) {
            return Ok(Counted::Blocked(seconds));
        }
    }
    count(db, &account_digest(account), ACCOUNTS, now).await
}

/// After a failed password check: counts it against the client address (the account's
/// count was taken by `attempt`); `Some(seconds)` if the client is now blocked.
pub async fn failed(db: &DatabaseConnection, client: Option<IpAddr>, now: i64) -> Result<Option<u64>, DbErr> {
    let Some(client) = client else { return Ok(None) };
    Ok(match count(db, &client_digest(client), CLIENTS, now).await? {
        Counted::Blocked(seconds) => Some(seconds),
        Counted::Counted(started) => started,
    })
}

/// One row's read-count-write, under the row's lock (the write lock on SQLite), so that
/// concurrent attempts on several replicas are all counted. A blocked row counts nothing.
async fn count(db: &DatabaseConnection, digest: &str, limiter: Limiter, now: i64) -> Result<Counted, DbErr> {
    let txn = crate::storage::begin_write(db).await?;
    let mut record = rows::lock(&txn, digest, now).await?;
    if let Some(seconds) = Limiter::blocked_for(&record, now) {
        txn.commit().await?;
        return Ok(Counted::Blocked(seconds));
    }
    let started = limiter.fail(&mut record, now);
    rows::store(&txn, digest, &record, limiter.keep_until(&record)).await?;
    txn.commit().await?;
    Ok(Counted::Counted(started))
}

/// Forgets the account's failures (after a successful login).
pub async fn reset(db: &impl ConnectionTrait, account: &str) -> Result<(), DbErr> {
    rows::delete(db, &account_digest(account)).await
}

/// Deletes rows that no longer count, block or lengthen a block.
pub async fn prune(db: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
    rows::prune(db, now).await
}
