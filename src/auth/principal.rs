//! The authenticated caller, as an extractor: `principal: Principal` in a handler's
//! arguments makes the route require credentials; `principal.require_role(...)?` or
//! `principal.require_permission(...)?` then states what it needs, in one line.

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use serde::Serialize;

use super::{
    roles::{self, Permission, Role},
    token::Claims,
};
use crate::{
    error::AppError,
    http::context::AuditSlot,
    identity::{AuthError, Credentials},
    state::AppState,
    tls::ClientCert,
};

/// The header (and gRPC metadata key) of API keys and ingest keys.
pub const X_API_KEY: &str = "x-api-key";

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Jwt,
    ApiKey,
    Mtls,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Mtls => "mtls",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    /// Current roles from the database (narrowed for an API key).
    pub roles: Vec<Role>,
    pub auth_method: AuthMethod,
    /// The roles the API key it authenticated with is narrowed to, if it is.
    pub key_roles: Option<Vec<Role>>,
    /// The access token's claims when authenticated by JWT.
    pub token: Option<Arc<Claims>>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    pub fn permissions(&self) -> Vec<Permission> {
        roles::permissions_of(&self.roles)
    }

    /// Admits callers whose highest role is at least `minimum` (docs/API.md's "viewer+").
    pub fn require_role(&self, minimum: Role) -> Result<(), AppError> {
        if self.roles.iter().any(|r| *r >= minimum) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("This action requires the {} role", minimum.as_str())))
        }
    }

    /// The seed's `require_role('a', 'b')`: admits a caller holding any of `roles`.
    pub fn require_any_role(&self, roles: &[Role]) -> Result<(), AppError> {
        if self.roles.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(AppError::Forbidden(format!("This action requires one of the roles: {}", names.join(", "))))
        }
    }

    /// The seed's `require_permission('a', 'b')`: admits a caller holding any of them.
    pub fn require_permission(&self, permissions: &[Permission]) -> Result<(), AppError> {
        let held = self.permissions();
        if permissions.iter().any(|p| held.contains(p)) {
            Ok(())
        } else {
            let names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
            Err(AppError::Forbidden(format!("This action requires the permission: {}", names.join(" or "))))
        }
    }
}

impl From<AuthError> for AppError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Db(db) => AppError::from(db),
            other => AppError::Unauthorized(other.to_string()),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // A header that is not text is kept as "", which no credential check accepts.
        let text = |name| parts.headers.get(name).map(|v: &header::HeaderValue| v.to_str().unwrap_or_default());
        let credentials = Credentials {
            api_key: text(X_API_KEY),
            authorization: text(header::AUTHORIZATION.as_str()),
            client_cert: parts.extensions.get::<Arc<ClientCert>>().map(|cert| &**cert),
        };
        let principal = state.identity.authenticate(credentials).await?;
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
            type Rejection = AppError;

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
