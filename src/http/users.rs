//! `/api/v1/users` and `/api/v1/roles` (admin only).

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::{Principal, Role, roles},
    http::{
        context::RequestContext,
        error::HttpError,
        extract::{Json, Query},
        openapi::ErrorResponse,
        pagination::{listing, page},
        principal::AdminOnly,
    },
    service::identity::{
        UserView,
        admin::{UserInput, UserUpdate},
    },
    state::AppState,
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
) -> Result<Response, HttpError> {
    principal.require_role(Role::Admin)?;
    let page = page(query.limit, query.offset)?;
    let (views, total) = state.identity.list_users(page.limit, page.offset).await?;
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

#[utoipa::path(operation_id = "users_create", post, path = "/api/v1/users", tag = "users", security(("bearer" = []), ("api_key" = [])), request_body = CreateUser, responses((status = 201, body = UserView, headers(("Location" = String, description = "The new user's URL"))), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 409, description = "Conflict", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    AdminOnly(principal): AdminOnly,
    ctx: RequestContext,
    Json(body): Json<CreateUser>,
) -> Result<Response, HttpError> {
    let input = UserInput {
        username: body.username,
        email: body.email,
        password: body.password,
        first_name: body.first_name,
        last_name: body.last_name,
        roles: body.roles.as_deref().map(|names| roles::parse_list("roles", names)).transpose()?,
        active: body.active,
    };
    let user = state.identity.create_user(input, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(crate::http::created(format!("/api/v1/users/{}", user.id), user))
}

#[utoipa::path(operation_id = "users_get", get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), responses((status = 200, body = UserView), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Admin)?;
    let id = crate::ids::found(&id, "User")?;
    Ok(axum::Json(state.identity.user(&id).await?).into_response())
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
) -> Result<Response, HttpError> {
    let id = crate::ids::found(&id, "User")?;
    let update = UserUpdate {
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        roles: body.roles.as_deref().map(|names| roles::parse_list("roles", names)).transpose()?,
        active: body.active,
        password: body.password,
    };
    let user = state.identity.update_user(&id, update, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(axum::Json(user).into_response())
}

#[utoipa::path(operation_id = "users_delete", delete, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = []), ("api_key" = [])), params(("id" = String, Path)), responses((status = 204), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse), (status = 404, description = "Not found", body = ErrorResponse), (status = 409, description = "Conflict", body = ErrorResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> Result<StatusCode, HttpError> {
    principal.require_role(Role::Admin)?;
    let id = crate::ids::found(&id, "User")?;
    state.identity.delete_user(&id, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(operation_id = "users_roles", get, path = "/api/v1/roles", tag = "users", security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = crate::http::schemas::RoleList), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn roles(principal: Principal) -> Result<Response, HttpError> {
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
