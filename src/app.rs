//! The application factory: `build(config)` makes exactly what production runs, and
//! tests call it too.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::Router;
use tokio::net::TcpListener;

use crate::{
    bootstrap,
    budget::Budget,
    config::{Config, Environment},
    metrics::Metrics,
    router,
    server::Transport,
    service::audit,
    service::identity::Identity,
    service::license::{self, License},
    service::retention,
    service::settings,
    state::{AppState, Components},
    storage::{Database, StartError},
    telemetry::LogLevelHandle,
    tls::{self, Tls},
};

/// How often the background task re-checks the database for the probes.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A built application: state (database connected and migrated) and its router.
pub struct App {
    state: AppState,
    background: Vec<tokio::task::JoinHandle<()>>,
    tls: Option<Arc<Tls>>,
}

/// How often pending audit rows are chained.
const AUDIT_SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired revocations and refresh tokens are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// Connects the database (retrying for `DB_CONNECT_RETRY_SECONDS`), runs migrations and
/// assembles the state.
pub async fn build(config: Config, log_level: LogLevelHandle) -> Result<App, StartError> {
    crate::install_crypto_provider();
    let tls = Tls::from_config(&config)?;
    let db = crate::storage::migrate::open(&config).await?;
    let mut app = assemble(config, log_level, tls, db).await?;
    if let Some(tls) = &app.tls {
        app.background.push(tls.spawn_reload_on_sighup());
    }
    Ok(app)
}

/// The longest pause between two start-up attempts that failed after the database answered
/// (a migration or the first user failing, e.g. when the database went away meanwhile).
const MAX_STARTUP_RETRY_DELAY: Duration = Duration::from_secs(30);

/// [`build`] for a server already listening: waits for the database as long as it takes,
/// and runs the start-up again (with back-off) when a step after connecting fails. Fails
/// only for what waiting cannot fix. The caller reloads `tls` on SIGHUP (from before the
/// database answers).
pub(crate) async fn build_when_reachable(
    config: Config,
    log_level: LogLevelHandle,
    tls: Option<Arc<Tls>>,
) -> Result<App, StartError> {
    let mut delay = Duration::from_secs(1);
    loop {
        let db = Database::open_when_reachable(&config).await?;
        let prepared = match crate::storage::migrate::prepare(&db, &config).await {
            Ok(()) => assemble(config.clone(), log_level.clone(), tls.clone(), db.clone()).await,
            Err(err) => Err(err),
        };
        match prepared {
            Ok(app) => return Ok(app),
            Err(err @ (StartError::Tls(_) | StartError::Setting(_))) => {
                db.close().await;
                return Err(err);
            }
            Err(err) => {
                db.close().await;
                tracing::error!(event = "startup_retry", error = %err, retry_in_ms = delay.as_millis() as u64);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_STARTUP_RETRY_DELAY);
            }
        }
    }
}

/// The state around an open, migrated database, and the background tasks that use it.
async fn assemble(
    config: Config,
    log_level: LogLevelHandle,
    tls: Option<Arc<Tls>>,
    db: Database,
) -> Result<App, StartError> {
    let metrics = Arc::new(Metrics::new(db.clone(), config.enable_detailed_metrics));
    let identity = Arc::new(Identity::new(db.conn().clone(), &config));
    let license = Arc::new(
        License::new(config.license_key.clone(), &config.license_server_url, &config.product_name, metrics.clone())
            .map_err(|e| StartError::Setting(format!("LICENSE_SERVER_URL: {e}")))?,
    );
    if config.environment == Environment::Development {
        bootstrap::default_admin(&identity).await.map_err(StartError::DefaultAdmin)?;
    }
    let background = vec![
        db.spawn_health_monitor(HEALTH_CHECK_INTERVAL),
        audit::spawn_sealer(db.conn().clone(), AUDIT_SEAL_INTERVAL),
        spawn_pruner(identity.clone()),
        settings::spawn_poller(db.conn().clone(), log_level.clone()),
        spawn_license_checks(license.clone(), db.clone(), metrics.clone()),
        retention::spawn_sweeper(db.clone(), metrics.clone(), config.retention, config.retention_interval),
    ];
    let body_budget = Arc::new(Budget::new(config.max_inflight_body_bytes));
    let state = AppState::new(Components {
        config: Arc::new(config),
        body_budget,
        db,
        metrics,
        identity,
        ingest_keys: Arc::default(),
        license: license.clone(),
        log_level,
        started_at: Instant::now(),
    });
    Ok(App { state, background, tls })
}

/// The listeners to serve: HTTP, gRPC, or both (the run mode decides which are bound).
#[derive(Debug, Default)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub grpc: Option<TcpListener>,
}

impl App {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> Router {
        router::router(self.state.clone())
    }

    /// Whether the ports serve TLS.
    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    fn transport(&self, port: tls::Port) -> Transport {
        transport(&self.state.config, self.tls.clone(), port)
    }

    /// The gRPC services; the task that keeps their health in step joins the background
    /// tasks.
    pub(crate) fn grpc_router(&mut self) -> Router {
        let (router, health_task) = crate::grpc::router(self.state.clone());
        self.background.push(health_task);
        router
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, drains, then closes the pool.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        self.serve_all(Listeners { http: Some(listener), grpc: None }, shutdown).await
    }

    /// Serves HTTP and gRPC on the listeners given until `shutdown` resolves; then both
    /// stop accepting and drain together (each for at most the shutdown grace), and the
    /// pool is closed.
    pub async fn serve_all(mut self, listeners: Listeners, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let http = listeners.http.map(|listener| (listener, self.router(), self.transport(tls::Port::Http)));
        let grpc = listeners.grpc.map(|listener| (listener, self.grpc_router(), self.transport(tls::Port::Grpc)));
        let served = serve_ports(http, grpc, shutdown, self.state.config.shutdown_grace).await;
        self.shutdown().await;
        served
    }

    /// Stops background work and closes the database pool.
    pub async fn shutdown(self) {
        for task in &self.background {
            task.abort();
        }
        self.state.db.close().await;
    }
}

/// What a listener of `port` needs besides its router.
pub(crate) fn transport(config: &Config, tls: Option<Arc<Tls>>, port: tls::Port) -> Transport {
    Transport {
        port,
        tls,
        trusted_proxies: Arc::from(config.trusted_proxies.as_slice()),
        header_read_timeout: crate::server::HEADER_READ_TIMEOUT,
    }
}

/// A listener, the router it serves and its transport.
pub(crate) type Port = (TcpListener, Router, Transport);

/// Serves the ports given until `shutdown` resolves; then both stop accepting and drain
/// together, each for at most `grace`.
pub(crate) async fn serve_ports(
    http: Option<Port>,
    grpc: Option<Port>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let serve = |port: Option<Port>| {
        let stopped = until_stopped(stopped.clone());
        async move {
            match port {
                Some((listener, router, transport)) => {
                    crate::server::serve(listener, router, transport, stopped, grace).await
                }
                None => Ok(()),
            }
        }
    };
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let ((), (http, grpc)) =
        futures_util::future::join(signal, futures_util::future::join(serve(http), serve(grpc))).await;
    http.and(grpc)
}

fn spawn_pruner(identity: Arc<Identity>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            ticker.tick().await;
            if let Err(err) = identity.prune_expired().await {
                tracing::warn!(event = "prune_failed", error = %err);
            }
        }
    })
}

/// Validates at start-up and whenever the answer is older than five minutes, and sends a
/// keepalive with usage figures every five minutes; never on a request's path.
fn spawn_license_checks(license: Arc<License>, db: Database, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !license.is_licensed() {
            return;
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(30));
        let mut last_keepalive: Option<Instant> = None;
        loop {
            ticker.tick().await;
            if license.stale() {
                let _ = license.refresh().await;
            }
            if last_keepalive.is_none_or(|at| at.elapsed() >= license::CACHE_TTL) {
                last_keepalive = Some(Instant::now());
                let usage = usage(&db, &metrics).await;
                if let Err(err) = license.keepalive(usage).await {
                    tracing::warn!(event = "license_keepalive_failed", error = %err);
                }
            }
        }
    })
}

/// Usage figures for the keepalive.
async fn usage(db: &Database, metrics: &Metrics) -> serde_json::Value {
    let users = crate::storage::users::count(db.conn()).await.ok();
    let sources = crate::storage::sources::count(db.conn()).await.ok();
    serde_json::json!({ "requests_total": metrics.requests_total(), "users": users, "sources": sources })
}
