//! `/api/v1/auth/*`: login, refresh, verify, logout, me, change-password and API keys.

use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::{Principal, Role, roles},
    error::{AppError, FieldError},
    http::{
        context::RequestContext,
        extract::{Json, Query},
        pagination::{listing, page},
    },
    identity::{api_keys::NewApiKey, sessions::TokenResponse, users},
    state::AppState,
    time::micros_to_rfc3339,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: Option<String>,
    email: Option<String>,
    password: String,
}

/// Token responses must not be cached by anything on the way.
fn token_response(status: StatusCode, tokens: TokenResponse) -> Response {
    let mut response = (status, axum::Json(tokens)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn login(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<LoginRequest>,
) -> Result<Response, AppError> {
    let login = body
        .username
        .or(body.email)
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| AppError::Validation(vec![FieldError::new("username", "username or email is required")]))?;
    let result = state.identity.login(&login, &body.password, &ctx.audit_meta(None), ctx.client_ip).await;
    // The login service audits successes, failures and throttled attempts itself.
    if matches!(&result, Ok(_) | Err(AppError::Unauthorized(_) | AppError::TooManyRequests { .. })) {
        ctx.audit.mark_handled();
    }
    Ok(token_response(StatusCode::OK, result?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

pub async fn refresh(State(state): State<AppState>, Json(body): Json<RefreshRequest>) -> Result<Response, AppError> {
    let tokens = state.identity.refresh(&body.refresh_token).await?;
    Ok(token_response(StatusCode::OK, tokens))
}

pub async fn verify(principal: Principal, ctx: RequestContext) -> Result<Response, AppError> {
    let expires_at = principal.token.as_ref().map(|claims| micros_to_rfc3339(claims.exp.saturating_mul(1_000_000)));
    Ok(axum::Json(json!({
        "valid": true,
        "identity": principal.user_id,
        "username": principal.username,
        "roles": roles::names(&principal.roles),
        "permissions": roles::permission_names(&principal.roles),
        "auth_method": principal.auth_method.as_str(),
        "expires_at": expires_at,
        "correlation_id": ctx.correlation_id,
    }))
    .into_response())
}

pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
) -> Result<Response, AppError> {
    let claims = principal.token.as_ref().ok_or_else(|| {
        AppError::BadRequest("Only token sessions can be logged out; delete the API key instead".into())
    })?;
    state.identity.logout(claims, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(axum::Json(json!({ "message": "Logged out successfully" })).into_response())
}

pub async fn me(State(state): State<AppState>, principal: Principal) -> Result<Response, AppError> {
    let user = users::find_by_id(&state.identity.db, &principal.user_id)
        .await?
        .ok_or_else(|| AppError::Unauthorized("Authentication required".into()))?;
    let mut view = serde_json::to_value(users::UserView::new(user, &principal.roles)).map_err(AppError::internal)?;
    view["auth_method"] = json!(principal.auth_method.as_str());
    Ok(axum::Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Json(body): Json<ChangePasswordRequest>,
) -> Result<Response, AppError> {
    let tokens = state
        .identity
        .change_password(
            &principal.user_id,
            &body.current_password,
            &body.new_password,
            &ctx.audit_meta(Some(&principal.user_id)),
        )
        .await?;
    ctx.audit.mark_handled();
    Ok(token_response(StatusCode::OK, tokens))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyListQuery {
    user_id: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

pub async fn list_api_keys(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<KeyListQuery>,
) -> Result<Response, AppError> {
    let page = page(query.limit, query.offset)?;
    let (keys, total) =
        state.identity.list_api_keys(&principal, query.user_id.as_deref(), page.limit, page.offset).await?;
    Ok(axum::Json(listing("api_keys", keys, total, page)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    name: String,
    roles: Option<Vec<String>>,
    expires_in_days: Option<u32>,
}

/// Parses role names, naming the field of any unknown one.
pub fn parse_roles(field: &str, names: &[String]) -> Result<Vec<Role>, AppError> {
    names
        .iter()
        .map(|name| {
            Role::parse(name).ok_or_else(|| {
                AppError::Validation(vec![FieldError::new(
                    field,
                    format!("unknown role `{name}` (admin, maintainer, viewer)"),
                )])
            })
        })
        .collect()
}

pub async fn create_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Json(body): Json<CreateKeyRequest>,
) -> Result<Response, AppError> {
    let roles = body.roles.as_deref().map(|r| parse_roles("roles", r)).transpose()?;
    let new = NewApiKey { name: body.name, roles, expires_in_days: body.expires_in_days };
    let created = state.identity.create_api_key(&principal, new, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    let mut response = (StatusCode::CREATED, axum::Json(created)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn delete_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ctx: RequestContext,
    Path(key_id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.identity.delete_api_key(&principal, &key_id, &ctx.audit_meta(Some(&principal.user_id))).await?;
    ctx.audit.mark_handled();
    Ok(StatusCode::NO_CONTENT)
}
