//! The data the platform exists for: sources, their ingest keys, logs and metrics. HTTP
//! handlers (and the gRPC services) call these functions and only translate transport.

pub mod entity;
pub mod ingest_keys;
pub mod ingestor;
pub mod logs;
pub mod rollups;
pub mod samples;
pub mod sources;

use sea_orm::{DbErr, SqlErr};

use crate::error::AppError;

/// Maps a foreign-key violation of rows stored for `source_id` to 404: the source was
/// deleted while they were being stored (ingest checks it first, but does not hold it),
/// as if it had been gone before.
pub fn source_gone_or(err: DbErr, source_id: &str) -> AppError {
    match err.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => AppError::NotFound(format!("Source not found: {source_id}")),
        _ => AppError::from(err),
    }
}

/// Maps a unique-constraint violation to 409, anything else to the usual mapping.
pub fn conflict_or(err: DbErr, what: &str) -> AppError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AppError::Conflict(format!("{what} already exists")),
        _ => AppError::from(err),
    }
}
