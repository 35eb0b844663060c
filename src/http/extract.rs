//! Extractors whose rejections speak our error body instead of the framework's text.

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Request, rejection::BytesRejection, rejection::JsonRejection,
        rejection::QueryRejection,
    },
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{
    error::{AppError, NUL_IN_TEXT},
    http::error::HttpError,
};

/// `axum::Json`, with malformed JSON → 400, wrong content type → 415, too big → 413, a
/// body that stops arriving → 408, a string holding a NUL → 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(HttpError::UnsupportedMediaType("Expected Content-Type: application/json".to_owned()));
        }
        let Body(bytes) = Body::from_request(req, state).await?;
        refuse_nul(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or `application/<something>+json`, as `axum::Json` accepts.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn json_rejection(rejection: JsonRejection) -> HttpError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            HttpError::UnsupportedMediaType("Expected Content-Type: application/json".to_owned())
        }
        JsonRejection::JsonDataError(err) => {
            AppError::Invalid(format!("Invalid JSON body: {}", err.body_text())).into()
        }
        JsonRejection::JsonSyntaxError(err) => AppError::Invalid(format!("Malformed JSON: {}", err.body_text())).into(),
        JsonRejection::BytesRejection(err) => body_rejection(err),
        other => AppError::Invalid(format!("Unreadable request body: {}", other.body_text())).into(),
    }
}

/// The whole request body, with our error body when it cannot be read: too big → 413,
/// stopped arriving (the idle timeout) → 408, anything else → 400.
#[derive(Debug, Clone, Default)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(Body).map_err(body_rejection)
    }
}

fn body_rejection(err: BytesRejection) -> HttpError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::TooLarge("The request body is larger than the limit".to_owned()).into();
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return HttpError::RequestTimeout("The request body stopped arriving".to_owned());
        }
        cause = e.source();
    }
    AppError::Invalid(format!("Unreadable request body: {}", err.body_text())).into()
}

/// Refuses JSON text with a string holding U+0000 (JSON can only write it escaped,
/// `\u0000`): no database keeps it as text alike (PostgreSQL refuses it; SQLite's string
/// functions stop at it).
pub fn refuse_nul(json: &[u8]) -> Result<(), AppError> {
    let escaped = memchr::memmem::find_iter(json, b"\\u0000")
        .any(|at| json[..at].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0);
    if escaped { Err(AppError::Invalid(NUL_IN_TEXT.to_owned())) } else { Ok(()) }
}

/// `axum::extract::Query`, with a bad query string → 400 with our body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(err)) => {
                Err(AppError::Invalid(format!("Invalid query string: {}", err.body_text())).into())
            }
            Err(other) => Err(AppError::Invalid(format!("Invalid query string: {}", other.body_text())).into()),
        }
    }
}
