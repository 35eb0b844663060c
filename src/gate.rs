//! The router a port serves while the service starts: the listeners open at once, and a
//! stand-in answers (probes, and 503 for everything else) until the database has answered
//! and the real router takes over, without a restart.

use std::{
    convert::Infallible,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use axum::{Router, extract::Request, response::Response};
use tower::{Service, util::Oneshot};

/// A port's router: `starting` until [`Gate::open`] gives it the real one.
#[derive(Clone, Debug)]
pub struct Gate {
    ready: Arc<OnceLock<Router>>,
    starting: Router,
}

impl Gate {
    pub fn new(starting: Router) -> Self {
        Self { ready: Arc::default(), starting }
    }

    /// From now on, every request (on connections open or new) goes to `router`.
    pub fn open(&self, router: Router) {
        let _ = self.ready.set(router);
    }

    /// Whether [`Gate::open`] was called.
    pub fn is_open(&self) -> bool {
        self.ready.get().is_some()
    }

    /// The router to serve: passes each request to the real router once there is one.
    pub fn router(&self) -> Router {
        Router::new().fallback_service(self.clone())
    }
}

impl Service<Request> for Gate {
    type Response = Response;
    type Error = Infallible;
    type Future = Oneshot<Router, Request>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let router = self.ready.get().unwrap_or(&self.starting).clone();
        Oneshot::new(router, request)
    }
}
