//! The service's tests, one module per area, named after the routes it covers:
//!
//! | module | covers |
//! | --- | --- |
//! | `auth` | `/api/v1/auth/login`, `/refresh`, `/verify`, `/logout`, `/me`, `/change-password` |
//! | `api_keys` | `/api/v1/auth/api-keys`, `/api/v1/auth/api-keys/{id}` |
//! | `users` | `/api/v1/users`, `/api/v1/users/{id}`, `/api/v1/roles` (and RBAC across routes) |
//! | `audit` | `/api/v1/audit`, `/api/v1/audit/verify` |
//! | `license` | `/api/v1/license`, `/api/v1/audit/export`, and the license server's calls |
//! | `sources` | `/api/v1/sources`, `/api/v1/sources/{id}`, `/api/v1/sources/{id}/keys[/{key_id}]` |
//! | `logs` | `/api/v1/logs` |
//! | `log_search` | `q` of `/api/v1/logs` from the text index: the same lines as the scan |
//! | `metrics` | `/api/v1/metrics`, `/api/v1/metrics/query` |
//! | `chunks` | the metric chunks: compaction, reads across chunks and head, their retention |
//! | `promql` | `/prometheus/api/v1/query`, `/query_range`, `/series`, `/labels`, `/label/{name}/values`, `/metadata`, `/status/buildinfo`, `/query_exemplars` (Prometheus' query API; `promql::conformance`: a corpus against a real Prometheus 2.42, and promtool) |
//! | `remote_write` | `/prometheus/api/v1/write`, `/api/v1/push` (Prometheus remote_write, a real Prometheus end to end) |
//! | `loki` | `/loki/api/v1/push` |
//! | `elastic` | `/elastic/...`: Elasticsearch `_bulk` and the calls agents make before it |
//! | `status_config` | `/api/v1/status`, `/api/v1/admin/config` |
//! | `health` | `/healthz`, `/livez`, `/readyz`, `/metrics` |
//! | `openapi` | `/api/v1/openapi.json` |
//! | `retention` | `retention_days` of `/api/v1/sources`, the retention sweep and its lock, expired ingest dropped |
//! | `security` | docs/SECURITY.md's rules no single area owns: no secret stored in plain text, an ingest key reaches only its source's ingest |
//! | `otlp` | `/v1/logs`, `/v1/metrics` (and under `/otlp`), gRPC `LogsService/Export`, `MetricsService/Export`; the Python SDK end to end |
//! | `overload` | the in-flight body budget (`MAX_INFLIGHT_BODY_BYTES`) across every ingest protocol, the 413 of a body over the limit read whole |
//! | `request_pipeline` | what every route passes through: correlation ids, error bodies, limits, timeouts, CORS, shutdown |
//! | `grpc` | the gRPC services |
//! | `tls` | HTTPS, client certificates, forwarded headers |
//! | `database` | migrations, SQLite's settings, outages and start-up retries |
//! | `binary` | the `killkrill` binary: flags, environment, logs, signals |
//!
//! `common` holds what several modules share: a fresh database per case, the server on a
//! real socket, and the REST helpers (`common::rest`).

#[macro_use]
mod common;

mod api_keys;
mod audit;
mod auth;
mod binary;
mod chunks;
mod database;
mod elastic;
mod grpc;
mod health;
mod license;
mod log_search;
mod logs;
mod loki;
mod metrics;
mod openapi;
mod otlp;
mod overload;
mod promql;
mod remote_write;
mod request_pipeline;
mod retention;
mod security;
mod sources;
mod status_config;
mod tls;
mod users;

fn main() -> std::process::ExitCode {
    let areas = [
        api_keys::cases(),
        audit::cases(),
        auth::cases(),
        binary::cases(),
        chunks::cases(),
        database::cases(),
        elastic::cases(),
        grpc::cases(),
        health::cases(),
        license::cases(),
        log_search::cases(),
        logs::cases(),
        loki::cases(),
        metrics::cases(),
        openapi::cases(),
        otlp::cases(),
        overload::cases(),
        promql::cases(),
        promql::conformance::cases(),
        remote_write::cases(),
        request_pipeline::cases(),
        retention::cases(),
        security::cases(),
        sources::cases(),
        status_config::cases(),
        tls::cases(),
        users::cases(),
    ];
    common::matrix::main(areas.into_iter().flatten().collect())
}
