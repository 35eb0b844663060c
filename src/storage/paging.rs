//! One page of a listing, with the count of all its rows.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QuerySelect, Select};

/// The rows of `query` put in order by `order`, `offset` rows on and at most `limit` of
/// them, and how many rows `query` has in all (counted without the order).
pub async fn page<E: EntityTrait>(
    conn: &impl ConnectionTrait,
    query: Select<E>,
    order: impl FnOnce(Select<E>) -> Select<E>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<E::Model>, u64), DbErr>
where
    E::Model: Sync,
{
    let total = query.clone().count(conn).await?;
    let rows = order(query).limit(limit).offset(offset).all(conn).await?;
    Ok((rows, total))
}
