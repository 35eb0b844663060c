//! Runtime settings shared by every replica (`app_settings`): an admin's change is
//! stored, applied at once on the replica that took it, and picked up by the others
//! within [`POLL_INTERVAL`].

use std::{future::Future, pin::Pin, time::Duration};

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};

use crate::{config::LogLevel, storage::settings as rows, telemetry::LogLevelHandle, time::now_micros};

pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
const LOG_LEVEL_KEY: &str = "log_level";

/// Stores the log level, running `also` (the audit row) in the same transaction.
pub async fn store_log_level(
    db: &DatabaseConnection,
    level: LogLevel,
    also: impl FnOnce(&DatabaseTransaction) -> Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + '_>> + Send,
) -> Result<(), DbErr> {
    let txn = crate::storage::begin_write(db).await?;
    rows::put(&txn, LOG_LEVEL_KEY, level.as_str(), now_micros()).await?;
    also(&txn).await?;
    txn.commit().await
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
