//! Loki push: `POST /loki/api/v1/push`, a snappy-compressed (block format) protobuf
//! `PushRequest`, or its JSON form (`Content-Type: application/json`, gzip allowed); 204,
//! or the status of the refusal with its reason in plain text. A push is stored whole or
//! not at all.

use std::borrow::Cow;

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
    http::{error::HttpError, extract::Body, ingest_auth::ProtocolSource, plain_text, remote_write::codec_error},
    metrics::IngestKind,
    protocol::{codec, loki},
    service::logs,
    state::AppState,
};

pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// The Loki push route.
pub fn router() -> Router<AppState> {
    Router::new().route(PUSH_PATH, post(push))
}

async fn push(
    State(state): State<AppState>,
    source: Result<ProtocolSource, AppError>,
    headers: HeaderMap,
    body: Result<Body, HttpError>,
) -> Response {
    let mut read = None;
    let outcome = async {
        let ProtocolSource(source) = source?;
        let Body(body) = body?;
        let limit = state.config.max_body_bytes;
        // Loki's own rule: JSON when the content type says so, protobuf otherwise. A
        // protobuf body is snappy-compressed whatever `Content-Encoding` says; `snappy`
        // there is only a label of that.
        let json = plain_text::content_type(&headers).is_some_and(|(essence, _)| essence == "application/json");
        let encoding = plain_text::content_encoding(&headers)?.filter(|e| e != "snappy");
        let content = codec::decode_content(&body, encoding.as_deref(), limit).map_err(codec_error)?;
        if let Cow::Owned(copy) = &content {
            budget::charge_copy(copy.len())?;
        }
        let push = if json {
            loki::read_json(&content)
        } else {
            let decoded = codec::snappy_block(&content, limit).map_err(codec_error)?;
            budget::charge_copy(decoded.len())?;
            loki::read_protobuf(&decoded)
        }
        .map_err(AppError::Invalid)?;
        let items = push.logs.len();
        if items > logs::MAX_BATCH {
            state.metrics.observe_ingest(&source.id, IngestKind::Logs, items, false);
            return Err(HttpError::from(AppError::Invalid(format!(
                "a push holds at most {} entries, this one {items}: lower the client's batch size",
                logs::MAX_BATCH
            ))));
        }
        if items == 0 {
            return Ok(());
        }
        let push = read.insert(push);
        let lines = std::mem::take(&mut push.logs);
        logs::ingest(&state.db, &state.metrics, state.config.retention, &source, lines).await?;
        Ok::<(), HttpError>(())
    }
    .await;
    match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => {
            plain_text::error(err, |field| read.as_ref().map_or_else(|| field.to_owned(), |p| p.rename_field(field)))
        }
    }
}
