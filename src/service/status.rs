//! The status report of `GET /api/v1/status` and `StatusService/GetStatus`, built once
//! here; each transport renders it (its OpenAPI schema is `http::schemas::Status`).

use serde::Serialize;

use crate::{
    auth::{Principal, roles},
    config::RunMode,
    state::AppState,
};

/// What the service says of itself to an authenticated caller.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Always `operational` while the process answers.
    pub status: &'static str,
    pub version: &'static str,
    /// `development`, `testing` or `production`.
    pub environment: &'static str,
    pub uptime_seconds: u64,
    pub database: DatabaseStatus,
    pub grpc: GrpcStatus,
    /// The license client's state: tier, validity, features, last check.
    pub license: serde_json::Value,
    pub identity: CallerIdentity,
}

#[derive(Debug, Serialize)]
pub struct DatabaseStatus {
    /// `sqlite`, `postgresql` or `mysql`.
    pub backend: &'static str,
    /// `ok` or `unavailable`, from the background health check.
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub struct GrpcStatus {
    pub enabled: bool,
    pub port: u16,
}

/// The caller, as the report names it.
#[derive(Debug, Serialize)]
pub struct CallerIdentity {
    pub user_id: String,
    pub username: String,
    pub roles: Vec<&'static str>,
    /// `jwt`, `api_key` or `mtls`.
    pub auth_method: &'static str,
}

/// The report for `principal`.
pub fn report(state: &AppState, principal: &Principal) -> StatusReport {
    let config = &state.config;
    StatusReport {
        status: "operational",
        version: env!("CARGO_PKG_VERSION"),
        environment: config.environment.as_str(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        database: DatabaseStatus {
            backend: state.db.backend().as_str(),
            status: if state.db.health().is_ok() { "ok" } else { "unavailable" },
        },
        grpc: GrpcStatus { enabled: config.run_mode != RunMode::HttpOnly, port: config.grpc_port },
        license: state.license_summary(),
        identity: CallerIdentity {
            user_id: principal.user_id.clone(),
            username: principal.username.clone(),
            roles: roles::names(&principal.roles),
            auth_method: principal.auth_method.as_str(),
        },
    }
}
