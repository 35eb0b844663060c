//! The KillKrill backend: centralized logs and metrics over HTTP and gRPC.
//!
//! `main.rs` only parses the configuration and calls [`run`]; tests call [`build`] and
//! [`App::router`] / [`App::serve`] to get exactly what production runs.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod app;
pub mod auth;
pub mod bootstrap;
pub mod budget;
pub mod cli;
pub mod config;
pub mod error;
pub mod float;
pub mod gate;
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
///
/// The ports listen at once. Until the database has answered and the migrations have run,
/// they answer from a stand-in (`/livez` 200, `/readyz` and `/healthz` 503, everything
/// else 503, gRPC UNAVAILABLE), while the connection is retried for as long as it takes;
/// then the real routers take over, without a restart. Only what waiting cannot fix (TLS
/// files, a SQLite directory that does not exist, a port in use) stops start-up.
pub async fn run(config: Config, log_level: telemetry::LogLevelHandle) -> anyhow::Result<()> {
    let run_mode = config.run_mode;
    let http_address = std::net::SocketAddr::new(config.host, config.port);
    let grpc_address = std::net::SocketAddr::new(config.host, config.grpc_port);
    let shutdown = server::shutdown_signal();
    install_crypto_provider();
    let tls = tls::Tls::from_config(&config)?;
    storage::check_settings(&config)?;
    // SIGHUP reloads the TLS files from the start: its default action would end the
    // process while it waits for the database.
    let reload = tls.as_ref().map(|tls| tls.spawn_reload_on_sighup());
    let (http_gate, grpc_gate) = (
        gate::Gate::new(http::health::starting_router(config.environment)),
        gate::Gate::new(grpc::starting_router().await),
    );
    let mut http = None;
    let mut grpc = None;
    if run_mode != RunMode::GrpcOnly {
        let listener = bind("FLASK_PORT", http_address).await?;
        http = Some((listener, http_gate.router(), app::transport(&config, tls.clone(), tls::Port::Http)));
    }
    if run_mode != RunMode::HttpOnly {
        let listener = bind("GRPC_PORT", grpc_address).await?;
        grpc = Some((listener, grpc_gate.router(), app::transport(&config, tls.clone(), tls::Port::Grpc)));
    }
    let serves_tls = tls.as_ref().is_some_and(|tls| tls.serves_tls());
    let mtls = config.tls_client_ca_file.is_some();
    if let Some((listener, ..)) = &http {
        let bound = listener.local_addr()?;
        tracing::info!(
            event = "server_started",
            address = %bound,
            port = bound.port(),
            environment = config.environment.as_str(),
            database = config.database_url.backend().as_str(),
            version = env!("CARGO_PKG_VERSION"),
            workers = tokio::runtime::Handle::current().metrics().num_workers(),
            tls = serves_tls,
            mtls,
        );
    }
    if let Some((listener, ..)) = &grpc {
        let bound = listener.local_addr()?;
        tracing::info!(event = "grpc_server_started", address = %bound, port = bound.port(), tls = serves_tls, mtls);
    }
    let grace = config.shutdown_grace;
    let serves_grpc = grpc.is_some();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = app::serve_ports(
        http,
        grpc,
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        },
        grace,
    );
    let control = async move {
        let mut shutdown = std::pin::pin!(shutdown);
        let built = tokio::select! {
            built = app::build_when_reachable(config, log_level, tls) => built,
            () = &mut shutdown => {
                let _ = stop.send(true);
                return Ok(None);
            }
        };
        let mut app = match built {
            Ok(app) => app,
            Err(err) => {
                let _ = stop.send(true);
                return Err(err);
            }
        };
        http_gate.open(app.router());
        if serves_grpc {
            grpc_gate.open(app.grpc_router());
        }
        tracing::info!(event = "service_ready");
        bootstrap::warn_if_default_password_exposed(app.state()).await;
        shutdown.await;
        let _ = stop.send(true);
        Ok(Some(app))
    };
    let (control, served) = futures_util::future::join(control, serving).await;
    if let Some(reload) = reload {
        reload.abort();
    }
    let app = control?;
    if let Some(app) = app {
        app.shutdown().await;
    }
    served?;
    tracing::info!(event = "server_stopped");
    Ok(())
}

async fn bind(variable: &str, address: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| anyhow::anyhow!("{variable}: cannot listen on {address}: {err}"))
}
