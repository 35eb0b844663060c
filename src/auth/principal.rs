//! The authenticated caller: who it is, its roles, and how it authenticated.
//! `principal.require_role(...)?` or `principal.require_permission(...)?` states what an
//! operation needs, in one line. The HTTP extractors are in `http::principal`.

use std::sync::Arc;

use serde::Serialize;

use super::{
    roles::{self, Permission, Role},
    token::Claims,
};
use crate::error::AppError;

/// The header (and gRPC metadata key) of API keys and ingest keys.
pub const X_API_KEY: &str = "x-api-key";

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Jwt,
    ApiKey,
    Mtls,
    /// HTTP Basic with the user's password (the data-source forms of the Prometheus API).
    Password,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Password => "password",
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

    /// Admits a caller holding any of `roles`.
    pub fn require_any_role(&self, roles: &[Role]) -> Result<(), AppError> {
        if self.roles.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(AppError::Forbidden(format!("This action requires one of the roles: {}", names.join(", "))))
        }
    }

    /// Admits a caller holding any of `permissions`.
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
