//! The one error type of the HTTP layer and the one error body of docs/API.md.
//!
//! Handlers return [`AppError`]; it becomes a response carrying an [`ErrorInfo`]
//! extension and no body. The request middleware (`http::middleware`) renders every
//! error response, ours or the framework's, into the same JSON body, because only it
//! knows the request's correlation id.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
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
    #[error("{0}")]
    BadRequest(String),
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
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request (its body) did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
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

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) | AppError::Validation(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::error!(event = "database_unavailable", error = %err);
                AppError::Unavailable("The database is unavailable; try again shortly".to_owned())
            }
            // PostgreSQL refuses a NUL in text (character_not_in_repertoire): the input's
            // fault, wherever it came in (the HTTP layer refuses it before; gRPC may not).
            other if crate::db::sqlstate(&other).as_deref() == Some("22021") => {
                AppError::BadRequest(NUL_IN_TEXT.to_owned())
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// The message of a request whose text holds a NUL character.
pub const NUL_IN_TEXT: &str = "Text must not contain NUL (\\u0000) characters";

/// Attached to error responses; rendered into the body by the request middleware.
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    pub message: String,
    pub details: Vec<FieldError>,
    /// Logged with the correlation id, never sent.
    pub internal_cause: Option<String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = status.into_response();
        let info = match self {
            AppError::Validation(details) => {
                ErrorInfo { message: "The request is invalid; see details".to_owned(), details, internal_cause: None }
            }
            AppError::Internal(cause) => ErrorInfo {
                message: "An internal error occurred".to_owned(),
                details: Vec::new(),
                internal_cause: Some(cause),
            },
            AppError::TooManyRequests { retry_after_seconds } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
                ErrorInfo {
                    message: format!("Too many requests; retry after {retry_after_seconds} seconds"),
                    details: Vec::new(),
                    internal_cause: None,
                }
            }
            AppError::Unauthorized(message) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                ErrorInfo { message, details: Vec::new(), internal_cause: None }
            }
            AppError::BadRequest(message)
            | AppError::Forbidden(message)
            | AppError::NotFound(message)
            | AppError::Conflict(message)
            | AppError::PayloadTooLarge(message)
            | AppError::UnsupportedMediaType(message)
            | AppError::RequestTimeout(message)
            | AppError::Unavailable(message) => ErrorInfo { message, details: Vec::new(), internal_cause: None },
        };
        response.extensions_mut().insert(info);
        response
    }
}

/// The JSON error body of docs/API.md.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: &'a str,
    pub correlation_id: &'a str,
    pub status_code: u16,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    pub details: &'a [FieldError],
}

/// The message for an error response the framework produced (no [`ErrorInfo`]).
pub fn default_message(status: StatusCode, method: &str, path: &str) -> String {
    match status {
        StatusCode::NOT_FOUND => format!("Resource not found: {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("Method {method} is not allowed on {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is larger than the limit".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "The request took too long and was cancelled".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Expected Content-Type: application/json".to_owned(),
        StatusCode::INTERNAL_SERVER_ERROR => "An internal error occurred".to_owned(),
        other => other.canonical_reason().unwrap_or("Error").to_owned(),
    }
}
