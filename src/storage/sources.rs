//! The `sources` table.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, sea_query::LockType,
};

use super::entity::source;

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<source::Model>, DbErr> {
    source::Entity::find_by_id(id.to_owned()).one(db).await
}

/// The source named `name` (names are unique).
pub async fn find_by_name(db: &impl ConnectionTrait, name: &str) -> Result<Option<source::Model>, DbErr> {
    source::Entity::find().filter(source::Column::Name.eq(name)).one(db).await
}

/// The names of the sources `ids` (those that exist), by id.
pub async fn names(
    db: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, String>, DbErr> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows: Vec<(String, String)> = source::Entity::find()
        .select_only()
        .columns([source::Column::Id, source::Column::Name])
        .filter(source::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

pub async fn insert(db: &impl ConnectionTrait, row: source::Model) -> Result<source::Model, DbErr> {
    source::ActiveModel {
        id: Set(row.id),
        name: Set(row.name),
        source_type: Set(row.source_type),
        description: Set(row.description),
        enabled: Set(row.enabled),
        config: Set(row.config),
        allowed_cidrs: Set(row.allowed_cidrs),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
        created_by: Set(row.created_by),
        retention_days: Set(row.retention_days),
    }
    .insert(db)
    .await
}

/// The columns an update changes (`None`: left as it is), the stored forms of the values.
#[derive(Debug, Default)]
pub struct SourceChange {
    pub name: Option<String>,
    pub source_type: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// A JSON object, as text.
    pub config: Option<String>,
    /// A JSON array of CIDR strings, as text.
    pub allowed_cidrs: Option<String>,
    /// `Some(None)`: back to the global settings.
    pub retention_days: Option<Option<i32>>,
    pub updated_at: i64,
}

/// Writes `change` over `current`, the row as read in the same transaction.
pub async fn update(
    db: &impl ConnectionTrait,
    current: source::Model,
    change: SourceChange,
) -> Result<source::Model, DbErr> {
    let mut row: source::ActiveModel = current.into();
    if let Some(name) = change.name {
        row.name = Set(name);
    }
    if let Some(t) = change.source_type {
        row.source_type = Set(t);
    }
    if let Some(d) = change.description {
        row.description = Set(d);
    }
    if let Some(e) = change.enabled {
        row.enabled = Set(e);
    }
    if let Some(c) = change.config {
        row.config = Set(c);
    }
    if let Some(cidrs) = change.allowed_cidrs {
        row.allowed_cidrs = Set(cidrs);
    }
    if let Some(days) = change.retention_days {
        row.retention_days = Set(days);
    }
    row.updated_at = Set(change.updated_at);
    row.update(db).await
}

/// A page of the sources of `source_type` (any when `None`) that are `enabled` (either
/// when `None`), by name, and how many there are in all.
pub async fn list(
    db: &impl ConnectionTrait,
    source_type: Option<&str>,
    enabled: Option<bool>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<source::Model>, u64), DbErr> {
    let mut query = source::Entity::find();
    if let Some(t) = source_type {
        query = query.filter(source::Column::SourceType.eq(t));
    }
    if let Some(enabled) = enabled {
        query = query.filter(source::Column::Enabled.eq(enabled));
    }
    let total = query.clone().count(db).await?;
    let rows = query.order_by_asc(source::Column::Name).limit(limit).offset(offset).all(db).await?;
    Ok((rows, total))
}

/// Takes the source's row shared until the end of `txn`, before an ingest transaction
/// touches any row a deletion of the source cascades to. Deleting the source takes its row
/// exclusively first, so the two are ordered: the deletion waits for the batch, or the
/// batch for the deletion (and then finds the source gone), and neither ever holds a row
/// the other wants. PostgreSQL takes `FOR KEY SHARE`, which a change of the source's other
/// columns (`PUT`) does not wait for; MariaDB `LOCK IN SHARE MODE`; SQLite's writer holds
/// the whole file anyway. A missing source locks nothing (the batch then fails on its
/// foreign key).
pub async fn lock_shared(txn: &DatabaseTransaction, id: &str) -> Result<(), DbErr> {
    let lock = match txn.get_database_backend() {
        DbBackend::Postgres => LockType::KeyShare,
        DbBackend::MySql => LockType::Share,
        _ => return Ok(()),
    };
    source::Entity::find_by_id(id.to_owned())
        .select_only()
        .column(source::Column::Id)
        .lock(lock)
        .into_tuple::<String>()
        .one(txn)
        .await?;
    Ok(())
}

/// The statement of [`lock_shared`] on PostgreSQL, for transactions run on the driver's
/// pool directly.
pub const PG_LOCK_SHARED: &str = "SELECT id FROM sources WHERE id = $1 FOR KEY SHARE";

/// Deletes the source; its ingest keys, logs and metrics go with it (ON DELETE CASCADE).
pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    source::Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(())
}

/// How many sources there are (for the license keepalive's usage figures).
pub async fn count(conn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    source::Entity::find().count(conn).await
}

/// Every source's id and `retention_days`, for the retention sweep.
pub async fn retention_settings(conn: &impl ConnectionTrait) -> Result<Vec<(String, Option<i32>)>, DbErr> {
    source::Entity::find()
        .select_only()
        .column(source::Column::Id)
        .column(source::Column::RetentionDays)
        .order_by_asc(source::Column::Id)
        .into_tuple()
        .all(conn)
        .await
}
