//! Per-request context handlers can extract: correlation id, client address, and the
//! audit bookkeeping shared with the request middleware.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{HeaderName, request::Parts},
};
use uuid::Uuid;

use crate::service::audit::AuditMeta;

pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const MAX_CORRELATION_ID_LEN: usize = 128;

/// The request's correlation id, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct CorrelationId(pub Arc<str>);

impl CorrelationId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Uses the caller's id when it is sane (1–128 printable ASCII characters, the space
/// included), else a new UUID v4.
pub(crate) fn correlation_id(request: &Request) -> Arc<str> {
    request
        .headers()
        .get(&X_CORRELATION_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            // Printable ASCII: graphic characters and the space.
            !id.is_empty()
                && id.len() <= MAX_CORRELATION_ID_LEN
                && id.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        })
        .map_or_else(|| Arc::from(Uuid::new_v4().to_string()), Arc::from)
}

#[derive(Debug, Default)]
struct AuditState {
    user_id: Option<String>,
    handled: bool,
}

/// Shared between the middleware (which writes an audit row for every state-changing
/// request the handler did not audit itself) and the request's extractors and handler.
#[derive(Clone, Debug, Default)]
pub struct AuditSlot(Arc<Mutex<AuditState>>);

impl AuditSlot {
    /// Who the request authenticated as, for the audit row of a refused request.
    pub fn set_user(&self, user_id: &str) {
        if let Ok(mut state) = self.0.lock() {
            state.user_id = Some(user_id.to_owned());
        }
    }

    pub fn user_id(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.user_id.clone())
    }

    /// The handler wrote the request's audit row itself (in its own transaction).
    pub fn mark_handled(&self) {
        if let Ok(mut state) = self.0.lock() {
            state.handled = true;
        }
    }

    pub fn handled(&self) -> bool {
        self.0.lock().is_ok_and(|s| s.handled)
    }
}

/// Correlation id, client address and audit slot of the current request.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub correlation_id: String,
    pub client_ip: Option<IpAddr>,
    pub audit: AuditSlot,
}

impl RequestContext {
    /// Audit metadata for a row written on behalf of `user_id`.
    pub fn audit_meta(&self, user_id: Option<&str>) -> AuditMeta {
        AuditMeta {
            user_id: user_id.map(str::to_owned),
            client_ip: self.client_ip.map(|ip| ip.to_string()),
            correlation_id: self.correlation_id.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestContext {
            correlation_id: parts
                .extensions
                .get::<CorrelationId>()
                .map_or_else(String::new, |id| id.as_str().to_owned()),
            client_ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip()),
            audit: parts.extensions.get::<AuditSlot>().cloned().unwrap_or_default(),
        })
    }
}
