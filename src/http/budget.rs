//! The in-flight body budget: request bodies held in memory at once (as received, and
//! their decompressed copies) may total at most `MAX_INFLIGHT_BODY_BYTES`. A body is
//! charged before it is buffered: by its `Content-Length` up front, or frame by frame as
//! a chunked body arrives; a decompressed copy when it is made. What cannot be charged is
//! refused at once with 503 and `Retry-After` in the protocol's own error form, never
//! queued: the bytes a waiting client keeps sending would sit in the kernel's buffers,
//! and a sender told to retry spreads its load over time. The charge is released when the
//! request has been answered, by which time its body and copies are freed.
//!
//! A body with a `Content-Length` over `MAX_BODY_BYTES` is refused 413 here too, before a
//! byte of it is read.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body::{Body as _, Frame, SizeHint};

use crate::{
    budget::{CHARGE, Charge, RETRY_AFTER_SECONDS, overloaded},
    error::AppError,
    http::{loki, otlp, plain_text, remote_write},
    state::AppState,
};

/// Routes that never touch the budget: the probes must answer whatever the load.
const PROBES: [&str; 3] = ["/healthz", "/livez", "/readyz"];

/// The layer (inside `middleware::observe`, so the refusals get their log line and
/// metrics) that charges every body to the budget.
pub async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let size = request.body().size_hint();
    if PROBES.contains(&path.as_str()) || size.upper() == Some(0) {
        return next.run(request).await;
    }
    let charge = Charge::new(state.body_budget.clone());
    let request = match size.exact() {
        Some(length) if length > state.config.max_body_bytes as u64 => {
            let err = AppError::TooLarge("The request body is larger than the limit".to_owned());
            return closing(refusal(&path, request.headers(), err));
        }
        Some(length) => match charge.take(length as usize) {
            Ok(()) => request,
            Err(err) => return overloaded_refusal(&path, request.headers(), err),
        },
        None => request.map(|body| Body::new(Charged { body, charge: charge.clone(), refuse: axum::Error::new })),
    };
    let headers = request.headers().clone();
    let response = CHARGE.scope(charge.clone(), next.run(request)).await;
    if charge.refused() {
        return overloaded_refusal(&path, &headers, overloaded());
    }
    response
}

fn overloaded_refusal(path: &str, headers: &HeaderMap, err: AppError) -> Response {
    let mut response = closing(refusal(path, headers, err));
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

/// Says that the connection closes after `response`: the body it refuses is left unread
/// (or partly read), so the connection cannot carry another request, and a client that
/// is not told may send its next one on it, to be lost. (HTTP/2 drops the header and
/// resets only the stream.)
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `err` in the form of the protocol served at `path`: OTLP's `Status` in the request's
/// encoding, plain text for remote_write and Loki push; the JSON error body otherwise,
/// which `middleware::observe` turns into Elasticsearch's or Prometheus' under their
/// paths.
fn refusal(path: &str, headers: &HeaderMap, err: AppError) -> Response {
    if otlp::PATHS.contains(&path) {
        otlp::refusal(headers, err)
    } else if [remote_write::WRITE_PATH, remote_write::PUSH_PATH, loki::PUSH_PATH].contains(&path) {
        plain_text::error(err.into(), str::to_owned)
    } else {
        err.into_response()
    }
}

/// The gRPC port's layer: every request's frames are charged as they arrive (a gRPC
/// request has no `Content-Length`); one that does not fit ends the call with
/// UNAVAILABLE, which the exporters retry. The health service never waits on it. A gzip
/// message's decompressed copy, made inside tonic, is bounded by its message limit only.
pub async fn admit_grpc(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/grpc.health.v1.Health/") {
        return next.run(request).await;
    }
    let charge = Charge::new(state.body_budget.clone());
    let refuse = |err: AppError| axum::Error::new(tonic::Status::unavailable(err.to_string()));
    let request = request.map(|body| Body::new(Charged { body, charge: charge.clone(), refuse }));
    next.run(request).await
}

/// A body charged frame by frame as it arrives; a frame that does not fit ends it with
/// the error `refuse` makes.
struct Charged {
    body: Body,
    charge: Charge,
    refuse: fn(AppError) -> axum::Error,
}

impl http_body::Body for Charged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Err(err) = self.charge.take(data.len())
        {
            return Poll::Ready(Some(Err((self.refuse)(err))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
