//! `GET /api/v1/status` (any authenticated caller) and `/api/v1/admin/config` (admin).

use crate::http::openapi::ErrorResponse;
use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::{Principal, Role},
    http::error::HttpError,
    http::principal::AdminOnly,
    http::{context::RequestContext, extract::Json},
    service::settings,
    state::AppState,
};

#[utoipa::path(operation_id = "status_status", get, path = "/api/v1/status", tag = "status", security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = crate::http::schemas::Status), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn status(State(state): State<AppState>, principal: Principal) -> Result<Response, HttpError> {
    Ok(axum::Json(crate::service::status::report(&state, &principal)).into_response())
}

fn config_view(state: &AppState) -> serde_json::Value {
    json!({
        "log_level": state.log_level.get().as_str(),
        "enable_detailed_metrics": state.config.enable_detailed_metrics,
        "cors_origins": match &state.config.cors_origins {
            crate::config::CorsOrigins::Any => vec!["*".to_owned()],
            crate::config::CorsOrigins::List(list) => list.clone(),
        },
        "jwt_expiry_hours": state.config.jwt_expiry_hours,
        "api_key_max_days": state.config.api_key_max_days,
    })
}

#[utoipa::path(operation_id = "status_get_config", get, path = "/api/v1/admin/config", tag = "admin", security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = crate::http::schemas::ConfigView), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn get_config(State(state): State<AppState>, principal: Principal) -> Result<Response, HttpError> {
    principal.require_role(Role::Admin)?;
    Ok(axum::Json(config_view(&state)).into_response())
}

/// Settings that can change at run time; everything else is start-up configuration.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    /// The level logged from now on, on this replica at once and on the others within 5 s.
    #[schema(pattern = "^(DEBUG|INFO|WARNING|ERROR)$")]
    log_level: Option<String>,
}

#[utoipa::path(operation_id = "status_put_config", put, path = "/api/v1/admin/config", tag = "admin", security(("bearer" = []), ("api_key" = [])), request_body = ConfigChange, responses((status = 200, body = crate::http::schemas::ConfigView), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn put_config(
    State(state): State<AppState>,
    AdminOnly(principal): AdminOnly,
    ctx: RequestContext,
    Json(change): Json<ConfigChange>,
) -> Result<Response, HttpError> {
    let Some(requested) = change.log_level else {
        return Ok(axum::Json(config_view(&state)).into_response());
    };
    let meta = ctx.audit_meta(Some(&principal.user_id));
    let level = settings::change_log_level(state.db.conn(), &state.log_level, &requested, &meta).await?;
    ctx.audit.mark_handled();
    tracing::warn!(event = "log_level_changed", level = level.as_str(), by = %principal.username);
    Ok(axum::Json(config_view(&state)).into_response())
}

#[utoipa::path(operation_id = "status_license", get, path = "/api/v1/license", tag = "status", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "Tier, validity, expiry, features, last check and last error", body = crate::http::schemas::LicenseSummary),
              (status = 401, description = "Missing or invalid credentials", body = ErrorResponse)))]
pub async fn license(State(state): State<AppState>, _principal: Principal) -> Response {
    axum::Json(state.license_summary()).into_response()
}
