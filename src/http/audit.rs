//! `/api/v1/audit` and `/api/v1/audit/verify` (admin only).

use crate::http::openapi::ErrorResponse;
use crate::service::audit::VerifyReport;
use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{
    auth::{Principal, Role},
    error::{AppError, FieldError},
    http::error::HttpError,
    http::{
        extract::Query,
        pagination::{listing, page},
    },
    service::audit::{self, AuditFilter},
    state::AppState,
    time::parse_time,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user_id: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u64>,
    offset: Option<u64>,
}

impl AuditQuery {
    /// The filters, checked. They compare exactly on every database: ids are canonical
    /// UUIDs, and an action with surrounding spaces is refused (MariaDB's comparisons
    /// ignore trailing spaces; the others' do not).
    fn filter(&self) -> Result<AuditFilter, HttpError> {
        if self.action.as_deref().is_some_and(|a| a.trim() != a) {
            return Err(
                AppError::Validation(vec![FieldError::new("action", "must not start or end with spaces")]).into()
            );
        }
        Ok(AuditFilter {
            user_id: self.user_id.as_deref().map(|id| crate::ids::filter(id, "user_id")).transpose()?,
            action: self.action.clone(),
            since: self.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
            until: self.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
        })
    }
}

#[utoipa::path(operation_id = "audit_list", get, path = "/api/v1/audit", tag = "audit", security(("bearer" = []), ("api_key" = [])), params(AuditQuery), responses((status = 200, body = crate::http::schemas::AuditList), (status = 400, description = "Invalid input", body = ErrorResponse), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AuditQuery>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Admin)?;
    let page = page(query.limit, query.offset)?;
    let filter = query.filter()?;
    let (rows, total) = audit::list(state.db.conn(), &filter, page.limit, page.offset).await?;
    Ok(axum::Json(listing("audit", rows, total, page)).into_response())
}

#[utoipa::path(operation_id = "audit_verify", get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = VerifyReport), (status = 401, description = "Missing or invalid credentials", body = ErrorResponse), (status = 403, description = "Not allowed", body = ErrorResponse)))]
pub async fn verify(State(state): State<AppState>, principal: Principal) -> Result<Response, HttpError> {
    principal.require_role(Role::Admin)?;
    let report = audit::verify(state.db.conn()).await?;
    Ok(axum::Json(report).into_response())
}

/// The premium feature this route needs from the license.
pub const EXPORT_FEATURE: &str = "audit_export";

#[utoipa::path(operation_id = "audit_export", get, path = "/api/v1/audit/export", tag = "audit", security(("bearer" = []), ("api_key" = [])),
    params(AuditQuery),
    responses((status = 200, description = "The audit rows as NDJSON, newest first (at most `limit`, default 1000)", content_type = "application/x-ndjson", body = String),
              (status = 401, description = "Missing or invalid credentials", body = ErrorResponse),
              (status = 403, description = "Not an admin, or the license lacks `audit_export`", body = ErrorResponse)))]
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AuditQuery>,
) -> Result<Response, HttpError> {
    principal.require_role(Role::Admin)?;
    state.license.require(EXPORT_FEATURE)?;
    let page = page(Some(query.limit.unwrap_or(1000)), query.offset)?;
    let filter = query.filter()?;
    let (rows, _) = audit::list(state.db.conn(), &filter, page.limit, page.offset).await?;
    let mut body = String::new();
    for row in rows {
        body.push_str(&serde_json::to_string(&row).map_err(AppError::internal)?);
        body.push('\n');
    }
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}
