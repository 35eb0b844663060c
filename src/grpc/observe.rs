//! What every gRPC call passes through: a correlation id (`x-correlation-id` metadata,
//! echoed), one JSON log line `grpc_request_completed`, the call counted in `/metrics` by
//! method and status code, and an audit row for a refused control-plane call, as the
//! audit policy (`audit::audits_refusal`) says.
//!
//! A gRPC status usually travels in the trailers, after the last message, so the call is
//! recorded when its response body ends (or is dropped, if the client went away).

use std::{
    collections::HashSet,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Response},
    middleware::Next,
};
use http_body::{Frame, SizeHint};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use prost::Message as _;
use tonic::Code;

use crate::{
    http::{
        context::AuditSlot,
        context::{CorrelationId, X_CORRELATION_ID, correlation_id},
    },
    metrics::UNMATCHED_ENDPOINT,
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus, Plane},
    state::AppState,
};

/// Calls that change state: their plane, and the resource type their audit rows name.
const STATE_CHANGING: [(&str, Plane, &str); 8] = [
    ("/killkrill.v1.SourceService/CreateSource", Plane::Control, "sources"),
    ("/killkrill.v1.SourceService/UpdateSource", Plane::Control, "sources"),
    ("/killkrill.v1.SourceService/DeleteSource", Plane::Control, "sources"),
    ("/killkrill.v1.AuthService/RefreshToken", Plane::Control, "auth"),
    ("/killkrill.v1.LogService/IngestLogs", Plane::Data, "logs"),
    ("/killkrill.v1.MetricService/IngestMetrics", Plane::Data, "metrics"),
    (super::otlp::METHODS[0], Plane::Data, "logs"),
    (super::otlp::METHODS[1], Plane::Data, "metrics"),
];

/// The paths of every method served (`/package.Service/Method`), from the descriptor sets
/// of our services, health and reflection.
static SERVED: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let sets = [
        super::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    // OTLP's services come without a descriptor set.
    let mut served: HashSet<String> = super::otlp::METHODS.iter().map(|m| (*m).to_owned()).collect();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { continue };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    served.insert(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    served
});

pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let id = correlation_id(&request);
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let audit = AuditSlot::default();
    request.extensions_mut().insert(audit.clone());
    let method: Arc<str> = Arc::from(request.uri().path());
    let client_ip =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string());

    let limit = deadline(request.headers(), state.config.request_timeout);
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let status = tonic::Status::deadline_exceeded(format!(
                "The call took longer than {} ms and was cancelled",
                limit.as_millis()
            ));
            let (parts, ()) = status.into_http::<()>().into_parts();
            Response::from_parts(parts, Body::empty())
        }
    };

    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(&id) {
        parts.headers.insert(X_CORRELATION_ID, value);
    }
    // A call refused before any message has its status in the headers ("trailers only").
    let code = remap_unreadable(&mut parts.headers);
    let served = SERVED.contains(&*method);
    if !served && code == Some(Code::Unimplemented) && !parts.headers.contains_key("grpc-message") {
        let shown: String = method.chars().take(256).collect();
        let message = format!("Unknown method {}", utf8_percent_encode(&shown, GRPC_MESSAGE));
        if let Ok(value) = HeaderValue::from_str(&message) {
            parts.headers.insert("grpc-message", value);
        }
    }
    let finish = Finish { state, method, served, correlation_id: id, client_ip, audit, started, code };
    Response::from_parts(parts, Body::new(ObservedBody { inner: body, finish: Some(finish) }))
}

/// How long a call may take: `REQUEST_TIMEOUT_SECONDS`, or the client's `grpc-timeout` if
/// shorter. The whole call is bounded, a client stream's messages included: every method
/// answers one message, which comes only once the work is done.
fn deadline(headers: &HeaderMap, request_timeout: Duration) -> Duration {
    headers
        .get("grpc-timeout")
        .and_then(|value| grpc_timeout(value.as_bytes()))
        .map_or(request_timeout, |asked| asked.min(request_timeout))
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn code_of(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|value| Code::from_bytes(value.as_bytes()))
}

/// What `grpc-message` percent-encodes besides non-ASCII: controls and `%` itself.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// How tonic's INTERNAL statuses for a request it could not read begin: a message that
/// does not decode, a frame cut short, a compression flag without an encoding, no message.
const UNREADABLE: [&str; 4] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "protocol error: ",
    "Missing request message",
];

/// The status of a call, with tonic's codes for a request it could not read changed to the
/// ones a caller can act on: a malformed message is an invalid argument (tonic says
/// INTERNAL, and a client error would look like a server fault), and one over the size
/// limit exhausts a resource (tonic says OUT_OF_RANGE; gRPC's status code table says
/// RESOURCE_EXHAUSTED). Those statuses are only ever tonic's: ours never carry its texts.
fn remap_unreadable(headers: &mut HeaderMap) -> Option<Code> {
    let code = code_of(headers)?;
    let message = || {
        let raw = headers.get("grpc-message").map_or(&[][..], HeaderValue::as_bytes);
        percent_encoding::percent_decode(raw).decode_utf8_lossy().into_owned()
    };
    let remapped = match code {
        Code::Internal if UNREADABLE.iter().any(|text| message().starts_with(text)) => Code::InvalidArgument,
        Code::OutOfRange if message().contains("decoded message length too large") => Code::ResourceExhausted,
        other => return Some(other),
    };
    headers.insert("grpc-status", HeaderValue::from(remapped as i32));
    Some(remapped)
}

/// The response body, passed through unchanged, watched for the trailers and the end.
struct ObservedBody {
    inner: Body,
    finish: Option<Finish>,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(finish)) = (frame.trailers_mut(), this.finish.as_mut()) {
                    finish.code = remap_unreadable(trailers).or(finish.code);
                }
            }
            Poll::Ready(None) => drop(this.finish.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Records the call when dropped: at the end of the response, or when it was abandoned.
struct Finish {
    state: AppState,
    method: Arc<str>,
    /// Whether `method` names a method served; the others share one label.
    served: bool,
    correlation_id: Arc<str>,
    client_ip: Option<String>,
    audit: AuditSlot,
    started: Instant,
    code: Option<Code>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        // No status at all: the client cancelled (or the connection broke) mid-call.
        let code = self.code.unwrap_or(Code::Cancelled);
        let name = code_name(code);
        let elapsed = self.started.elapsed().as_secs_f64();
        // A path that names no method is the caller's to choose: all such share one label,
        // so the label's values stay the methods served.
        let label = if self.served { &self.method } else { UNMATCHED_ENDPOINT };
        self.state.metrics.observe_grpc(label, name, elapsed);
        let client_ip = self.client_ip.as_deref().unwrap_or("unknown");
        macro_rules! log_call {
            ($level:ident) => {
                tracing::$level!(
                    event = "grpc_request_completed",
                    correlation_id = &*self.correlation_id,
                    method = &*self.method,
                    grpc_code = name,
                    duration_seconds = elapsed,
                    client_ip = client_ip,
                )
            };
        }
        match code {
            Code::Ok => log_call!(info),
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable => log_call!(error),
            _ => log_call!(warn),
        }
        let changes = STATE_CHANGING.iter().find(|(method, ..)| *method == &*self.method);
        let user_id = self.audit.user_id();
        if let Some((_, plane, resource_type)) = changes
            && !self.audit.handled()
            && audit::audits_refusal(Some(*plane), user_id.as_deref())
        {
            let meta = AuditMeta {
                user_id,
                client_ip: self.client_ip.clone(),
                correlation_id: self.correlation_id.to_string(),
            };
            let entry = AuditEntry::new(&format!("GRPC {}", self.method), resource_type, None, audit_status(code));
            let db = self.state.db.conn().clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(err) = audit::record(&db, &meta, entry).await {
                        tracing::error!(event = "audit_write_failed", correlation_id = %meta.correlation_id, error = %err);
                    }
                });
            }
        }
    }
}

fn audit_status(code: Code) -> AuditStatus {
    match code {
        Code::Ok => AuditStatus::Success,
        Code::Unauthenticated | Code::PermissionDenied | Code::ResourceExhausted => AuditStatus::Denied,
        _ => AuditStatus::Failure,
    }
}

/// The status code as gRPC spells it (`OK`, `INVALID_ARGUMENT`, ...), for labels and logs.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_and_bound_the_deadline() {
        assert_eq!(grpc_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        for bad in [&b""[..], b"S", b"5", b"123456789S", b"5x", b"-5S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
        let limit = Duration::from_secs(60);
        let mut headers = HeaderMap::new();
        assert_eq!(deadline(&headers, limit), limit);
        headers.insert("grpc-timeout", HeaderValue::from_static("2S"));
        assert_eq!(deadline(&headers, limit), Duration::from_secs(2));
        headers.insert("grpc-timeout", HeaderValue::from_static("2H"));
        assert_eq!(deadline(&headers, limit), limit, "the server's limit is the most");
    }
}
