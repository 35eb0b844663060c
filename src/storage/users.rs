//! The user repository: queries over users and their roles. User administration's
//! rules are in `service::identity::admin`.

use std::collections::HashMap;

use crate::storage::entity::{user, user_role};
use crate::{
    auth::roles::{self, Role},
    time::now_micros,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Select, Set,
    sea_query::{Expr, ExprTrait, LockType, Query},
};

pub async fn find_by_id(conn: &impl ConnectionTrait, id: &str) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(id.to_owned()).one(conn).await
}

/// Finds a user by username or by email (case-insensitive for email).
pub async fn find_by_login(conn: &impl ConnectionTrait, login: &str) -> Result<Option<user::Model>, DbErr> {
    if let Some(found) = user::Entity::find().filter(user::Column::Username.eq(login)).one(conn).await? {
        return Ok(Some(found));
    }
    user::Entity::find().filter(user::Column::Email.eq(login.to_lowercase())).one(conn).await
}

pub async fn roles_of(conn: &impl ConnectionTrait, user_id: &str) -> Result<Vec<Role>, DbErr> {
    let rows = user_role::Entity::find().filter(user_role::Column::UserId.eq(user_id)).all(conn).await?;
    Ok(roles::normalize(rows.iter().filter_map(|r| Role::parse(&r.role)).collect()))
}

pub async fn roles_of_many(conn: &impl ConnectionTrait, ids: &[String]) -> Result<HashMap<String, Vec<Role>>, DbErr> {
    let rows = user_role::Entity::find().filter(user_role::Column::UserId.is_in(ids.iter().cloned())).all(conn).await?;
    let mut map: HashMap<String, Vec<Role>> = HashMap::new();
    for row in rows {
        if let Some(role) = Role::parse(&row.role) {
            map.entry(row.user_id).or_default().push(role);
        }
    }
    Ok(map.into_iter().map(|(k, v)| (k, roles::normalize(v))).collect())
}

pub async fn set_roles(conn: &impl ConnectionTrait, user_id: &str, roles: &[Role]) -> Result<(), DbErr> {
    user_role::Entity::delete_many().filter(user_role::Column::UserId.eq(user_id)).exec(conn).await?;
    if roles.is_empty() {
        return Ok(());
    }
    let rows = roles
        .iter()
        .map(|role| user_role::ActiveModel { user_id: Set(user_id.to_owned()), role: Set(role.as_str().to_owned()) });
    user_role::Entity::insert_many(rows).exec_without_returning(conn).await?;
    Ok(())
}

/// What a new user is made of; validated by the caller.
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub active: bool,
    pub roles: Vec<Role>,
}

pub async fn insert(conn: &impl ConnectionTrait, new: NewUser) -> Result<user::Model, DbErr> {
    let now = now_micros();
    let id = uuid::Uuid::new_v4().to_string();
    let model = user::ActiveModel {
        id: Set(id.clone()),
        username: Set(new.username),
        email: Set(new.email.to_lowercase()),
        password_hash: Set(new.password_hash),
        first_name: Set(new.first_name),
        last_name: Set(new.last_name),
        active: Set(new.active),
        token_version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        last_login_at: Set(None),
        current_login_at: Set(None),
        last_login_ip: Set(None),
        current_login_ip: Set(None),
        login_count: Set(0),
    };
    user::Entity::insert(model).exec_without_returning(conn).await?;
    set_roles(conn, &id, &new.roles).await?;
    find_by_id(conn, &id).await?.ok_or_else(|| DbErr::RecordNotFound(format!("user {id} vanished after insert")))
}

/// The columns of a user to change; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct UserChange {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
    pub token_version: Option<i32>,
}

/// Writes `change` to the user `id` (and its `updated_at`); returns the user as stored.
pub async fn update(conn: &impl ConnectionTrait, id: &str, change: UserChange) -> Result<user::Model, DbErr> {
    use sea_orm::{ActiveModelTrait, ActiveValue};
    fn set<T: Into<sea_orm::Value>>(value: Option<T>) -> ActiveValue<T> {
        value.map_or(ActiveValue::NotSet, Set)
    }
    let model = user::ActiveModel {
        id: Set(id.to_owned()),
        updated_at: Set(now_micros()),
        email: set(change.email),
        first_name: set(change.first_name),
        last_name: set(change.last_name),
        active: set(change.active),
        password_hash: set(change.password_hash),
        token_version: set(change.token_version),
        ..Default::default()
    };
    model.update(conn).await
}

/// Records a successful login: the previous login moves to `last_*`, this one becomes
/// `current_*`, the count goes up; `password_hash`, when given, replaces the stored hash
/// (a rehash with today's parameters); `updated_at` is left as it is. Returns the user as
/// stored.
pub async fn record_login(
    conn: &impl ConnectionTrait,
    user: &user::Model,
    at: i64,
    client_ip: Option<String>,
    password_hash: Option<String>,
) -> Result<user::Model, DbErr> {
    use sea_orm::ActiveModelTrait;
    let mut update = user::ActiveModel {
        id: Set(user.id.clone()),
        last_login_at: Set(user.current_login_at),
        last_login_ip: Set(user.current_login_ip.clone()),
        current_login_at: Set(Some(at)),
        current_login_ip: Set(client_ip),
        login_count: Set(user.login_count.saturating_add(1)),
        ..Default::default()
    };
    if let Some(hash) = password_hash {
        update.password_hash = Set(hash);
    }
    update.update(conn).await
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    user::Entity::delete_by_id(id.to_owned()).exec(conn).await.map(|_| ())
}

pub async fn count(conn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    user::Entity::find().count(conn).await
}

/// Active users holding `admin`, counted under a lock that every change which may leave
/// the service without an admin takes first (the `admin` row of `roles`, for the rest of
/// the transaction): two admins deactivating each other at once on two replicas both
/// passed an unlocked count, and left none.
pub async fn count_active_admins(conn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let lock = Query::select()
        .column("name")
        .from("roles")
        .and_where(Expr::col("name").eq(Role::Admin.as_str()))
        .lock(LockType::Update)
        .to_owned();
    conn.query_one_raw(conn.get_database_backend().build(&lock)).await?;
    let admin_ids: Vec<String> = user_role::Entity::find()
        .filter(user_role::Column::Role.eq(Role::Admin.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(|r| r.user_id)
        .collect();
    if admin_ids.is_empty() {
        return Ok(0);
    }
    user::Entity::find()
        .filter(user::Column::Id.is_in(admin_ids))
        .filter(user::Column::Active.eq(true))
        .count(conn)
        .await
}

pub async fn list(conn: &impl ConnectionTrait, limit: u64, offset: u64) -> Result<(Vec<user::Model>, u64), DbErr> {
    let oldest_first =
        |query: Select<user::Entity>| query.order_by_asc(user::Column::CreatedAt).order_by_asc(user::Column::Id);
    super::paging::page(conn, user::Entity::find(), oldest_first, limit, offset).await
}
