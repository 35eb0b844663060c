//! Runtime settings shared by every replica (`app_settings`): an admin's change is
//! stored, applied at once on the replica that took it, and picked up by the others
//! within [`POLL_INTERVAL`].

use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    config::LogLevel,
    error::{AppError, FieldError},
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus},
    storage::settings as rows,
    telemetry::LogLevelHandle,
    time::now_micros,
};

pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
const LOG_LEVEL_KEY: &str = "log_level";

/// An admin's change of the log level (`DEBUG`, `INFO`, `WARNING` or `ERROR`): stored with
/// its audit row in one transaction, then applied on this replica at once.
pub async fn change_log_level(
    db: &DatabaseConnection,
    handle: &LogLevelHandle,
    requested: &str,
    meta: &AuditMeta,
) -> Result<LogLevel, AppError> {
    let level = LogLevel::parse(requested).filter(|_| ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&requested));
    let Some(level) = level else {
        return Err(AppError::Validation(vec![FieldError::new("log_level", "must be DEBUG, INFO, WARNING or ERROR")]));
    };
    let txn = crate::storage::begin_write(db).await?;
    rows::put(&txn, LOG_LEVEL_KEY, level.as_str(), now_micros()).await?;
    let entry = AuditEntry::new("UPDATE_CONFIG", "config", Some(LOG_LEVEL_KEY), AuditStatus::Success);
    audit::record(&txn, meta, entry).await?;
    txn.commit().await?;
    handle.set(level).map_err(AppError::internal)?;
    Ok(level)
}

/// The stored level and when it was set (microseconds).
pub async fn stored_log_level(db: &DatabaseConnection) -> Result<Option<(LogLevel, i64)>, DbErr> {
    let Some((value, at)) = rows::get(db, LOG_LEVEL_KEY).await? else { return Ok(None) };
    Ok(LogLevel::parse(&value).map(|level| (level, at)))
}

/// Applies levels set through other replicas after this process started; at start-up
/// the command line and environment decide (an operator restarting with `-vvv` gets it).
pub fn spawn_poller(db: DatabaseConnection, handle: LogLevelHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut applied_up_to = now_micros();
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        loop {
            ticker.tick().await;
            match stored_log_level(&db).await {
                Ok(Some((level, at))) if at > applied_up_to => {
                    applied_up_to = at;
                    if level != handle.get() && handle.set(level).is_ok() {
                        tracing::warn!(event = "log_level_changed", level = level.as_str(), by = "another replica");
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(event = "settings_poll_failed", error = %err),
            }
        }
    })
}
