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

/// Maps a unique-constraint violation to 409, anything else to the usual mapping.
pub fn conflict_or(err: DbErr, what: &str) -> AppError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AppError::Conflict(format!("{what} already exists")),
        _ => AppError::from(err),
    }
}
