//! Errors in plain text, the form remote_write and Loki push senders read (they log the
//! body of a refusal): the status of the error, its reason as the body.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    error::AppError,
    http::error::{ErrorInfo, HttpError, status_of},
};

/// Marks a response whose body is already in its protocol's form, so the request
/// middleware leaves it as it is instead of writing the JSON error body (it still logs
/// the internal cause of an [`ErrorInfo`] beside it, with the correlation id).
#[derive(Clone, Copy, Debug)]
pub struct ProtocolBody;

/// The plain-text answer to `err`; a validation error lists each field (named by
/// `rename`, which turns the service's field into the client's) with its problem.
pub fn error(err: HttpError, rename: impl Fn(&str) -> String) -> Response {
    let mut internal_cause = None;
    let (status, text, headers) = match err {
        HttpError::App(err) => {
            let status = status_of(&err);
            let mut headers = HeaderMap::new();
            let text = match err {
                AppError::Validation(details) => {
                    let problems: Vec<String> =
                        details.iter().map(|d| format!("{}: {}", rename(&d.field), d.message)).collect();
                    format!("invalid request: {}", problems.join("; "))
                }
                AppError::Internal(cause) => {
                    internal_cause = Some(cause);
                    "An internal error occurred".to_owned()
                }
                AppError::TooManyRequests { retry_after_seconds } => {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
                    format!("Too many requests; retry after {retry_after_seconds} seconds")
                }
                AppError::Unauthorized(message) => {
                    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    message
                }
                AppError::Invalid(message)
                | AppError::Forbidden(message)
                | AppError::NotFound(message)
                | AppError::Conflict(message)
                | AppError::TooLarge(message)
                | AppError::Unavailable(message) => message,
            };
            (status, text, headers)
        }
        HttpError::UnsupportedMediaType(message) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, message, HeaderMap::new()),
        HttpError::RequestTimeout(message) => (StatusCode::REQUEST_TIMEOUT, message, HeaderMap::new()),
    };
    let mut response =
        (status, headers, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text + "\n").into_response();
    response.extensions_mut().insert(ProtocolBody);
    if internal_cause.is_some() {
        let info = ErrorInfo { message: String::new(), details: Vec::new(), internal_cause };
        response.extensions_mut().insert(info);
    }
    response
}

/// The essence of the `Content-Type` (lower case, no parameters) and its parameters.
pub fn content_type(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().unwrap_or("?");
    let (essence, params) = value.split_once(';').unwrap_or((value, ""));
    Some((essence.trim().to_ascii_lowercase(), params.trim().to_ascii_lowercase()))
}

/// The `Content-Encoding`, lower case; `None` when absent or `identity`.
pub fn content_encoding(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(None) };
    let value = value
        .to_str()
        .map_err(|_| HttpError::UnsupportedMediaType("Content-Encoding is not readable".to_owned()))?
        .trim()
        .to_ascii_lowercase();
    Ok(Some(value).filter(|v| !v.is_empty() && v != "identity"))
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;
    use crate::error::FieldError;

    async fn text(response: Response) -> String {
        String::from_utf8(to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn plain_text_errors_name_fields_as_the_client_wrote_them() {
        let err = AppError::Validation(vec![FieldError::new("logs[3].message", "is required")]);
        let response = error(err.into(), |field| field.replace("logs[3]", "streams[1].entries[0]"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert!(response.extensions().get::<ProtocolBody>().is_some());
        assert_eq!(text(response).await, "invalid request: streams[1].entries[0].message: is required\n");
    }

    #[tokio::test]
    async fn plain_text_back_pressure_says_when_to_retry_and_internal_causes_stay_inside() {
        let response = error(AppError::TooManyRequests { retry_after_seconds: 7 }.into(), str::to_owned);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let response = error(AppError::Unavailable("The database is unavailable".into()).into(), str::to_owned);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = error(AppError::Internal("disk on fire".into()).into(), str::to_owned);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let cause = response.extensions().get::<ErrorInfo>().and_then(|info| info.internal_cause.clone());
        assert_eq!(cause.as_deref(), Some("disk on fire"));
        assert_eq!(text(response).await, "An internal error occurred\n");
        let response = error(HttpError::UnsupportedMediaType("no".into()), str::to_owned);
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
