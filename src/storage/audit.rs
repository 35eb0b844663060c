//! The `audit_log` rows: inserting one unsealed, the sealer's chain lock and writes, and
//! the reads of verification and listing. What a row says, how it is hashed and what
//! verification concludes are `service::audit`'s.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select, Set, Statement, sea_query::Expr,
};

use crate::storage::entity::audit_log;

const PG_SEAL_LOCK_KEY: i64 = 0x6b6b_6175_6474;
const MYSQL_SEAL_LOCK: &str = "killkrill_audit_seal";

/// The columns of a row that say who asked, from where, under which correlation id.
pub struct Origin {
    pub user_id: Option<String>,
    pub client_ip: Option<String>,
    pub correlation_id: String,
}

/// Inserts one row written at `created_at`, with no chain position; values are already
/// cut to their columns' lengths. Pass the transaction of the change it records, where
/// there is one.
pub async fn insert(
    conn: &impl ConnectionTrait,
    origin: Origin,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    status: &str,
    created_at: i64,
) -> Result<(), DbErr> {
    let row = audit_log::ActiveModel {
        seq: Set(None),
        user_id: Set(origin.user_id),
        action: Set(action),
        resource_type: Set(resource_type),
        resource_id: Set(resource_id),
        status: Set(status.to_owned()),
        client_ip: Set(origin.client_ip),
        correlation_id: Set(origin.correlation_id),
        created_at: Set(created_at),
        prev_hash: Set(None),
        hash: Set(None),
        ..Default::default()
    };
    audit_log::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

/// Takes the sealer's lock for the rest of `txn`, so that one sealer at a time, across
/// replicas, extends the chain: a transaction-scoped advisory lock on PostgreSQL, a named
/// lock on MariaDB/MySQL (released by [`unlock_chain`] before commit); on SQLite the
/// write transaction (`begin_write`) already excludes every other writer.
pub async fn lock_chain(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    match backend {
        DbBackend::Postgres => {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({PG_SEAL_LOCK_KEY})")).await?;
        }
        DbBackend::MySql => {
            txn.query_one_raw(Statement::from_string(backend, format!("SELECT GET_LOCK('{MYSQL_SEAL_LOCK}', 30)")))
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Releases what [`lock_chain`] took that outlives a transaction (MariaDB/MySQL's named
/// lock); call it before committing.
pub async fn unlock_chain(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::MySql {
        txn.execute_unprepared(&format!("SELECT RELEASE_LOCK('{MYSQL_SEAL_LOCK}')")).await?;
    }
    Ok(())
}

/// The sealed row of the highest `seq`: the chain's head.
pub async fn chain_head(conn: &impl ConnectionTrait) -> Result<Option<audit_log::Model>, DbErr> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Seq.is_not_null())
        .order_by_desc(audit_log::Column::Seq)
        .one(conn)
        .await
}

/// Up to `limit` unsealed rows, in id order.
pub async fn unsealed(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<audit_log::Model>, DbErr> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Seq.is_null())
        .order_by_asc(audit_log::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// Gives row `id` its chain position, the previous row's hash and its own.
pub async fn seal_row(
    conn: &impl ConnectionTrait,
    id: i64,
    seq: i64,
    prev_hash: &str,
    hash: &str,
) -> Result<(), DbErr> {
    audit_log::Entity::update_many()
        .col_expr(audit_log::Column::Seq, Expr::value(seq))
        .col_expr(audit_log::Column::PrevHash, Expr::value(prev_hash))
        .col_expr(audit_log::Column::Hash, Expr::value(hash))
        .filter(audit_log::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Up to `limit` sealed rows from `seq` on, in chain order.
pub async fn sealed_from(conn: &impl ConnectionTrait, seq: i64, limit: u64) -> Result<Vec<audit_log::Model>, DbErr> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Seq.gte(seq))
        .order_by_asc(audit_log::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
}

/// How many rows are not sealed yet.
pub async fn count_unsealed(conn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    audit_log::Entity::find().filter(audit_log::Column::Seq.is_null()).count(conn).await
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub user_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A page of rows matching `filter`, newest first, and how many match.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &AuditFilter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<audit_log::Model>, u64), DbErr> {
    let mut query = audit_log::Entity::find();
    if let Some(user_id) = &filter.user_id {
        query = query.filter(audit_log::Column::UserId.eq(user_id.as_str()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::Column::Action.eq(action.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_log::Column::CreatedAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_log::Column::CreatedAt.lte(until));
    }
    let newest_first = |query: Select<audit_log::Entity>| query.order_by_desc(audit_log::Column::Id);
    super::paging::page(conn, query, newest_first, limit, offset).await
}
