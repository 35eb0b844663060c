//! Usage figures the license keepalive reports that no repository of this tree answers
//! yet (users are counted by `storage::users::count`).

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, PaginatorTrait};

use crate::storage::entity::source;

/// How many sources there are.
pub async fn sources(conn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    source::Entity::find().count(conn).await
}
