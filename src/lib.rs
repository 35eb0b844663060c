//! The KillKrill backend: centralized logs and metrics over HTTP and gRPC.
//!
//! `main.rs` only parses the configuration and calls [`run`]; tests call [`build`] and
//! [`App::router`] / [`App::serve`] to get exactly what production runs.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod app;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod error;
pub mod float;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod promql;
pub mod protocol;
pub mod router;
pub mod server;
pub mod service;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod time;
pub mod tls;

pub use app::{App, HEALTH_CHECK_INTERVAL, Listeners, build};

use crate::config::{Config, RunMode};

/// Makes ring (which sqlx's rustls already brings) the process's TLS crypto provider, so
/// that every rustls user (the license client's https) agrees on one. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs the service with `config` until SIGTERM/SIGINT: HTTP and gRPC, or the one the
/// run mode (`--no-grpc`, `--grpc-only`) leaves. Returns when fully stopped.
pub async fn run(config: Config, log_level: telemetry::LogLevelHandle) -> anyhow::Result<()> {
    let run_mode = config.run_mode;
    let http_address = std::net::SocketAddr::new(config.host, config.port);
    let grpc_address = std::net::SocketAddr::new(config.host, config.grpc_port);
    let shutdown = server::shutdown_signal();
    let app = build(config, log_level).await?;
    let mut listeners = Listeners::default();
    if run_mode != RunMode::GrpcOnly {
        listeners.http = Some(bind("FLASK_PORT", http_address).await?);
    }
    if run_mode != RunMode::HttpOnly {
        listeners.grpc = Some(bind("GRPC_PORT", grpc_address).await?);
    }
    let config = &app.state().config;
    let tls = app.tls().is_some_and(|tls| tls.serves_tls());
    let mtls = config.tls_client_ca_file.is_some();
    if let Some(listener) = &listeners.http {
        let bound = listener.local_addr()?;
        tracing::info!(
            event = "server_started",
            address = %bound,
            port = bound.port(),
            environment = config.environment.as_str(),
            database = app.state().db.backend().as_str(),
            version = env!("CARGO_PKG_VERSION"),
            workers = tokio::runtime::Handle::current().metrics().num_workers(),
            tls,
            mtls,
        );
    }
    if let Some(listener) = &listeners.grpc {
        let bound = listener.local_addr()?;
        tracing::info!(event = "grpc_server_started", address = %bound, port = bound.port(), tls, mtls);
    }
    app.serve_all(listeners, shutdown).await?;
    tracing::info!(event = "server_stopped");
    Ok(())
}

async fn bind(variable: &str, address: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| anyhow::anyhow!("{variable}: cannot listen on {address}: {err}"))
}
