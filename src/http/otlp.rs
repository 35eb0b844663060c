//! OTLP/HTTP: `POST /v1/logs` and `/v1/metrics` (also under `/otlp`, so an exporter's
//! base endpoint can be `http://host:5000/otlp`), bodies in protobuf or OTLP JSON, gzip
//! or not. Answers in the request's encoding: 200 with the `Export…ServiceResponse`
//! (`partial_success` when some items were refused), or an error status with a
//! `google.rpc.Status`, never the JSON error body of the rest of the API.

use std::borrow::Cow;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use prost::Message;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{
    budget,
    error::AppError,
    http::{
        error::{ErrorInfo, status_of},
        ingest_auth::ProtocolSource,
        plain_text::ProtocolBody,
    },
    protocol::{
        codec::{self, CodecError},
        otlp::{self, ExportLogsServiceResponse, ExportMetricsServiceResponse},
    },
    state::AppState,
};

/// The routes: logs and metrics, at the root and under `/otlp`.
pub const PATHS: [&str; 4] = ["/v1/logs", "/otlp/v1/logs", "/v1/metrics", "/otlp/v1/metrics"];

/// The OTLP routes; `router.rs` merges them into the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATHS[0], post(logs))
        .route(PATHS[1], post(logs))
        .route(PATHS[2], post(metrics))
        .route(PATHS[3], post(metrics))
}

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// How a request's body is written, and so its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Option<Encoding> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            PROTOBUF => Some(Encoding::Protobuf),
            JSON => Some(Encoding::Json),
            _ => None,
        }
    }
}

/// `google.rpc.Status`, the body of every OTLP error answer.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// An error answer: its HTTP status and message, rendered as a `Status` in `encoding`.
struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    /// Logged by the request middleware with the correlation id, never sent.
    internal_cause: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into(), retry_after: None, internal_cause: None }
    }

    fn render(self, encoding: Encoding) -> Response {
        let code = grpc_code(self.status);
        let mut response = match encoding {
            Encoding::Protobuf => {
                let body = RpcStatus { code, message: self.message, details: Vec::new() }.encode_to_vec();
                (self.status, [(header::CONTENT_TYPE, PROTOBUF)], body).into_response()
            }
            Encoding::Json => {
                let body = json!({ "code": code, "message": self.message, "details": [] }).to_string();
                (self.status, [(header::CONTENT_TYPE, JSON)], body).into_response()
            }
        };
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ProtocolBody);
        if self.internal_cause.is_some() {
            let info = ErrorInfo { message: String::new(), details: Vec::new(), internal_cause: self.internal_cause };
            response.extensions_mut().insert(info);
        }
        response
    }
}

impl From<AppError> for Refusal {
    fn from(err: AppError) -> Self {
        let status = status_of(&err);
        let retry_after = match &err {
            AppError::TooManyRequests { retry_after_seconds } => Some(*retry_after_seconds),
            _ => None,
        };
        let mut internal_cause = None;
        let message = match err {
            AppError::Validation(details) => {
                let fields: Vec<String> = details.iter().map(|d| format!("{}: {}", d.field, d.message)).collect();
                format!("The request is invalid: {}", fields.join("; "))
            }
            AppError::Internal(cause) => {
                internal_cause = Some(cause);
                "An internal error occurred".to_owned()
            }
            other => other.to_string(),
        };
        Refusal { status, message, retry_after, internal_cause }
    }
}

impl From<CodecError> for Refusal {
    fn from(err: CodecError) -> Self {
        match err {
            CodecError::TooLarge(message) => Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            CodecError::Malformed(message) => Refusal::new(StatusCode::BAD_REQUEST, message),
            CodecError::UnsupportedEncoding(encoding) => Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Unsupported Content-Encoding `{encoding}`: send gzip or none"),
            ),
        }
    }
}

/// `err` as an OTLP error answer in the request's encoding (JSON when it names neither),
/// for the layers that refuse a request before its handler.
pub fn refusal(headers: &HeaderMap, err: AppError) -> Response {
    Refusal::from(err).render(Encoding::of(headers).unwrap_or(Encoding::Json))
}

/// The gRPC code of an HTTP error status, the `code` of its `Status`.
fn grpc_code(status: StatusCode) -> i32 {
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => tonic::Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::REQUEST_TIMEOUT => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Internal,
    };
    code as i32
}

/// The body, decompressed (bounded by the body limit) and decoded as `T`.
fn decode<T: Message + Default + DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    encoding: Encoding,
    body: &[u8],
) -> Result<T, Refusal> {
    let content_encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let body = codec::decode_content(body, content_encoding, state.config.max_body_bytes)?;
    if let Cow::Owned(copy) = &body {
        budget::charge_copy(copy.len())?;
    }
    match encoding {
        Encoding::Protobuf => T::decode(&*body)
            .map_err(|err| Refusal::new(StatusCode::BAD_REQUEST, format!("Malformed protobuf body: {err}"))),
        Encoding::Json => otlp::from_json(&body)
            .map_err(|err| Refusal::new(StatusCode::BAD_REQUEST, format!("Malformed OTLP JSON body: {err}"))),
    }
}

/// What every export shares before the service: the encoding (415 for another), the
/// credential and source, the whole body (413 over the limit) and its decoding.
async fn read<T: Message + Default + DeserializeOwned>(
    state: &AppState,
    source: Result<ProtocolSource, AppError>,
    request: Request,
) -> Result<(Encoding, ProtocolSource, T), (Encoding, Refusal)> {
    let Some(encoding) = Encoding::of(request.headers()) else {
        let refusal = Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected Content-Type: application/x-protobuf or application/json",
        );
        return Err((Encoding::Json, refusal));
    };
    let source = source.map_err(|err| (encoding, Refusal::from(err)))?;
    let headers = request.headers().clone();
    let body = Bytes::from_request(request, state).await.map_err(|rejection| {
        let refusal = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "The request body is larger than the limit")
            }
            status => Refusal::new(status, format!("Unreadable request body: {}", rejection.body_text())),
        };
        (encoding, refusal)
    })?;
    let message = decode(state, &headers, encoding, &body).map_err(|refusal| (encoding, refusal))?;
    Ok((encoding, source, message))
}

fn answer<T: Message>(encoding: Encoding, message: &T, json: Value) -> Response {
    match encoding {
        Encoding::Protobuf => ([(header::CONTENT_TYPE, PROTOBUF)], message.encode_to_vec()).into_response(),
        Encoding::Json => ([(header::CONTENT_TYPE, JSON)], json.to_string()).into_response(),
    }
}

/// `POST /v1/logs`.
pub async fn logs(
    State(state): State<AppState>,
    source: Result<ProtocolSource, AppError>,
    request: Request,
) -> Response {
    let (encoding, ProtocolSource(source), export) = match read(&state, source, request).await {
        Ok(read) => read,
        Err((encoding, refusal)) => return refusal.render(encoding),
    };
    match otlp::export_logs(&state, &source, export).await {
        Ok(response) => answer(encoding, &response, logs_json(&response)),
        Err(err) => Refusal::from(err).render(encoding),
    }
}

/// `POST /v1/metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    source: Result<ProtocolSource, AppError>,
    request: Request,
) -> Response {
    let (encoding, ProtocolSource(source), export) = match read(&state, source, request).await {
        Ok(read) => read,
        Err((encoding, refusal)) => return refusal.render(encoding),
    };
    match otlp::export_metrics(&state, &source, export).await {
        Ok(response) => answer(encoding, &response, metrics_json(&response)),
        Err(err) => Refusal::from(err).render(encoding),
    }
}

/// OTLP JSON of a logs answer: 64-bit integers as strings, `{}` when all was stored.
fn logs_json(response: &ExportLogsServiceResponse) -> Value {
    match &response.partial_success {
        Some(p) => json!({ "partialSuccess": {
            "rejectedLogRecords": p.rejected_log_records.to_string(),
            "errorMessage": p.error_message,
        }}),
        None => json!({}),
    }
}

fn metrics_json(response: &ExportMetricsServiceResponse) -> Value {
    match &response.partial_success {
        Some(p) => json!({ "partialSuccess": {
            "rejectedDataPoints": p.rejected_data_points.to_string(),
            "errorMessage": p.error_message,
        }}),
        None => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_is_read_from_the_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(Encoding::of(&headers), None);
        for (value, expected) in [
            ("application/x-protobuf", Some(Encoding::Protobuf)),
            ("Application/JSON; charset=utf-8", Some(Encoding::Json)),
            ("text/plain", None),
            ("application/protobuf", None),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(Encoding::of(&headers), expected, "{value}");
        }
    }

    #[test]
    fn a_status_is_encoded_as_google_rpc_status() {
        let response = Refusal::new(StatusCode::BAD_REQUEST, "bad").render(Encoding::Protobuf);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROTOBUF);
        // code = 3 (field 1, varint), message = "bad" (field 2, length 3).
        let expected = RpcStatus { code: 3, message: "bad".into(), details: Vec::new() }.encode_to_vec();
        assert_eq!(expected, [0x08, 3, 0x12, 3, b'b', b'a', b'd']);
    }

    #[test]
    fn json_answers_write_64_bit_counts_as_strings() {
        let response = ExportLogsServiceResponse {
            partial_success: Some(otlp::ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "x".into(),
            }),
        };
        assert_eq!(logs_json(&response), json!({"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "x"}}));
        assert_eq!(metrics_json(&ExportMetricsServiceResponse { partial_success: None }), json!({}));
    }
}
