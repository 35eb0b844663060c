//! The request timeout, armed only for requests that have to wait.
//!
//! Most requests (probes, metrics, token checks served from memory) finish in the first
//! poll of their handler. Registering a timer for them and removing it right after costs
//! two visits to the runtime's timer wheel per request, a real share of a request as cheap
//! as `/healthz`.
//! This layer polls the request once first and arms the timer only if it is still
//! pending, with the deadline counted from when the request arrived: the limit is the
//! same as an eager timer's.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    http::{Request, Response, StatusCode},
};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// Answers with `status` (and an empty body, which the error middleware fills in) when a
/// request takes longer than `limit`.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer {
    limit: Duration,
    status: StatusCode,
}

impl RequestTimeoutLayer {
    pub fn new(limit: Duration, status: StatusCode) -> Self {
        Self { limit, status }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout { inner, limit: self.limit, status: self.status }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
    status: StatusCode,
}

impl<S, B> Service<Request<B>> for RequestTimeout<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            deadline: Instant::now() + self.limit,
            sleep: None,
            status: self.status,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        // Boxed: created for the few requests that wait, and it keeps this future small.
        sleep: Option<Pin<Box<Sleep>>>,
        status: StatusCode,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        let deadline = *this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = *this.status;
                Poll::Ready(Ok(response))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    fn service(
        delay: Duration,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send> {
        RequestTimeoutLayer::new(Duration::from_millis(100), StatusCode::REQUEST_TIMEOUT).layer(tower::service_fn(
            move |_: Request<Body>| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, Infallible>(Response::new(Body::from("done")))
            },
        ))
    }

    #[tokio::test]
    async fn a_request_that_finishes_at_once_or_in_time_gets_its_answer() {
        for delay in [Duration::ZERO, Duration::from_millis(10)] {
            let response = service(delay).oneshot(Request::new(Body::empty())).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "after {delay:?}");
        }
    }

    #[tokio::test]
    async fn a_request_that_waits_past_the_limit_gets_the_timeout_status_at_the_limit() {
        let started = Instant::now();
        let response = service(Duration::from_secs(60)).oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "answered before the limit: {waited:?}");
        assert!(waited < Duration::from_secs(30), "the timer never fired: {waited:?}");
    }
}
