//! Schemas of the response bodies the handlers build with `json!` or `listing`: each
//! mirrors its body field for field (and `tests/schemathesis.sh` checks real answers
//! against them). Bodies the handlers serialize from a type derive `ToSchema` on it.

#![allow(dead_code, reason = "documentation schemas; the bodies are built by the handlers")]

use std::collections::BTreeMap;

use utoipa::ToSchema;

use crate::{
    service::audit::AuditView,
    service::identity::{UserView, api_keys::ApiKeyView},
    service::{ingest_keys::IngestKeyView, logs::LogView, samples::SeriesView, sources::SourceView},
};

/// `{"sources": [...], "total", "limit", "offset"}`.
#[derive(ToSchema)]
pub struct SourceList {
    sources: Vec<SourceView>,
    /// Matching sources in all.
    total: u64,
    limit: u64,
    offset: u64,
}

/// `{"keys": [...], "total", "limit", "offset"}`.
#[derive(ToSchema)]
pub struct IngestKeyList {
    keys: Vec<IngestKeyView>,
    total: u64,
    limit: u64,
    offset: u64,
}

/// `{"api_keys": [...], "total", "limit", "offset"}`.
#[derive(ToSchema)]
pub struct ApiKeyList {
    api_keys: Vec<ApiKeyView>,
    total: u64,
    limit: u64,
    offset: u64,
}

/// `{"users": [...], "total", "limit", "offset"}`.
#[derive(ToSchema)]
pub struct UserList {
    users: Vec<UserView>,
    total: u64,
    limit: u64,
    offset: u64,
}

/// `{"audit": [...], "total", "limit", "offset"}`, newest first.
#[derive(ToSchema)]
pub struct AuditList {
    audit: Vec<AuditView>,
    total: u64,
    limit: u64,
    offset: u64,
}

/// `{"metrics": [...], "total", "limit", "offset"}`: the known series.
#[derive(ToSchema)]
pub struct SeriesList {
    metrics: Vec<SeriesView>,
    total: u64,
    limit: u64,
    offset: u64,
}

/// A role and what it permits.
#[derive(ToSchema)]
pub struct RoleView {
    #[schema(pattern = "^(admin|maintainer|viewer)$")]
    name: String,
    description: String,
    permissions: Vec<String>,
}

/// `{"roles": [...], "total", "limit", "offset"}`: every role, on one page.
#[derive(ToSchema)]
pub struct RoleList {
    roles: Vec<RoleView>,
    total: u64,
    limit: u64,
    offset: u64,
}

/// A page of logs, newest first.
#[derive(ToSchema)]
pub struct LogPage {
    logs: Vec<LogView>,
    limit: u64,
    /// Pass as `cursor` for the next page; `null` on the last one.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// What became of a batch (stored whole or not at all): `accepted` entries were stored,
/// `dropped` valid ones were not, being older than their source's retention.
#[derive(ToSchema)]
pub struct Accepted {
    accepted: u64,
    dropped: u64,
}

/// `{"message": ...}`.
#[derive(ToSchema)]
pub struct Message {
    message: String,
}

/// `GET /api/v1/auth/me`: the user, and how this request authenticated.
#[derive(ToSchema)]
pub struct Me {
    #[serde(flatten)]
    user: UserView,
    #[schema(pattern = "^(jwt|api_key|mtls)$")]
    auth_method: String,
}

/// `GET /livez`.
#[derive(ToSchema)]
pub struct Liveness {
    #[schema(pattern = "^alive$")]
    status: String,
}

/// `GET /readyz`: `ready` (200) or `not_ready` (503).
#[derive(ToSchema)]
pub struct Readiness {
    #[schema(pattern = "^(ready|not_ready)$")]
    status: String,
    checks: DatabaseCheck,
}

#[derive(ToSchema)]
pub struct DatabaseCheck {
    #[schema(pattern = "^(ok|unavailable)$")]
    database: String,
}

/// What `/api/v1/license` and `/api/v1/status` show of the license. Without a license
/// key only the required fields are present.
#[derive(ToSchema)]
pub struct LicenseSummary {
    tier: String,
    valid: bool,
    /// Whether a license key is configured.
    licensed: bool,
    features: Vec<LicenseFeature>,
    #[schema(required = true)]
    last_check: Option<String>,
    #[schema(required = true)]
    last_success: Option<String>,
    #[schema(required = true)]
    last_error: Option<String>,
    message: Option<String>,
    expires_at: Option<String>,
    /// The license server (present when licensed).
    #[schema(nullable = false)]
    server: Option<String>,
    /// The last check failed, and the last good answer still counts (present when licensed).
    #[schema(nullable = false)]
    grace: Option<bool>,
}

#[derive(ToSchema)]
pub struct LicenseFeature {
    name: String,
    entitled: bool,
}

/// `GET /api/v1/status`.
#[derive(ToSchema)]
pub struct Status {
    #[schema(pattern = "^operational$")]
    status: String,
    version: String,
    #[schema(pattern = "^(development|testing|production)$")]
    environment: String,
    uptime_seconds: u64,
    database: StatusDatabase,
    grpc: StatusGrpc,
    license: LicenseSummary,
    identity: StatusIdentity,
}

#[derive(ToSchema)]
pub struct StatusDatabase {
    #[schema(pattern = "^(sqlite|postgresql|mysql)$")]
    backend: String,
    #[schema(pattern = "^(ok|unavailable)$")]
    status: String,
}

#[derive(ToSchema)]
pub struct StatusGrpc {
    enabled: bool,
    port: u16,
}

/// Who is asking.
#[derive(ToSchema)]
pub struct StatusIdentity {
    user_id: String,
    username: String,
    roles: Vec<String>,
    #[schema(pattern = "^(jwt|api_key|mtls)$")]
    auth_method: String,
}

/// `/api/v1/admin/config`: the settings in force.
#[derive(ToSchema)]
pub struct ConfigView {
    #[schema(pattern = "^(DEBUG|INFO|WARNING|ERROR)$")]
    log_level: String,
    enable_detailed_metrics: bool,
    /// `["*"]` when any origin is allowed.
    cors_origins: Vec<String>,
    jwt_expiry_hours: u32,
    api_key_max_days: u32,
}

/// A range query's answer, in Prometheus' matrix shape.
#[derive(ToSchema)]
pub struct MatrixResponse {
    #[schema(pattern = "^success$")]
    status: String,
    data: MatrixData,
}

#[derive(ToSchema)]
pub struct MatrixData {
    #[serde(rename = "resultType")]
    #[schema(pattern = "^matrix$")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

/// One series: its labels (its name under `__name__`) and its points, oldest first.
#[derive(ToSchema)]
pub struct MatrixSeries {
    metric: BTreeMap<String, String>,
    /// `[unix_seconds, "value"]` pairs; values as Prometheus writes them (`"NaN"`, `"+Inf"`).
    #[schema(schema_with = points)]
    values: Vec<(f64, String)>,
}

fn points() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Type};
    let pair = ArrayBuilder::new()
        .prefix_items([
            ObjectBuilder::new().schema_type(Type::Number).build(),
            ObjectBuilder::new().schema_type(Type::String).build(),
        ])
        .items(ArrayItems::False)
        .min_items(Some(2));
    ArrayBuilder::new().items(pair).build()
}
