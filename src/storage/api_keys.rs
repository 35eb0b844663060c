//! The API key repository: keys stored as a digest, with their owner, optional roles
//! (comma-separated names) and lifetime. Who may create, see or delete a key is decided
//! in `service::identity::api_keys`.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Select, Set,
    sea_query::Expr,
};

use crate::{auth::keys::NewKey, storage::entity::api_key};

/// Stores `key` (its prefix and digest, never the plaintext) as a new key of `user_id`
/// under a fresh id, validated by the caller; `roles` are role names, comma-separated
/// (`None`: the owner's roles). Returns it as stored.
pub async fn insert(
    conn: &impl ConnectionTrait,
    user_id: &str,
    name: &str,
    key: &NewKey,
    roles: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
) -> Result<api_key::Model, DbErr> {
    api_key::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        user_id: Set(user_id.to_owned()),
        name: Set(name.to_owned()),
        prefix: Set(key.prefix.clone()),
        key_hash: Set(key.digest.clone()),
        roles: Set(roles),
        expires_at: Set(expires_at),
        last_used_at: Set(None),
        created_at: Set(created_at),
    }
    .insert(conn)
    .await
}

pub async fn find_by_id(conn: &impl ConnectionTrait, id: &str) -> Result<Option<api_key::Model>, DbErr> {
    api_key::Entity::find_by_id(id.to_owned()).one(conn).await
}

/// The key whose digest is `key_hash`.
pub async fn find_by_hash(conn: &impl ConnectionTrait, key_hash: &str) -> Result<Option<api_key::Model>, DbErr> {
    api_key::Entity::find().filter(api_key::Column::KeyHash.eq(key_hash)).one(conn).await
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    api_key::Entity::delete_by_id(id.to_owned()).exec(conn).await.map(|_| ())
}

/// Sets the key's `last_used_at`.
pub async fn touch(conn: &impl ConnectionTrait, id: &str, at: i64) -> Result<(), DbErr> {
    api_key::Entity::update_many()
        .col_expr(api_key::Column::LastUsedAt, Expr::value(at))
        .filter(api_key::Column::Id.eq(id))
        .exec(conn)
        .await
        .map(|_| ())
}

/// A page of keys, newest first, of `owner` (everyone's: `None`), and how many there are.
pub async fn list(
    conn: &impl ConnectionTrait,
    owner: Option<&str>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<api_key::Model>, u64), DbErr> {
    let mut query = api_key::Entity::find();
    if let Some(owner) = owner {
        query = query.filter(api_key::Column::UserId.eq(owner));
    }
    let newest_first = |query: Select<api_key::Entity>| {
        query.order_by_desc(api_key::Column::CreatedAt).order_by_asc(api_key::Column::Id)
    };
    super::paging::page(conn, query, newest_first, limit, offset).await
}
