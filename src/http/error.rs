//! The HTTP form of errors: the status of each [`AppError`], the errors only HTTP has
//! (a wrong content type, a body that stopped arriving), and the one JSON error body.
//!
//! Handlers return [`HttpError`]; it becomes a response carrying an [`ErrorInfo`]
//! extension and no body. The request middleware (`http::middleware`) renders every
//! error response, ours or the framework's, into the same JSON body, because only it
//! knows the request's correlation id.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::error::{AppError, FieldError};

/// What a handler or extractor answers when it fails.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    App(#[from] AppError),
    /// The body is not in a media type the route reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body stopped arriving (408).
    #[error("{0}")]
    RequestTimeout(String),
}

impl From<sea_orm::DbErr> for HttpError {
    fn from(err: sea_orm::DbErr) -> Self {
        HttpError::App(err.into())
    }
}

/// The HTTP status of a service error.
pub fn status_of(err: &AppError) -> StatusCode {
    match err {
        AppError::Invalid(_) | AppError::Validation(_) => StatusCode::BAD_REQUEST,
        AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = status_of(&self).into_response();
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
                ErrorInfo::message(format!("Too many requests; retry after {retry_after_seconds} seconds"))
            }
            AppError::Unauthorized(message) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                ErrorInfo::message(message)
            }
            AppError::Invalid(message)
            | AppError::Forbidden(message)
            | AppError::NotFound(message)
            | AppError::Conflict(message)
            | AppError::TooLarge(message)
            | AppError::Unavailable(message) => ErrorInfo::message(message),
        };
        response.extensions_mut().insert(info);
        response
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            HttpError::App(err) => return err.into_response(),
            HttpError::UnsupportedMediaType(message) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
            HttpError::RequestTimeout(message) => (StatusCode::REQUEST_TIMEOUT, message),
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(ErrorInfo::message(message));
        response
    }
}

/// Attached to error responses; rendered into the body by the request middleware.
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    pub message: String,
    pub details: Vec<FieldError>,
    /// Logged with the correlation id, never sent.
    pub internal_cause: Option<String>,
}

impl ErrorInfo {
    fn message(message: String) -> Self {
        ErrorInfo { message, details: Vec::new(), internal_cause: None }
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
