//! The authenticated caller as an extractor: `principal: Principal` in a handler's
//! arguments makes the route require credentials; `AtLeastViewer`, `AtLeastMaintainer`
//! and `AdminOnly` also require a role before the body is read.

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};

use crate::{
    auth::{Principal, Role, X_API_KEY},
    error::AppError,
    http::context::AuditSlot,
    http::error::HttpError,
    service::identity::Credentials,
    state::AppState,
    tls::ClientCert,
};

impl FromRequestParts<AppState> for Principal {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // A header that is not text is kept as "", which no credential check accepts.
        let text = |name| parts.headers.get(name).map(|v: &header::HeaderValue| v.to_str().unwrap_or_default());
        let credentials = Credentials {
            api_key: text(X_API_KEY),
            authorization: text(header::AUTHORIZATION.as_str()),
            client_cert: parts.extensions.get::<Arc<ClientCert>>().map(|cert| &**cert),
        };
        let principal = state.identity.authenticate(credentials).await.map_err(AppError::from)?;
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.set_user(&principal.user_id);
        }
        Ok(principal)
    }
}

/// Extractors for a caller holding at least a role. They check it while the request's
/// head is read, before a body extractor after them parses the body: a caller without the
/// role gets 403, never a validation error describing a body it may not send.
macro_rules! at_least {
    ($($(#[$doc:meta])* $name:ident => $role:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = HttpError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                let principal = Principal::from_request_parts(parts, state).await?;
                principal.require_role($role)?;
                Ok($name(principal))
            }
        }
    )*};
}

at_least! {
    /// A viewer, maintainer or admin.
    AtLeastViewer => Role::Viewer;
    /// A maintainer or admin.
    AtLeastMaintainer => Role::Maintainer;
    /// An admin.
    AdminOnly => Role::Admin;
}
