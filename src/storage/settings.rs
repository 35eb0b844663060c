//! The `app_settings` rows: one value a key, with when it was set (microseconds). Which
//! keys exist and what their values mean is `service::settings`'.

use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};

/// Sets `key` to `value` at `at`, creating its row or replacing it.
pub async fn put(conn: &impl ConnectionTrait, key: &str, value: &str, at: i64) -> Result<(), DbErr> {
    let upsert = Query::insert()
        .into_table("app_settings")
        .columns(["key", "value", "updated_at"])
        .values_panic([key.into(), value.into(), at.into()])
        .on_conflict(OnConflict::column("key").update_columns(["value", "updated_at"]).to_owned())
        .to_owned();
    conn.execute(&upsert).await?;
    Ok(())
}

/// The value of `key` and when it was set, if it was.
pub async fn get(conn: &impl ConnectionTrait, key: &str) -> Result<Option<(String, i64)>, DbErr> {
    let backend = conn.get_database_backend();
    let select = Query::select()
        .columns(["value", "updated_at"])
        .from("app_settings")
        .and_where(Expr::col("key").eq(key))
        .to_owned();
    let Some(row) = conn.query_one_raw(backend.build(&select)).await? else { return Ok(None) };
    Ok(Some((row.try_get("", "value")?, row.try_get("", "updated_at")?)))
}
