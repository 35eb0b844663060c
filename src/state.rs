//! Application state: built once at start-up, cheap to clone into every handler.

use std::{sync::Arc, time::Instant};

use crate::{
    budget::Budget, config::Config, metrics::Metrics, service::identity::Identity,
    service::ingest_keys::IngestKeyCache, service::license::License, storage::Database, telemetry::LogLevelHandle,
};

/// Shared application state. One `Arc` inside, so the clone every handler and layer
/// takes is a single atomic increment, not one per field.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Components>);

impl AppState {
    pub fn new(components: Components) -> Self {
        Self(Arc::new(components))
    }
}

impl std::ops::Deref for AppState {
    type Target = Components;

    fn deref(&self) -> &Components {
        &self.0
    }
}

/// What the state is made of.
#[derive(Debug)]
pub struct Components {
    pub config: Arc<Config>,
    pub db: Database,
    pub metrics: Arc<Metrics>,
    pub identity: Arc<Identity>,
    pub ingest_keys: Arc<IngestKeyCache>,
    pub license: Arc<License>,
    pub log_level: LogLevelHandle,
    /// Request bodies held in memory, bounded by `MAX_INFLIGHT_BODY_BYTES`.
    pub body_budget: Arc<Budget>,
    pub started_at: Instant,
}

impl AppState {
    /// The license section of `/api/v1/status` and the body of `/api/v1/license`.
    pub fn license_summary(&self) -> serde_json::Value {
        self.license.summary(&self.config.license_server_url)
    }
}
