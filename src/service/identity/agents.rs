//! A user's credential in the forms agents and data sources send (`auth::agent`): an
//! API key or access token as `Bearer`, `X-API-Key` or a Basic password, and HTTP Basic
//! with the user's own password, which Grafana's data sources send on every request.

use std::{net::IpAddr, sync::Arc};

use super::{
    Identity, UserSnapshot,
    sessions::{INVALID_CREDENTIALS, PasswordCheck},
};
use crate::{
    auth::{AuthMethod, Principal, agent::AgentCredential, keys},
    error::AppError,
    service::identity::{AuthError, throttle},
    tls::ClientCert,
};

impl Identity {
    /// Authenticates a user's credential read from an agent's request. An ingest key is
    /// no user's: 403, as it may only ingest. With no credential header, the verified
    /// client certificate decides.
    pub async fn authenticate_agent(
        &self,
        credential: &AgentCredential,
        client_cert: Option<&ClientCert>,
        client: Option<IpAddr>,
    ) -> Result<Principal, AppError> {
        Ok(match credential {
            AgentCredential::IngestKey(_) => {
                return Err(AppError::Forbidden(
                    "An ingest key may only ingest; use a user's credential to read".to_owned(),
                ));
            }
            AgentCredential::Malformed => {
                return Err(AppError::Unauthorized("The credential is not in a form this endpoint reads".to_owned()));
            }
            AgentCredential::ApiKey(key) => self.authenticate_api_key(key).await?,
            AgentCredential::Bearer(token) => self.authenticate_bearer(token).await?,
            AgentCredential::Password { login, password } => {
                return self.authenticate_password(login, password, client).await;
            }
            AgentCredential::Absent => match client_cert {
                Some(cert) => self.authenticate_cert(cert).await?,
                None => return Err(AuthError::Missing.into()),
            },
        })
    }

    /// Authenticates a login (username or email) and password, as login checks them and
    /// under the same throttle, but without opening a session. A right pair is
    /// remembered for a minute (by digest, never in plain) while the user stays active
    /// and keeps that password, so a data source sending it on every request costs one
    /// password hash a minute, not one a request.
    pub async fn authenticate_password(
        &self,
        login: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, AppError> {
        let digest = keys::digest(&format!("password:{}\u{0}{password}", login.trim().to_lowercase()));
        if let Some((user_id, version)) = self.passwords_seen.get(digest.as_str())
            && let Some(user) = self.snapshot(&user_id).await?
            && user.active
            && user.token_version == version
        {
            return Ok(password_principal(&user));
        }
        match self.check_password(login, password, client).await? {
            PasswordCheck::Valid { user, throttled, .. } => {
                throttle::reset(&self.db, &throttled).await?;
                let snapshot = self.snapshot(&user.id).await?.filter(|u| u.active);
                let Some(snapshot) = snapshot else {
                    return Err(AppError::Unauthorized(INVALID_CREDENTIALS.to_owned()));
                };
                self.passwords_seen.insert(digest, (user.id.clone(), user.token_version));
                Ok(password_principal(&snapshot))
            }
            PasswordCheck::Blocked { retry_after_seconds, .. }
            | PasswordCheck::Wrong { retry_after_seconds: Some(retry_after_seconds), .. } => {
                Err(AppError::TooManyRequests { retry_after_seconds })
            }
            PasswordCheck::Wrong { retry_after_seconds: None, .. } => {
                Err(AppError::Unauthorized(INVALID_CREDENTIALS.to_owned()))
            }
        }
    }
}

fn password_principal(user: &Arc<UserSnapshot>) -> Principal {
    Principal {
        user_id: user.id.clone(),
        username: user.username.clone(),
        roles: user.roles.clone(),
        auth_method: AuthMethod::Password,
        key_roles: None,
        token: None,
    }
}
