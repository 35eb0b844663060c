//! Extractors whose rejections speak our error body instead of the framework's text.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection, rejection::QueryRejection},
    http::request::Parts,
};
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// `axum::Json`, with malformed JSON → 400, wrong content type → 415, too big → 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            AppError::UnsupportedMediaType("Expected Content-Type: application/json".to_owned())
        }
        JsonRejection::JsonDataError(err) => AppError::BadRequest(format!("Invalid JSON body: {}", err.body_text())),
        JsonRejection::JsonSyntaxError(err) => AppError::BadRequest(format!("Malformed JSON: {}", err.body_text())),
        JsonRejection::BytesRejection(err) if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge("The request body is larger than the limit".to_owned())
        }
        other => AppError::BadRequest(format!("Unreadable request body: {}", other.body_text())),
    }
}

/// `axum::extract::Query`, with a bad query string → 400 with our body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(err)) => {
                Err(AppError::BadRequest(format!("Invalid query string: {}", err.body_text())))
            }
            Err(other) => Err(AppError::BadRequest(format!("Invalid query string: {}", other.body_text()))),
        }
    }
}
