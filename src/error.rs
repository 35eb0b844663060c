//! The services' error: what went wrong, in terms of the domain. Each transport maps it
//! to its own form in one place: HTTP in `http::error`, gRPC in `grpc::Call::status`.

use serde::Serialize;

/// One invalid field of a validation error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// What went wrong, in terms a client may see (and, for 5xx, a cause only logs see).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed or invalid input, in one message.
    #[error("{0}")]
    Invalid(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A batch or value over its limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("too many requests; retry after {retry_after_seconds}s")]
    TooManyRequests { retry_after_seconds: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// An unexpected failure: the cause is logged, the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        AppError::Internal(cause.to_string())
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        match err {
            err if crate::storage::connection_lost(&err) => {
                tracing::error!(event = "database_unavailable", error = %err);
                AppError::Unavailable("The database is unavailable; try again shortly".to_owned())
            }
            // A full disk passes when space is freed: the client should send again later.
            other if crate::storage::out_of_space(&other) => {
                tracing::error!(event = "database_out_of_space", error = %other);
                AppError::Unavailable("The database is out of disk space; try again later".to_owned())
            }
            // Another writer held SQLite's lock past the busy timeout: back-pressure.
            other if crate::storage::busy(&other) => {
                tracing::warn!(event = "database_busy", error = %other);
                AppError::Unavailable("The database is busy; try again shortly".to_owned())
            }
            // PostgreSQL refuses a NUL in text (character_not_in_repertoire): the input's
            // fault, wherever it came in (the HTTP layer refuses it before; gRPC may not).
            other if crate::storage::sqlstate(&other).as_deref() == Some("22021") => {
                AppError::Invalid(NUL_IN_TEXT.to_owned())
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// The message of a request whose text holds a NUL character.
pub const NUL_IN_TEXT: &str = "Text must not contain NUL (\\u0000) characters";
