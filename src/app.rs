//! The application factory: `build(config)` makes exactly what production runs, and
//! tests call it too.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::Router;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    db::{Database, DbStartError},
    metrics::Metrics,
    router,
    state::AppState,
    telemetry::LogLevelHandle,
};

/// How often the background task re-checks the database for the probes.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A built application: state (database connected and migrated) and its router.
pub struct App {
    state: AppState,
    health_monitor: tokio::task::JoinHandle<()>,
}

/// Connects the database (retrying), runs migrations and assembles the state.
pub async fn build(config: Config, log_level: LogLevelHandle) -> Result<App, DbStartError> {
    let db = Database::open(&config).await?;
    let metrics = Arc::new(Metrics::new(db.clone(), config.enable_detailed_metrics));
    let health_monitor = db.spawn_health_monitor(HEALTH_CHECK_INTERVAL);
    let state = AppState {
        config: Arc::new(config),
        db,
        metrics,
        log_level,
        started_at: Instant::now(),
    };
    Ok(App {
        state,
        health_monitor,
    })
}

impl App {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> Router {
        router::router(self.state.clone())
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, drains, then closes the pool.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let grace = self.state.config.shutdown_grace;
        let result = crate::server::serve(listener, self.router(), shutdown, grace).await;
        self.shutdown().await;
        result
    }

    /// Stops background work and closes the database pool.
    pub async fn shutdown(self) {
        self.health_monitor.abort();
        self.state.db.close().await;
    }
}
