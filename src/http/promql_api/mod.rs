//! Prometheus' HTTP query API under `/prometheus/api/v1`, so that Grafana's Prometheus
//! data source (URL `http://host:5000/prometheus`), `promtool` and other Prometheus
//! clients read KillKrill's metrics: PromQL queries, series, label names and values,
//! metadata and build information, in Prometheus' envelope and error form
//! (docs/API.md, "Prometheus query API"). Like the ingest protocols these routes are
//! documented in docs/API.md rather than the OpenAPI document of the JSON API.

mod labels;
pub mod params;
mod query;
pub mod render;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
    response::Response,
    routing::get,
};
use serde::Serialize;

pub use self::render::{ApiError, ErrorType, PromError};
use self::{params::Params, render::success};
use crate::{
    auth::{Principal, Role},
    http::ingest_auth::agent_credential,
    state::AppState,
    tls::ClientCert,
};

/// Where the API is served.
pub const PREFIX: &str = "/prometheus/api/v1";

/// Whether `path` (or a route template) is under the API, whose errors are all written
/// in Prometheus' form, whichever layer refused the request.
pub fn serves(path: &str) -> bool {
    path.strip_prefix(PREFIX).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The query API's routes (the remote_write route beside them is `http::remote_write`'s).
pub fn router() -> Router<AppState> {
    let at = |path: &str| format!("{PREFIX}{path}");
    Router::new()
        .route(&at("/query"), get(query::instant).post(query::instant))
        .route(&at("/query_range"), get(query::range).post(query::range))
        .route(&at("/series"), get(labels::series).post(labels::series))
        .route(&at("/labels"), get(labels::label_names).post(labels::label_names))
        .route(&at("/label/{name}/values"), get(labels::label_values))
        .route(&at("/metadata"), get(labels::metadata))
        .route(&at("/status/buildinfo"), get(buildinfo))
        .route(&at("/query_exemplars"), get(query_exemplars).post(query_exemplars))
}

/// A caller of the query API: a user with the viewer role or above, by any credential a
/// data source sends (an access token or API key as `Bearer`, `X-API-Key` or a Basic
/// password; HTTP Basic with the user's password; a client certificate). An ingest key
/// may only ingest: 403.
pub struct Reader(pub Principal);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let credential = agent_credential(&parts.headers);
        let cert = parts.extensions.get::<Arc<ClientCert>>().map(|cert| &**cert);
        let client_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let principal = state.identity.authenticate_agent(&credential, cert, client_ip).await?;
        principal.require_role(Role::Viewer)?;
        Ok(Reader(principal))
    }
}

/// Prometheus' build information, as a Prometheus 2 answers it: Grafana reads the version
/// to pick the features it uses, and would take a `features` field for Mimir's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: &'static str,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: &'static str,
}

/// The Prometheus release whose query API and PromQL this one follows.
pub const PROMETHEUS_VERSION: &str = "2.42.0";

async fn buildinfo(_: Reader) -> Response {
    success(
        BuildInfo {
            version: PROMETHEUS_VERSION,
            revision: concat!("killkrill-", env!("CARGO_PKG_VERSION")),
            branch: "killkrill",
            build_user: "killkrill",
            build_date: "",
            go_version: "none (KillKrill, Rust)",
        },
        &[],
    )
}

/// Exemplars are not kept: the answer is always empty, once the parameters are valid.
async fn query_exemplars(_: Reader, params: Params) -> Result<Response, ApiError> {
    let start = params.time("start")?;
    let end = params.time("end")?;
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        return Err(PromError::bad_data("end timestamp must not be before start timestamp").into());
    }
    promql_parser::parser::parse(params.value("query").unwrap_or_default()).map_err(PromError::bad_data)?;
    Ok(success([(); 0], &[]))
}
