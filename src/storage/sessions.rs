//! The session repository: refresh tokens (one family per session, `family_id` = `sid`)
//! and revoked token and session ids. When a session ends and what a revocation means
//! are the rules of `service::identity::sessions`.

use std::collections::HashSet;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, OnConflict},
};

use crate::storage::entity::{refresh_token, revoked_token};

/// Stores a newly signed refresh token of session `family_id`, not revoked.
pub async fn insert_refresh_token(
    conn: &impl ConnectionTrait,
    jti: &str,
    user_id: &str,
    family_id: &str,
    expires_at: i64,
) -> Result<(), DbErr> {
    refresh_token::ActiveModel {
        jti: Set(jti.to_owned()),
        user_id: Set(user_id.to_owned()),
        family_id: Set(family_id.to_owned()),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Marks the refresh token `jti` revoked at `now` if it was not yet; `true` if this call
/// did it. Only one presentation of a refresh token may rotate it.
pub async fn rotate_refresh_token(conn: &impl ConnectionTrait, jti: &str, now: i64) -> Result<bool, DbErr> {
    let rotated = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::Jti.eq(jti))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(rotated.rows_affected == 1)
}

/// Marks every refresh token of session `family_id` not yet revoked as revoked at `now`.
pub async fn revoke_refresh_family(conn: &impl ConnectionTrait, family_id: &str, now: i64) -> Result<(), DbErr> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Records the token or session id `jti` of `user_id` as revoked until `expires_at`.
pub async fn revoke(
    conn: &impl ConnectionTrait,
    jti: &str,
    user_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), DbErr> {
    // Another replica may revoke the same token at the same moment (a client logging out
    // twice, a refresh token replayed): the first revocation stands, the rest do nothing.
    let row = revoked_token::ActiveModel {
        jti: Set(jti.to_owned()),
        user_id: Set(user_id.to_owned()),
        expires_at: Set(expires_at),
        revoked_at: Set(now),
    };
    let once = OnConflict::column(revoked_token::Column::Jti).do_nothing_on([revoked_token::Column::Jti]).to_owned();
    revoked_token::Entity::insert(row).on_conflict(once).exec_without_returning(conn).await?;
    Ok(())
}

/// Whether the token or session id `jti` is revoked.
pub async fn is_revoked(conn: &impl ConnectionTrait, jti: &str) -> Result<bool, DbErr> {
    Ok(revoked_token::Entity::find_by_id(jti.to_owned()).one(conn).await?.is_some())
}

/// The revoked token and session ids of `user_id` that have not expired at `now`.
pub async fn revoked_of(conn: &impl ConnectionTrait, user_id: &str, now: i64) -> Result<HashSet<String>, DbErr> {
    Ok(revoked_token::Entity::find()
        .filter(revoked_token::Column::UserId.eq(user_id))
        .filter(revoked_token::Column::ExpiresAt.gt(now))
        .all(conn)
        .await?
        .into_iter()
        .map(|r| r.jti)
        .collect())
}

/// Deletes revocations and refresh tokens expired at `now`.
pub async fn prune(conn: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
    revoked_token::Entity::delete_many().filter(revoked_token::Column::ExpiresAt.lte(now)).exec(conn).await?;
    refresh_token::Entity::delete_many().filter(refresh_token::Column::ExpiresAt.lte(now)).exec(conn).await?;
    Ok(())
}
