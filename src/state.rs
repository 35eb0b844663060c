//! Application state: built once at start-up, cheap to clone into every handler.

use std::{sync::Arc, time::Instant};

use crate::{config::Config, db::Database, identity::Identity, metrics::Metrics, telemetry::LogLevelHandle};

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub metrics: Arc<Metrics>,
    pub identity: Arc<Identity>,
    pub log_level: LogLevelHandle,
    pub started_at: Instant,
}
