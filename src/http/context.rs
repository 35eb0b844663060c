//! Per-request context handlers can extract: correlation id, client address, and the
//! audit bookkeeping shared with the request middleware.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};

use crate::{audit::AuditMeta, http::middleware::CorrelationId};

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
