//! Sessions: login, token issue and rotation, logout and password changes.
//!
//! A login opens a session (`sid`), which is the family of its refresh tokens. Each refresh
//! rotates the refresh token; presenting a rotated (revoked) one again revokes the whole
//! family. Logout revokes the presented access token and the session, so every token of
//! that login stops working on every replica (revocations are rows in the database).

use std::net::IpAddr;

use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;

use super::{Identity, REFRESH_TTL_SECONDS, throttle};
use crate::{
    auth::{
        password::{Verification, check_policy},
        roles::{self, Role},
        token::{Claims, TokenType},
    },
    error::AppError,
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus},
    storage::{
        entity::user,
        sessions,
        users::{self, UserChange},
    },
    time::{now_micros, now_seconds},
};

/// What login, refresh and change-password answer (docs/API.md's token response).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub user: SessionUser,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub roles: Vec<&'static str>,
    pub permissions: Vec<&'static str>,
}

pub(super) const INVALID_CREDENTIALS: &str = "Invalid username or password";

/// What checking a login name and password found.
pub(super) enum PasswordCheck {
    /// The password is that of `user`, who is active; `throttled` names the account's
    /// throttle row, to reset.
    Valid { user: Box<user::Model>, needs_rehash: bool, throttled: String },
    /// The account or client is blocked: nothing was checked.
    Blocked { user_id: Option<String>, retry_after_seconds: u64 },
    /// Unknown login, wrong password or inactive user; `Some` when that started a block.
    Wrong { user_id: Option<String>, retry_after_seconds: Option<u64> },
}

fn micros(seconds: i64) -> i64 {
    seconds.saturating_mul(1_000_000)
}

impl Identity {
    /// Signs an access and a refresh token for `user` in session `sid`, storing the
    /// refresh token so it can be rotated and revoked.
    async fn issue(
        &self,
        conn: &impl ConnectionTrait,
        user: &user::Model,
        roles: &[Role],
        sid: &str,
    ) -> Result<TokenResponse, AppError> {
        let now = now_seconds();
        let claims = |token_type: TokenType, ttl: i64| Claims {
            sub: user.id.clone(),
            username: user.username.clone(),
            roles: roles::names(roles).into_iter().map(str::to_owned).collect(),
            permissions: roles::permission_names(roles).into_iter().map(str::to_owned).collect(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: now + ttl,
            token_type,
            ver: user.token_version,
            sid: sid.to_owned(),
        };
        let access = claims(TokenType::Access, self.access_ttl_seconds);
        let refresh = claims(TokenType::Refresh, REFRESH_TTL_SECONDS);
        sessions::insert_refresh_token(conn, &refresh.jti, &user.id, sid, micros(refresh.exp)).await?;
        Ok(TokenResponse {
            access_token: self.tokens.sign(&access).map_err(AppError::internal)?,
            token_type: "Bearer",
            expires_in: self.access_ttl_seconds,
            refresh_token: self.tokens.sign(&refresh).map_err(AppError::internal)?,
            user: SessionUser {
                id: user.id.clone(),
                username: user.username.clone(),
                email: user.email.clone(),
                roles: roles::names(roles),
                permissions: roles::permission_names(roles),
            },
        })
    }

    /// Checks a login; unknown user, wrong password and inactive user all answer the same
    /// 401 after the same work. Throttled accounts and clients get 429.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        meta: &AuditMeta,
        client: Option<IpAddr>,
    ) -> Result<TokenResponse, AppError> {
        let account = login.trim().to_lowercase();
        let (user, needs_rehash, throttled) = match self.check_password(login, password, client).await? {
            PasswordCheck::Valid { user, needs_rehash, throttled } => (*user, needs_rehash, throttled),
            PasswordCheck::Blocked { user_id, retry_after_seconds } => {
                self.audit_login(meta, user_id, &account, AuditStatus::Denied).await?;
                return Err(AppError::TooManyRequests { retry_after_seconds });
            }
            PasswordCheck::Wrong { user_id, retry_after_seconds } => {
                self.audit_login(meta, user_id, &account, AuditStatus::Failure).await?;
                return Err(match retry_after_seconds {
                    Some(retry_after_seconds) => AppError::TooManyRequests { retry_after_seconds },
                    None => AppError::Unauthorized(INVALID_CREDENTIALS.to_owned()),
                });
            }
        };
        let new_hash =
            if needs_rehash { Some(self.passwords.hash(password).await.map_err(AppError::internal)?) } else { None };
        let txn = crate::storage::begin_write(&self.db).await?;
        let user = users::record_login(&txn, &user, now_micros(), meta.client_ip.clone(), new_hash).await?;
        throttle::reset(&txn, &throttled).await?;
        let roles = users::roles_of(&txn, &user.id).await?;
        let response = self.issue(&txn, &user, &roles, &uuid::Uuid::new_v4().to_string()).await?;
        let meta = AuditMeta { user_id: Some(user.id.clone()), ..meta.clone() };
        audit::record(&txn, &meta, AuditEntry::new("LOGIN", "session", Some(&account), AuditStatus::Success)).await?;
        txn.commit().await?;
        Ok(response)
    }

    /// Checks a login name (username or email) and password under the login throttle:
    /// the attempt counts against the account before the password is checked, so a
    /// burst of concurrent guesses cannot all pass the limit; a success takes it back
    /// (the caller resets `throttled`), a failure also counts against the client address.
    pub(super) async fn check_password(
        &self,
        login: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<PasswordCheck, AppError> {
        let account = login.trim().to_lowercase();
        let now = now_micros();
        let found = users::find_by_login(&self.db, login.trim()).await?;
        // Failures count per account, whichever name (username or email) they were tried
        // with; per name only where no account has it.
        let throttled = match &found {
            Some(user) => format!("user:{}", user.id),
            None => format!("login:{account}"),
        };
        let started_block = match throttle::attempt(&self.db, &throttled, client, now).await? {
            throttle::Counted::Blocked(retry_after_seconds) => {
                return Ok(PasswordCheck::Blocked { user_id: found.map(|u| u.id), retry_after_seconds });
            }
            throttle::Counted::Counted(started) => started,
        };
        let verified = match &found {
            Some(user) => self.passwords.verify(password, &user.password_hash).await.map_err(AppError::internal)?,
            None => {
                self.passwords.verify_dummy(password).await;
                Verification::Invalid
            }
        };
        match (found, verified) {
            (Some(user), Verification::Valid { needs_rehash }) if user.active => {
                Ok(PasswordCheck::Valid { user: Box::new(user), needs_rehash, throttled })
            }
            (found, _) => {
                let client_blocked = throttle::failed(&self.db, client, now).await?;
                let retry_after_seconds = Ord::max(started_block, client_blocked);
                Ok(PasswordCheck::Wrong { user_id: found.map(|u| u.id), retry_after_seconds })
            }
        }
    }

    async fn audit_login(
        &self,
        meta: &AuditMeta,
        user_id: Option<String>,
        account: &str,
        status: AuditStatus,
    ) -> Result<(), DbErr> {
        let meta = AuditMeta { user_id, ..meta.clone() };
        audit::record(&self.db, &meta, AuditEntry::new("LOGIN", "session", Some(account), status)).await
    }

    /// Rotates a refresh token into a new token pair.
    pub async fn refresh(&self, token: &str, meta: &AuditMeta) -> Result<TokenResponse, AppError> {
        let invalid = || AppError::Unauthorized("Invalid or expired refresh token".to_owned());
        let claims = self.tokens.verify(token, TokenType::Refresh, now_seconds()).map_err(|_| invalid())?;
        let meta = AuditMeta { user_id: Some(claims.sub.clone()), ..meta.clone() };
        let audit_row = |status| AuditEntry::new("REFRESH_TOKEN", "session", Some(&claims.sid), status);
        let txn = crate::storage::begin_write(&self.db).await?;
        // Only one presentation of a refresh token may rotate it.
        if !sessions::rotate_refresh_token(&txn, &claims.jti, now_micros()).await? {
            // Reuse of a rotated token: someone holds a copy. End the whole session.
            revoke_session(&txn, &claims).await?;
            audit::record(&txn, &meta, audit_row(AuditStatus::Denied)).await?;
            txn.commit().await?;
            self.invalidate_user(&claims.sub);
            tracing::warn!(event = "refresh_token_reuse", user_id = %claims.sub);
            return Err(invalid());
        }
        let user = users::find_by_id(&txn, &claims.sub).await?.ok_or_else(invalid)?;
        let session_revoked = sessions::is_revoked(&txn, &claims.sid).await?;
        if !user.active || user.token_version != claims.ver || session_revoked {
            return Err(invalid());
        }
        let roles = users::roles_of(&txn, &user.id).await?;
        let response = self.issue(&txn, &user, &roles, &claims.sid).await?;
        audit::record(&txn, &meta, audit_row(AuditStatus::Success)).await?;
        txn.commit().await?;
        Ok(response)
    }

    /// Revokes the presented access token and its whole session.
    pub async fn logout(&self, claims: &Claims, meta: &AuditMeta) -> Result<(), AppError> {
        let txn = crate::storage::begin_write(&self.db).await?;
        revoke_session(&txn, claims).await?;
        audit::record(&txn, meta, AuditEntry::new("LOGOUT", "session", Some(&claims.sid), AuditStatus::Success))
            .await?;
        txn.commit().await?;
        self.invalidate_user(&claims.sub);
        Ok(())
    }

    /// Changes a user's own password; every earlier token of the user stops working, and
    /// a fresh token pair is returned for the caller's session.
    pub async fn change_password(
        &self,
        user_id: &str,
        current: &str,
        new: &str,
        meta: &AuditMeta,
    ) -> Result<TokenResponse, AppError> {
        let user =
            users::find_by_id(&self.db, user_id).await?.ok_or_else(|| AppError::NotFound("User not found".into()))?;
        let verified = self.passwords.verify(current, &user.password_hash).await.map_err(AppError::internal)?;
        if verified == Verification::Invalid {
            audit::record(
                &self.db,
                meta,
                AuditEntry::new("CHANGE_PASSWORD", "user", Some(user_id), AuditStatus::Denied),
            )
            .await?;
            return Err(AppError::Forbidden("The current password is wrong".to_owned()));
        }
        check_policy(new, &user.username)
            .map_err(|m| AppError::Validation(vec![crate::error::FieldError::new("new_password", m)]))?;
        let hash = self.passwords.hash(new).await.map_err(AppError::internal)?;
        let txn = crate::storage::begin_write(&self.db).await?;
        let change = UserChange {
            password_hash: Some(hash),
            token_version: Some(user.token_version.saturating_add(1)),
            ..UserChange::default()
        };
        let user = users::update(&txn, &user.id, change).await?;
        let roles = users::roles_of(&txn, &user.id).await?;
        let response = self.issue(&txn, &user, &roles, &uuid::Uuid::new_v4().to_string()).await?;
        audit::record(&txn, meta, AuditEntry::new("CHANGE_PASSWORD", "user", Some(user_id), AuditStatus::Success))
            .await?;
        txn.commit().await?;
        self.invalidate_user(user_id);
        Ok(response)
    }
}

/// Revokes a token's id and session id and every refresh token of the session.
async fn revoke_session(conn: &impl ConnectionTrait, claims: &Claims) -> Result<(), DbErr> {
    let now = now_micros();
    let expires_at = micros(claims.exp.max(now_seconds() + REFRESH_TTL_SECONDS));
    for jti in [&claims.jti, &claims.sid] {
        sessions::revoke(conn, jti, &claims.sub, expires_at, now).await?;
    }
    sessions::revoke_refresh_family(conn, &claims.sid, now).await
}
