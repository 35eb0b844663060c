//! The source an agent's request ingests into, read from the credential forms agents
//! send (see `auth::agent`) and, for a user's credential, the `X-Source` header or the
//! `source` query parameter. The protocol endpoints take it as
//! `Result<ProtocolSource, AppError>` and answer a refusal in their protocol's own form.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, header, request::Parts},
};

use crate::{
    auth::{X_API_KEY, agent::AgentCredential},
    error::AppError,
    http::context::AuditSlot,
    service::{ingestor::Ingestor, sources::Source},
    state::AppState,
    tls::ClientCert,
};

/// The header naming the source a user's credential ingests into.
pub const X_SOURCE: &str = "x-source";

/// The source a protocol request may ingest into.
pub struct ProtocolSource(pub Source);

impl FromRequestParts<AppState> for ProtocolSource {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let credential = agent_credential(&parts.headers);
        let cert = parts.extensions.get::<Arc<ClientCert>>().map(|cert| &**cert);
        let db = state.db.conn();
        let client_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let ingestor = Ingestor::of_agent(&state.identity, &state.ingest_keys, db, credential, cert, client_ip).await?;
        if let (Ingestor::User(principal), Some(slot)) = (&ingestor, parts.extensions.get::<AuditSlot>()) {
            slot.set_user(&principal.user_id);
        }
        let named = named_source(parts);
        Ok(ProtocolSource(ingestor.target(db, named.as_deref(), client_ip).await?))
    }
}

/// The credential of an agent's request, from `X-API-Key` or `Authorization`.
pub fn agent_credential(headers: &HeaderMap) -> AgentCredential {
    // A header that is not text is kept as "", which no credential check accepts.
    let text = |name| headers.get(name).map(|v: &header::HeaderValue| v.to_str().unwrap_or_default());
    AgentCredential::read(text(X_API_KEY), text(header::AUTHORIZATION.as_str()))
}

/// The source a request names: `X-Source`, else the `source` query parameter.
fn named_source(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(X_SOURCE) {
        return Some(value.to_str().unwrap_or_default().to_owned());
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "source").map(|(_, value)| value.into_owned())
}
