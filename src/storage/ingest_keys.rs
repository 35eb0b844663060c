//! The `ingest_keys` table.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};

use super::entity::ingest_key;

pub async fn insert(db: &impl ConnectionTrait, row: ingest_key::Model) -> Result<ingest_key::Model, DbErr> {
    ingest_key::ActiveModel {
        id: Set(row.id),
        source_id: Set(row.source_id),
        name: Set(row.name),
        prefix: Set(row.prefix),
        key_hash: Set(row.key_hash),
        created_at: Set(row.created_at),
        last_used_at: Set(row.last_used_at),
        created_by: Set(row.created_by),
    }
    .insert(db)
    .await
}

/// A page of a source's keys, newest first, and how many it has in all.
pub async fn list(
    db: &impl ConnectionTrait,
    source_id: &str,
    limit: u64,
    offset: u64,
) -> Result<(Vec<ingest_key::Model>, u64), DbErr> {
    let query = ingest_key::Entity::find().filter(ingest_key::Column::SourceId.eq(source_id));
    let total = query.clone().count(db).await?;
    let rows = query.order_by_desc(ingest_key::Column::CreatedAt).limit(limit).offset(offset).all(db).await?;
    Ok((rows, total))
}

/// Deletes the key if it belongs to the source; answers whether there was one.
pub async fn delete(db: &impl ConnectionTrait, source_id: &str, key_id: &str) -> Result<bool, DbErr> {
    let deleted = ingest_key::Entity::delete_many()
        .filter(ingest_key::Column::Id.eq(key_id))
        .filter(ingest_key::Column::SourceId.eq(source_id))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// The key whose digest is `digest`.
pub async fn find_by_digest(db: &impl ConnectionTrait, digest: &str) -> Result<Option<ingest_key::Model>, DbErr> {
    ingest_key::Entity::find().filter(ingest_key::Column::KeyHash.eq(digest)).one(db).await
}

/// Records that the key was used at `at`.
pub async fn touch(db: &impl ConnectionTrait, key_id: &str, at: i64) -> Result<(), DbErr> {
    ingest_key::Entity::update_many()
        .col_expr(ingest_key::Column::LastUsedAt, Expr::value(at))
        .filter(ingest_key::Column::Id.eq(key_id))
        .exec(db)
        .await?;
    Ok(())
}
