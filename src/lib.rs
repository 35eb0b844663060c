//! The KillKrill backend: centralized logs and metrics over HTTP (and, later, gRPC).
//!
//! `main.rs` only parses the configuration and calls [`run`]; tests call [`build`] and
//! [`App::router`] / [`App::serve`] to get exactly what production runs.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod app;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod data;
pub mod db;
pub mod error;
pub mod http;
pub mod identity;
pub mod license;
pub mod metrics;
pub mod net;
pub mod router;
pub mod server;
pub mod settings;
pub mod state;
pub mod telemetry;
pub mod time;

pub use app::{App, HEALTH_CHECK_INTERVAL, build};

use crate::config::{Config, RunMode};

/// Makes ring (which sqlx's rustls already brings) the process's TLS crypto provider, so
/// that every rustls user (the license client's https) agrees on one. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether this build serves gRPC; `--grpc-only` and the status endpoint consult it.
pub const GRPC_AVAILABLE: bool = false;

/// Runs the service with `config` until SIGTERM/SIGINT. Returns when fully stopped.
pub async fn run(config: Config, log_level: telemetry::LogLevelHandle) -> anyhow::Result<()> {
    let address = std::net::SocketAddr::new(config.host, config.port);
    let run_mode = config.run_mode;
    if run_mode == RunMode::GrpcOnly {
        tracing::warn!(
            event = "grpc_not_available",
            detail = "the gRPC server is not built yet; --grpc-only serves nothing"
        );
    }
    let shutdown = server::shutdown_signal();
    let app = build(config, log_level).await?;
    if run_mode == RunMode::GrpcOnly {
        shutdown.await;
        app.shutdown().await;
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| anyhow::anyhow!("FLASK_PORT: cannot listen on {address}: {err}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(
        event = "server_started",
        address = %bound,
        port = bound.port(),
        environment = app.state().config.environment.as_str(),
        database = app.state().db.backend().as_str(),
        version = env!("CARGO_PKG_VERSION"),
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
    );
    app.serve(listener, shutdown).await?;
    tracing::info!(event = "server_stopped");
    Ok(())
}
