//! Login throttling shared by every replica: each account's and each client address's
//! failures are one row of `login_throttle`, so attempts spread over N replicas meet the
//! same limits as attempts at one. Rows are keyed by a digest (no login name or address is
//! stored) and deleted once they no longer matter.

use std::net::IpAddr;

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};

use crate::{
    auth::{keys, throttle::Limiter},
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

/// Before a password is checked: `Blocked` while the client address or the account is
/// blocked; otherwise the attempt is counted as a failure at once, against the client
/// address first and then the account, so that a burst of concurrent attempts (on any
/// replica, against one account or spread over many) gets no more password checks than
/// the limits: the password check (argon2) is the expensive part an attacker wants to
/// trigger. A success takes the counts back with [`succeeded`].
pub async fn attempt(
    db: &DatabaseConnection,
    account: &str,
    client: Option<IpAddr>,
    now: i64,
) -> Result<Counted, DbErr> {
    let mut started = None;
    if let Some(client) = client {
        match count(db, &client_digest(client), CLIENTS, now).await? {
            blocked @ Counted::Blocked(_) => return Ok(blocked),
            Counted::Counted(client_started) => started = client_started,
        }
    }
    Ok(match count(db, &account_digest(account), ACCOUNTS, now).await? {
        blocked @ Counted::Blocked(_) => blocked,
        Counted::Counted(account_started) => Counted::Counted(started.max(account_started)),
    })
}

/// After a successful login: forgets the account's failures, and takes back the one
/// failure [`attempt`] counted against the client address (only that one: a success must
/// not wipe the failures of other attempts from the same address).
pub async fn succeeded(
    txn: &DatabaseTransaction,
    account: &str,
    client: Option<IpAddr>,
    now: i64,
) -> Result<(), DbErr> {
    rows::delete(txn, &account_digest(account)).await?;
    let Some(client) = client else { return Ok(()) };
    let digest = client_digest(client);
    let mut record = rows::lock(txn, &digest, now).await?;
    if CLIENTS.take_back(&mut record, now) {
        rows::store(txn, &digest, &record, CLIENTS.keep_until(&record)).await?;
    }
    Ok(())
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

/// Deletes rows that no longer count, block or lengthen a block.
pub async fn prune(db: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
    rows::prune(db, now).await
}
