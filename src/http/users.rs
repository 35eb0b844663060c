//! `/api/v1/users` and `/api/v1/roles` (admin only).

use crate::http::openapi::ErrorResponse;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde::Deserialize;
use serde_json::json;

use crate::{
    audit::{self, AuditEntry, AuditStatus},
    auth::{AdminOnly, Principal, Role, password::check_policy},
    data::conflict_or,
    error::{AppError, FieldError},
    http::{
        auth::parse_roles,
        context::RequestContext,
        extract::{Json, Query},
        pagination::{listing, page},
    },
    identity::{
        entity::user,
        users::{self, NewUser, UserView},
    },
    state::AppState,
    time::now_micros,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u64>,
    offset: Option<u64>,
}

#[utoipa::path(operation_id = "users_list", get, path = "/api/v1/users", tag = "users", security(("bearer" = []), ("api_key" = [])), params(ListQuery), responses((status = 200, body = crate::http::schemas::UserList), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    principal.require_role(Role::Admin)?;
    let page = page(query.limit, query.offset)?;
    let db = &state.identity.db;
    let (found, total) = users::list(db, page.limit, page.offset).await?;
    let ids: Vec<String> = found.iter().map(|u| u.id.clone()).collect();
    let mut roles = users::roles_of_many(db, &ids).await?;
    let views: Vec<UserView> = found
        .into_iter()
        .map(|u| {
            let user_roles = roles.remove(&u.id).unwrap_or_default();
            UserView::new(u, &user_roles)
        })
        .collect();
    Ok(axum::Json(listing("users", views, total, page)).into_response())
}

/// Only these fields are accepted: anything else (`id`, `password_hash`, `login_count`,
/// ...) is refused, so no request can set what the server owns.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    #[schema(format = Email)]
    email: String,
    #[schema(min_length = 8)]
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    roles: Option<Vec<String>>,
    active: Option<bool>,
}

fn validate_username(username: &str, problems: &mut Vec<FieldError>) {
    let ok_chars = username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !(3..=64).contains(&username.chars().count()) || !ok_chars {
        problems.push(FieldError::new("username", "must be 3 to 64 letters, digits, '.', '_' or '-'"));
    }
}

fn validate_email(email: &str, problems: &mut Vec<FieldError>) {
    let valid = email.len() <= 255
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if !valid {
        problems.push(FieldError::new("email", "must be a valid email address"));
    }
}

fn validate_name(field: &str, value: &str, problems: &mut Vec<FieldError>) {
    if value.chars().count() > 100 {
        problems.push(FieldError::new(field, "must be at most 100 characters"));
    }
}

#[utoipa::path(operation_id = "users_create", post, path = "/api/v1/users", tag = "users", security(("bearer" = []), ("api_key" = [])), request_body = CreateUser, responses((status = 201, body = UserView, headers(("Location" = String, description = "The new user's URL"))), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 409, description = "Conflict", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    AdminOnly(principal): AdminOnly,
    ctx: RequestContext,
    Json(body): Json<CreateUser>,
) -> Result<Response, AppError> {
    let mut problems = Vec::new();
    validate_username(&body.username, &mut problems);
    validate_email(&body.email, &mut problems);
    validate_name("first_name", &body.first_name, &mut problems);
    validate_name("last_name", &body.last_name, &mut problems);
    if let Err(message) = check_policy(&body.password, &body.username) {
        problems.push(FieldError::new("password", message));
    }
    let roles = match &body.roles {
        Some(names) if names.is_empty() => {
            problems.push(FieldError::new("roles", "must name at least one role"));
            Vec::new()
        }
        Some(names) => parse_roles("roles", names)?,
        None => vec![Role::Viewer],
    };
    if !problems.is_empty() {
        return Err(AppError::Validation(problems));
    }
    let identity = &state.identity;
    let hash = identity.passwords.hash(&body.password).await.map_err(AppError::internal)?;
    let txn = crate::db::begin_write(&identity.db).await?;
    let new = NewUser {
        username: body.username,
        email: body.email,
        password_hash: hash,
        first_name: body.first_name,
        last_name: body.last_name,
        active: body.active.unwrap_or(true),
        roles: crate::auth::roles::normalize(roles),
    };
    let roles = new.roles.clone();
    let user = users::insert(&txn, new).await.map_err(|e| conflict_or(e, "A user with this username or email"))?;
    let meta = ctx.audit_meta(Some(&principal.user_id));
    audit::record(&txn, &meta, AuditEntry::new("CREATE_USER", "user", Some(&user.id), AuditStatus::Success)).await?;
    txn.commit().await?;
    ctx.audit.mark_handled();
    Ok(crate::http::created(format!("/api/v1/users/{}", user.id), UserView::new(user, &roles)))
}

async fn load(state: &AppState, id: &str) -> Result<(user::Model, Vec<Role>), AppError> {
    let db = &state.identity.db;
    let user = users::find_by_id(db, id).await?.ok_or_else(|| AppError::NotFound(format!("User not found: {id}")))?;
    let roles = users::roles_of(db, id).await?;
    Ok((user, roles))
}

#[utoipa::path(operation_id = "users_get", get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), responses((status = 200, body = UserView), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    principal.require_role(Role::Admin)?;
    let id = crate::ids::found(&id, "User")?;
    let (user, roles) = load(&state, &id).await?;
    Ok(axum::Json(UserView::new(user, &roles)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    roles: Option<Vec<String>>,
    active: Option<bool>,
    #[schema(min_length = 8)]
    password: Option<String>,
}

#[utoipa::path(operation_id = "users_update", put, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), request_body = UpdateUser, responses((status = 200, body = UserView), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse), (status = 409, description = "Conflict", body = ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    AdminOnly(principal): AdminOnly,
    ctx: RequestContext,
    Path(id): Path<String>,
    Json(body): Json<UpdateUser>,
) -> Result<Response, AppError> {
    let id = crate::ids::found(&id, "User")?;
    let (current, current_roles) = load(&state, &id).await?;
    let mut problems = Vec::new();
    if let Some(email) = &body.email {
        validate_email(email, &mut problems);
    }
    for (field, value) in [("first_name", &body.first_name), ("last_name", &body.last_name)] {
        if let Some(value) = value {
            validate_name(field, value, &mut problems);
        }
    }
    if let Some(password) = &body.password
        && let Err(message) = check_policy(password, &current.username)
    {
        problems.push(FieldError::new("password", message));
    }
    let new_roles = match &body.roles {
        Some(names) if names.is_empty() => {
            problems.push(FieldError::new("roles", "must name at least one role"));
            None
        }
        Some(names) => Some(crate::auth::roles::normalize(parse_roles("roles", names)?)),
        None => None,
    };
    if !problems.is_empty() {
        return Err(AppError::Validation(problems));
    }
    let identity = &state.identity;
    let hash = match &body.password {
        Some(password) => Some(identity.passwords.hash(password).await.map_err(AppError::internal)?),
        None => None,
    };
    let was_admin = current.active && current_roles.contains(&Role::Admin);
    let stays_admin =
        body.active.unwrap_or(current.active) && new_roles.as_ref().unwrap_or(&current_roles).contains(&Role::Admin);
    let txn = crate::db::begin_write(&identity.db).await?;
    if was_admin && !stays_admin && users::count_active_admins(&txn).await? <= 1 {
        return Err(AppError::Conflict("The last active admin cannot be demoted or deactivated".into()));
    }
    let revoke_tokens = hash.is_some() || body.active == Some(false);
    let mut change =
        user::ActiveModel { id: Set(current.id.clone()), updated_at: Set(now_micros()), ..Default::default() };
    if let Some(email) = body.email {
        change.email = Set(email.to_lowercase());
    }
    if let Some(first_name) = body.first_name {
        change.first_name = Set(first_name);
    }
    if let Some(last_name) = body.last_name {
        change.last_name = Set(last_name);
    }
    if let Some(active) = body.active {
        change.active = Set(active);
    }
    if let Some(hash) = hash {
        change.password_hash = Set(hash);
    }
    if revoke_tokens {
        change.token_version = Set(current.token_version.saturating_add(1));
    }
    let updated = change.update(&txn).await.map_err(|e| conflict_or(e, "A user with this email"))?;
    if let Some(roles) = &new_roles {
        users::set_roles(&txn, &id, roles).await?;
    }
    let meta = ctx.audit_meta(Some(&principal.user_id));
    audit::record(&txn, &meta, AuditEntry::new("UPDATE_USER", "user", Some(&id), AuditStatus::Success)).await?;
    txn.commit().await?;
    ctx.audit.mark_handled();
    identity.invalidate_user(&id);
    Ok(axum::Json(UserView::new(updated, new_roles.as_ref().unwrap_or(&current_roles))).into_response())
}

#[utoipa::path(operation_id = "users_delete", delete, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), responses((status = 204), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse), (status = 409, description = "Conflict", body = ErrorResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    principal.require_role(Role::Admin)?;
    let id = crate::ids::found(&id, "User")?;
    let (current, roles) = load(&state, &id).await?;
    let identity = &state.identity;
    let txn = crate::db::begin_write(&identity.db).await?;
    if current.active && roles.contains(&Role::Admin) && users::count_active_admins(&txn).await? <= 1 {
        return Err(AppError::Conflict("The last active admin cannot be deleted".into()));
    }
    user::Entity::delete_by_id(id.clone()).exec(&txn).await?;
    let meta = ctx.audit_meta(Some(&principal.user_id));
    audit::record(&txn, &meta, AuditEntry::new("DELETE_USER", "user", Some(&id), AuditStatus::Success)).await?;
    txn.commit().await?;
    ctx.audit.mark_handled();
    identity.invalidate_user(&id);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(operation_id = "users_roles", get, path = "/api/v1/roles", tag = "users", security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = crate::http::schemas::RoleList), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn roles(principal: Principal) -> Result<Response, AppError> {
    principal.require_role(Role::Admin)?;
    let roles: Vec<_> = Role::ALL
        .iter()
        .map(|r| {
            json!({
                "name": r.as_str(),
                "description": r.description(),
                "permissions": r.permissions().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let total = roles.len() as u64;
    let page = crate::http::pagination::Page { limit: total, offset: 0 };
    Ok(axum::Json(listing("roles", roles, total, page)).into_response())
}
