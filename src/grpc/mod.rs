//! The gRPC API `killkrill.v1` (port 50051): the same service layer as REST
//! (`identity`, `data`), the same credentials, roles and audit, translated to gRPC.
//!
//! The services are served by our own accept loop (`server.rs`) like the HTTP port, so
//! TLS, client certificates and trusted proxies work the same on both. Every call passes
//! through [`observe::observe`]: correlation id, one JSON log line, `/metrics`.

mod auth;
pub mod convert;
mod logs;
mod metrics;
mod observe;
mod otlp;
mod sources;
mod status;

use std::{net::IpAddr, sync::Arc, time::Duration};

use tonic::{Code, Status, metadata::MetadataMap, service::Routes};

use crate::{
    auth::{Principal, X_API_KEY, agent::AgentCredential},
    error::AppError,
    http::context::{CorrelationId, RequestContext},
    service::{identity::Credentials, ingestor::Ingestor, sources::Source},
    state::AppState,
    tls::ClientCert,
};

/// The generated messages, servers and clients of `proto/killkrill/v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("killkrill.v1");

    /// The encoded descriptor set of our `.proto` files, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/killkrill_descriptor.bin"));
}

/// The largest message a call may send or receive (the REST body limit).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The names `grpc.health.v1.Health` answers for, besides the server as a whole ("").
const SERVICE_NAMES: [&str; 5] = [
    "killkrill.v1.AuthService",
    "killkrill.v1.SourceService",
    "killkrill.v1.LogService",
    "killkrill.v1.MetricService",
    "killkrill.v1.StatusService",
];

/// All gRPC services as one router, with the observing layer around them, and the task
/// that keeps the health service in step with the database.
pub fn router(state: AppState) -> (axum::Router, tokio::task::JoinHandle<()>) {
    use proto::{
        auth_service_server::AuthServiceServer, log_service_server::LogServiceServer,
        metric_service_server::MetricServiceServer, source_service_server::SourceServiceServer,
        status_service_server::StatusServiceServer,
    };
    macro_rules! limited {
        ($server:ident, $service:expr) => {
            $server::new($service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        };
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut routes = Routes::new(health)
        .add_service(limited!(AuthServiceServer, auth::AuthApi(state.clone())))
        .add_service(limited!(SourceServiceServer, sources::SourceApi(state.clone())))
        .add_service(limited!(LogServiceServer, logs::LogApi(state.clone())))
        .add_service(limited!(MetricServiceServer, metrics::MetricApi(state.clone())))
        .add_service(limited!(StatusServiceServer, status::StatusApi(state.clone())));
    let (otlp_logs, otlp_metrics) = otlp::servers(&state);
    routes = routes.add_service(otlp_logs).add_service(otlp_metrics);
    // v1, and v1alpha for the clients that still ask only that (older grpcurl, Python's
    // grpcio-reflection).
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => routes = routes.add_service(v1).add_service(v1alpha),
        (Err(err), _) | (_, Err(err)) => tracing::error!(event = "grpc_reflection_unavailable", error = %err),
    }
    let health_task = spawn_health_reporter(state.clone(), reporter);
    let router = routes
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::http::budget::admit_grpc))
        .layer(axum::middleware::from_fn_with_state(state, observe::observe));
    (router, health_task)
}

/// What the gRPC port answers until the database has answered at start-up:
/// `grpc.health.v1.Health` NOT_SERVING (for "" and each service), every other call
/// UNAVAILABLE.
pub async fn starting_router() -> axum::Router {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in std::iter::once("").chain(SERVICE_NAMES).chain(otlp::SERVICE_NAMES) {
        reporter.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
    }
    Routes::new(health).prepare().into_axum_router().fallback(starting)
}

async fn starting() -> axum::response::Response {
    let (parts, ()) = Status::unavailable(crate::http::health::STARTING).into_http::<()>().into_parts();
    axum::response::Response::from_parts(parts, axum::body::Body::empty())
}

/// Keeps `grpc.health.v1.Health` in step with the database's health (checked every
/// second by the health monitor): SERVING while it answers, NOT_SERVING while it does not.
fn spawn_health_reporter(
    state: AppState,
    reporter: tonic_health::server::HealthReporter,
) -> tokio::task::JoinHandle<()> {
    use tonic_health::ServingStatus;
    tokio::spawn(async move {
        let mut last = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            ticker.tick().await;
            let serving = state.db.health().is_ok();
            if last == Some(serving) {
                continue;
            }
            last = Some(serving);
            let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            for name in std::iter::once("").chain(SERVICE_NAMES).chain(otlp::SERVICE_NAMES) {
                reporter.set_service_status(name, status).await;
            }
        }
    })
}

/// What one call carries besides its message: correlation id, client address, audit
/// bookkeeping and credentials. Taken from the request before its message is consumed.
pub(crate) struct Call {
    pub ctx: RequestContext,
    api_key: Option<String>,
    authorization: Option<String>,
    /// `x-source`: the source a user's credential ingests into.
    named_source: Option<String>,
    cert: Option<Arc<ClientCert>>,
}

fn metadata_text(metadata: &MetadataMap, key: &str) -> Option<String> {
    // A value that is not text is kept as "", which no credential check accepts.
    metadata.get(key).map(|v| v.to_str().unwrap_or_default().to_owned())
}

impl Call {
    pub fn new<T>(request: &tonic::Request<T>) -> Self {
        let extensions = request.extensions();
        let ctx = RequestContext {
            correlation_id: extensions.get::<CorrelationId>().map_or_else(String::new, |id| id.as_str().to_owned()),
            client_ip: extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip()),
            audit: extensions.get::<crate::http::context::AuditSlot>().cloned().unwrap_or_default(),
        };
        Self {
            ctx,
            api_key: metadata_text(request.metadata(), X_API_KEY),
            authorization: metadata_text(request.metadata(), "authorization"),
            named_source: metadata_text(request.metadata(), crate::http::ingest_auth::X_SOURCE),
            cert: extensions.get::<Arc<ClientCert>>().cloned(),
        }
    }

    pub fn client_ip(&self) -> Option<IpAddr> {
        self.ctx.client_ip
    }

    /// The source ingest key (`kki_...`) in `x-api-key`, if that is what was sent.
    pub fn ingest_key(&self) -> Option<&str> {
        self.api_key.as_deref().map(str::trim).filter(|key| key.starts_with(crate::auth::keys::INGEST_KEY_PREFIX))
    }

    /// The source an agent's call ingests into (see `http::ingest_auth`): its credential
    /// in any of the forms agents send, and for a user's the `x-source` it names.
    pub async fn protocol_source(&self, state: &AppState) -> Result<Source, AppError> {
        let credential = AgentCredential::read(self.api_key.as_deref(), self.authorization.as_deref());
        let db = state.db.conn();
        let cert = self.cert.as_deref();
        let ingestor =
            Ingestor::of_agent(&state.identity, &state.ingest_keys, db, credential, cert, self.client_ip()).await?;
        if let Ingestor::User(principal) = &ingestor {
            self.ctx.audit.set_user(&principal.user_id);
        }
        ingestor.target(db, self.named_source.as_deref(), self.client_ip()).await
    }

    /// Authenticates the call's credentials exactly as REST does.
    pub async fn principal(&self, state: &AppState) -> Result<Principal, AppError> {
        let credentials = Credentials {
            api_key: self.api_key.as_deref(),
            authorization: self.authorization.as_deref(),
            client_cert: self.cert.as_deref(),
        };
        let principal = state.identity.authenticate(credentials).await?;
        self.ctx.audit.set_user(&principal.user_id);
        Ok(principal)
    }

    /// Turns the service layer's error into a gRPC status; internal causes are logged
    /// with the correlation id, never sent.
    pub fn status(&self, err: AppError) -> Status {
        let code = match &err {
            AppError::Invalid(_) | AppError::Validation(_) => Code::InvalidArgument,
            AppError::Unauthorized(_) => Code::Unauthenticated,
            AppError::Forbidden(_) => Code::PermissionDenied,
            AppError::NotFound(_) => Code::NotFound,
            AppError::Conflict(_) => Code::AlreadyExists,
            AppError::TooLarge(_) | AppError::TooManyRequests { .. } => Code::ResourceExhausted,
            AppError::Unavailable(_) => Code::Unavailable,
            AppError::Internal(_) => Code::Internal,
        };
        let message = match err {
            AppError::Validation(details) => {
                let fields: Vec<String> = details.iter().map(|d| format!("{}: {}", d.field, d.message)).collect();
                format!("The request is invalid: {}", fields.join("; "))
            }
            AppError::Internal(cause) => {
                tracing::error!(event = "internal_error", correlation_id = %self.ctx.correlation_id, error = %cause);
                format!("An internal error occurred (correlation id {})", self.ctx.correlation_id)
            }
            other => other.to_string(),
        };
        // The message travels in a header; an error quoting a huge input (an id of 100 KB)
        // would overflow the client's metadata limit and hide the status behind another.
        Status::new(code, truncated(message, 1024))
    }

    /// Runs a call's work and answers with its result or its error as a status.
    pub async fn answer<T>(
        &self,
        work: impl Future<Output = Result<T, AppError>>,
    ) -> Result<tonic::Response<T>, Status> {
        work.await.map(tonic::Response::new).map_err(|err| self.status(err))
    }
}

/// `limit` of a listing: 0 means the default, as an absent query parameter does over REST.
pub(crate) fn page(limit: u64, offset: u64) -> Result<crate::http::pagination::Page, AppError> {
    crate::http::pagination::page((limit != 0).then_some(limit), (offset != 0).then_some(offset))
}

/// `text` cut to at most `max` bytes, on a character boundary, marked with "…" when cut.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::truncated;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short".into(), 1024), "short");
        assert_eq!(truncated("abcdef".into(), 4), "abcd…");
        // "é" is two bytes: a cut inside it steps back before it.
        assert_eq!(truncated("aé".into(), 2), "a…");
    }
}
