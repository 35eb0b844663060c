//! Identity: users, sessions (tokens), API keys, and authenticating a request's
//! credentials into a [`Principal`]. The HTTP handlers (and later gRPC) call these
//! service functions; they only translate their transport.

pub mod admin;
mod agents;
pub mod api_keys;
mod cache;
pub mod sessions;
pub mod throttle;
mod view;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sea_orm::{DatabaseConnection, DbErr};

use self::cache::TtlCache;
pub use self::view::UserView;
use crate::{
    auth::{
        AuthMethod, Principal,
        keys::{self, API_KEY_PREFIX},
        password::Passwords,
        roles::{self, Role},
        token::{Claims, TokenSigner, TokenType},
    },
    config::Config,
    error::AppError,
    storage::{api_keys as key_rows, sessions as session_rows, users},
    time::{now_micros, now_seconds},
    tls::ClientCert,
};

/// How long a user's or key's database state is trusted before being read again.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a checked access token's claims are reused without checking the signature
/// again, and how many tokens are kept (~0.5 KB each, so ~2 MB at most). A token's claims
/// never change; what can change (revocation, the user's state) is not cached here.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(60);
const VERIFIED_TOKEN_ENTRIES: usize = 4_096;
/// `last_used_at` of an API key is written at most this often.
const KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Refresh tokens live this long.
pub const REFRESH_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// The credentials a request carries, whatever its transport (HTTP headers or gRPC
/// metadata, and the connection's verified client certificate).
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    pub api_key: Option<&'a str>,
    /// The whole `Authorization` value (`Bearer ...`).
    pub authorization: Option<&'a str>,
    pub client_cert: Option<&'a ClientCert>,
}

/// What the database says about a user, as authentication needs it.
#[derive(Clone, Debug)]
pub struct UserSnapshot {
    pub id: String,
    pub username: String,
    pub active: bool,
    pub token_version: i32,
    pub roles: Vec<Role>,
    /// Revoked token ids and session ids of this user that have not expired yet.
    pub revoked: HashSet<String>,
}

#[derive(Clone, Debug)]
struct KeySnapshot {
    id: String,
    user_id: String,
    roles: Option<Vec<Role>>,
    expires_at: Option<i64>,
}

/// Why credentials were refused. The client sees one message per kind, nothing more.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Authentication required")]
    Missing,
    #[error("Invalid or expired token")]
    InvalidToken,
    #[error("Invalid API key")]
    InvalidApiKey,
    #[error("The client certificate does not identify an active user")]
    UnknownCertificate,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Every transport answers refused credentials alike (HTTP 401, gRPC UNAUTHENTICATED).
impl From<AuthError> for AppError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Db(db) => AppError::from(db),
            other => AppError::Unauthorized(other.to_string()),
        }
    }
}

/// The identity service, shared by every request.
pub struct Identity {
    pub db: DatabaseConnection,
    pub passwords: Passwords,
    pub tokens: TokenSigner,
    pub access_ttl_seconds: i64,
    pub api_key_max_days: u32,
    users: TtlCache<String, Arc<UserSnapshot>>,
    /// Access tokens whose signature, algorithm and type were checked → their claims.
    /// Only exact byte-for-byte repeats hit it; expiry is checked on every use, and
    /// revocation, deactivation and token versions are checked against the user
    /// snapshot on every use, as for a freshly verified token.
    verified_tokens: TtlCache<String, Arc<Claims>>,
    keys: TtlCache<String, Arc<KeySnapshot>>,
    key_touches: Mutex<HashMap<String, Instant>>,
    /// Client-certificate fingerprint → the user it names (`None`: nobody).
    certs: TtlCache<String, Option<String>>,
    /// Digest of a login and password checked right → the user and its token version
    /// then (a password change bumps the version, which retires the entry).
    passwords_seen: TtlCache<String, (String, i32)>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity { .. }")
    }
}

impl Identity {
    pub fn new(db: DatabaseConnection, config: &Config) -> Self {
        Self {
            db,
            passwords: Passwords::new(config.security_password_salt.clone()),
            tokens: TokenSigner::new(config.jwt_secret.clone(), config.jwt_secret_previous.clone()),
            access_ttl_seconds: i64::from(config.jwt_expiry_hours) * 3600,
            api_key_max_days: config.api_key_max_days,
            users: TtlCache::new(CACHE_TTL),
            verified_tokens: TtlCache::bounded(VERIFIED_TOKEN_TTL, VERIFIED_TOKEN_ENTRIES),
            keys: TtlCache::new(CACHE_TTL),
            key_touches: Mutex::new(HashMap::new()),
            certs: TtlCache::new(CACHE_TTL),
            passwords_seen: TtlCache::bounded(VERIFIED_TOKEN_TTL, VERIFIED_TOKEN_ENTRIES),
        }
    }

    /// The user's current state, from cache or database; `None` if the user is gone.
    pub async fn snapshot(&self, user_id: &str) -> Result<Option<Arc<UserSnapshot>>, DbErr> {
        if let Some(found) = self.users.get(user_id) {
            return Ok(Some(found));
        }
        let Some(user) = users::find_by_id(&self.db, user_id).await? else {
            return Ok(None);
        };
        let roles = users::roles_of(&self.db, user_id).await?;
        let revoked = session_rows::revoked_of(&self.db, user_id, now_micros()).await?;
        let snapshot = Arc::new(UserSnapshot {
            id: user.id,
            username: user.username,
            active: user.active,
            token_version: user.token_version,
            roles,
            revoked,
        });
        self.users.insert(user_id.to_owned(), snapshot.clone());
        Ok(Some(snapshot))
    }

    /// Forgets what this replica cached about a user (after any change to it).
    pub fn invalidate_user(&self, user_id: &str) {
        self.users.remove(&user_id.to_owned());
        self.keys.retain(|_, key| key.user_id != user_id);
    }

    /// Forgets a deleted API key at once.
    pub fn invalidate_key(&self, key_id: &str) {
        self.keys.retain(|_, key| key.id != key_id);
    }

    /// Authenticates a request's credentials: an API key, else a bearer token, else a
    /// verified client certificate. The first one present decides; a bad one is refused
    /// even when another would pass.
    pub async fn authenticate(&self, credentials: Credentials<'_>) -> Result<Principal, AuthError> {
        if let Some(key) = credentials.api_key {
            return self.authenticate_api_key(key.trim()).await;
        }
        if let Some(value) = credentials.authorization {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or(AuthError::InvalidToken)?;
            return self.authenticate_bearer(token.trim()).await;
        }
        match credentials.client_cert {
            Some(cert) => self.authenticate_cert(cert).await,
            None => Err(AuthError::Missing),
        }
    }

    /// Authenticates a verified client certificate as the active user whose username or
    /// email equals its subject CN, or whose email equals one of its SAN emails.
    pub async fn authenticate_cert(&self, cert: &ClientCert) -> Result<Principal, AuthError> {
        let user_id = match self.certs.get(cert.fingerprint.as_str()) {
            Some(found) => found,
            None => {
                let mut found = None;
                for name in cert.names() {
                    if let Some(user) = users::find_by_login(&self.db, name).await?.filter(|u| u.active) {
                        found = Some(user.id);
                        break;
                    }
                }
                self.certs.insert(cert.fingerprint.clone(), found.clone());
                found
            }
        };
        let user = match user_id {
            Some(user_id) => self.snapshot(&user_id).await?.filter(|u| u.active),
            None => None,
        };
        let Some(user) = user else {
            // Verified against the CA, but naming nobody who may sign in.
            tracing::warn!(
                event = "client_cert_rejected",
                reason = "no active user has the certificate's subject CN or SAN email",
                fingerprint = %cert.fingerprint,
            );
            return Err(AuthError::UnknownCertificate);
        };
        Ok(Principal {
            user_id: user.id.clone(),
            username: user.username.clone(),
            roles: user.roles.clone(),
            auth_method: AuthMethod::Mtls,
            key_roles: None,
            token: None,
        })
    }

    /// Authenticates an `Authorization: Bearer` access token.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        let now = now_seconds();
        let claims = match self.verified_tokens.get(token) {
            Some(claims) if claims.exp > now => claims,
            Some(_) => return Err(AuthError::InvalidToken),
            None => {
                let claims = self.tokens.verify(token, TokenType::Access, now).map_err(|_| AuthError::InvalidToken)?;
                let claims = Arc::new(claims);
                self.verified_tokens.insert(token.to_owned(), claims.clone());
                claims
            }
        };
        let user = self.snapshot(&claims.sub).await?.ok_or(AuthError::InvalidToken)?;
        let revoked = user.revoked.contains(&claims.jti) || user.revoked.contains(&claims.sid);
        if !user.active || user.token_version != claims.ver || revoked {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal {
            user_id: user.id.clone(),
            username: user.username.clone(),
            // The database's roles, not the token's: a demotion takes effect at once.
            roles: user.roles.clone(),
            auth_method: AuthMethod::Jwt,
            key_roles: None,
            token: Some(claims),
        })
    }

    /// Authenticates an `X-API-Key`.
    pub async fn authenticate_api_key(&self, key: &str) -> Result<Principal, AuthError> {
        if !key.starts_with(API_KEY_PREFIX) || key.len() > 128 {
            return Err(AuthError::InvalidApiKey);
        }
        let digest = keys::digest(key);
        let found = match self.keys.get(digest.as_str()) {
            Some(found) => found,
            None => {
                let row = key_rows::find_by_hash(&self.db, &digest).await?.ok_or(AuthError::InvalidApiKey)?;
                let snapshot = Arc::new(KeySnapshot {
                    id: row.id,
                    user_id: row.user_id,
                    roles: row.roles.as_deref().map(api_keys::parse_roles),
                    expires_at: row.expires_at,
                });
                self.keys.insert(digest, snapshot.clone());
                snapshot
            }
        };
        if found.expires_at.is_some_and(|at| at <= now_micros()) {
            return Err(AuthError::InvalidApiKey);
        }
        let user = self.snapshot(&found.user_id).await?.ok_or(AuthError::InvalidApiKey)?;
        if !user.active {
            return Err(AuthError::InvalidApiKey);
        }
        self.touch_key(&found.id);
        Ok(Principal {
            user_id: user.id.clone(),
            username: user.username.clone(),
            roles: roles::narrow(&user.roles, found.roles.as_deref()),
            auth_method: AuthMethod::ApiKey,
            key_roles: found.roles.clone(),
            token: None,
        })
    }

    /// Records `last_used_at` at most once a minute per key, off the request path.
    fn touch_key(&self, key_id: &str) {
        let now = Instant::now();
        let Ok(mut touches) = self.key_touches.lock() else {
            return;
        };
        if touches.get(key_id).is_some_and(|at| now.duration_since(*at) < KEY_TOUCH_INTERVAL) {
            return;
        }
        if touches.len() > 50_000 {
            touches.retain(|_, at| now.duration_since(*at) < KEY_TOUCH_INTERVAL);
        }
        touches.insert(key_id.to_owned(), now);
        let db = self.db.clone();
        let key_id = key_id.to_owned();
        tokio::spawn(async move {
            if let Err(err) = key_rows::touch(&db, &key_id, now_micros()).await {
                tracing::warn!(event = "api_key_touch_failed", error = %err);
            }
        });
    }

    /// Deletes expired revocations, refresh tokens and login failures; keeps the tables
    /// small.
    pub async fn prune_expired(&self) -> Result<(), DbErr> {
        let now = now_micros();
        session_rows::prune(&self.db, now).await?;
        throttle::prune(&self.db, now).await?;
        Ok(())
    }
}
