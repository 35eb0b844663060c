//! The database health the probes report, refreshed by a background check so that a
//! storm of probes never turns into a storm of queries.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

/// How long one health query may take before the database counts as failing.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    Ok,
    /// The database is unreachable; the cause is for logs, never for clients.
    Failing(String),
}

impl HealthStatus {
    pub fn is_ok(&self) -> bool {
        matches!(self, HealthStatus::Ok)
    }
}

/// Shared, cheap-to-read health state.
#[derive(Clone, Debug)]
pub struct DbHealth(Arc<RwLock<HealthStatus>>);

impl DbHealth {
    pub fn new_healthy() -> Self {
        Self(Arc::new(RwLock::new(HealthStatus::Ok)))
    }

    pub fn get(&self) -> HealthStatus {
        match self.0.read() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, status: HealthStatus) {
        match self.0.write() {
            Ok(mut slot) => *slot = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
    }
}
