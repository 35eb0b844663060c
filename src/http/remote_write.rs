//! Prometheus remote_write 1.0: `POST /prometheus/api/v1/write`, and `POST /api/v1/push`
//! (the path Mimir users have configured). A snappy-compressed (block format)
//! `WriteRequest` in; 204, or the status of the refusal with its reason in plain text.
//! A request is stored whole or not at all.

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};

use crate::{
    budget,
    error::AppError,
    http::{error::HttpError, extract::Body, ingest_auth::ProtocolSource, plain_text},
    metrics::IngestKind,
    protocol::{codec, remote_write},
    service::samples,
    state::AppState,
};

pub const WRITE_PATH: &str = "/prometheus/api/v1/write";
pub const PUSH_PATH: &str = "/api/v1/push";

/// The remote_write routes.
pub fn router() -> Router<AppState> {
    Router::new().route(WRITE_PATH, post(write)).route(PUSH_PATH, post(write))
}

async fn write(
    State(state): State<AppState>,
    source: Result<ProtocolSource, AppError>,
    headers: HeaderMap,
    body: Result<Body, HttpError>,
) -> Response {
    let mut batch = None;
    let outcome = async {
        let ProtocolSource(source) = source?;
        check_headers(&headers)?;
        let Body(body) = body?;
        let decoded = codec::snappy_block(&body, state.config.max_body_bytes).map_err(codec_error)?;
        budget::charge_copy(decoded.len())?;
        let request = remote_write::decode(&decoded).map_err(AppError::Invalid)?;
        let items = request.timeseries.iter().map(|s| s.samples.len()).sum();
        let read = remote_write::read(request).map_err(|reason| {
            state.metrics.observe_ingest(&source.id, IngestKind::Samples, items, false);
            AppError::Invalid(reason)
        })?;
        if read.samples.len() > samples::MAX_BATCH {
            state.metrics.observe_ingest(&source.id, IngestKind::Samples, items, false);
            return Err(HttpError::from(AppError::Invalid(format!(
                "a write request holds at most {} samples, this one {items}: lower queue_config.max_samples_per_send",
                samples::MAX_BATCH
            ))));
        }
        if read.samples.is_empty() && read.metadata.is_empty() {
            return Ok(());
        }
        let batch = batch.insert(read);
        let samples = std::mem::take(&mut batch.samples);
        let metadata = std::mem::take(&mut batch.metadata);
        samples::ingest(&state.db, &state.metrics, state.config.retention, &source, samples, metadata).await?;
        Ok::<(), HttpError>(())
    }
    .await;
    match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => {
            plain_text::error(err, |field| batch.as_ref().map_or_else(|| field.to_owned(), |b| b.rename_field(field)))
        }
    }
}

/// remote_write 1.0 is protobuf compressed with snappy; 2.0's content type is refused
/// with 415, which tells a 2.0 sender to fall back to 1.0.
fn check_headers(headers: &HeaderMap) -> Result<(), HttpError> {
    if let Some((essence, params)) = plain_text::content_type(headers) {
        if params.contains("proto=") && !params.contains("proto=prometheus.writerequest") {
            return Err(HttpError::UnsupportedMediaType(
                "Only remote_write 1.0 (prometheus.WriteRequest) is supported".to_owned(),
            ));
        }
        if essence != "application/x-protobuf" {
            return Err(HttpError::UnsupportedMediaType("Expected Content-Type: application/x-protobuf".to_owned()));
        }
    }
    match plain_text::content_encoding(headers)?.as_deref() {
        None | Some("snappy") => Ok(()),
        Some(other) => {
            Err(HttpError::UnsupportedMediaType(format!("Content-Encoding {other} is not supported: expected snappy")))
        }
    }
}

/// A body that would not decode: 413 over the limit, 415 for an encoding not read
/// here, else 400.
pub fn codec_error(err: codec::CodecError) -> HttpError {
    match err {
        codec::CodecError::TooLarge(message) => AppError::TooLarge(message).into(),
        codec::CodecError::Malformed(message) => AppError::Invalid(message).into(),
        err @ codec::CodecError::UnsupportedEncoding(_) => HttpError::UnsupportedMediaType(err.to_string()),
    }
}
