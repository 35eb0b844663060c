//! API keys: created by a user for themselves, optionally narrowed to a lower role and
//! bounded in lifetime; shown once, stored as a digest.

use serde::Serialize;

use super::Identity;
use crate::storage::{api_keys, entity::api_key};
use crate::{
    auth::{
        Principal, Role,
        keys::{self, API_KEY_PREFIX},
        roles,
    },
    error::{AppError, FieldError},
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus},
    time::{micros_to_rfc3339, now_micros},
};

/// Role names stored comma-separated; unknown names are ignored.
pub fn parse_roles(stored: &str) -> Vec<Role> {
    stored.split(',').filter_map(|r| Role::parse(r.trim())).collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub roles: Option<Vec<&'static str>>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
}

impl From<api_key::Model> for ApiKeyView {
    fn from(key: api_key::Model) -> Self {
        Self {
            id: key.id,
            user_id: key.user_id,
            name: key.name,
            prefix: key.prefix,
            roles: key.roles.as_deref().map(|r| parse_roles(r).iter().map(|r| r.as_str()).collect()),
            expires_at: key.expires_at.map(micros_to_rfc3339),
            last_used_at: key.last_used_at.map(micros_to_rfc3339),
            created_at: micros_to_rfc3339(key.created_at),
        }
    }
}

/// A new key: the listing fields plus the plaintext, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    pub key: String,
    #[serde(flatten)]
    pub view: ApiKeyView,
}

pub struct NewApiKey {
    pub name: String,
    pub roles: Option<Vec<Role>>,
    pub expires_in_days: Option<u32>,
}

impl Identity {
    pub async fn create_api_key(
        &self,
        owner: &Principal,
        new: NewApiKey,
        meta: &AuditMeta,
    ) -> Result<CreatedApiKey, AppError> {
        let mut problems = Vec::new();
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 128 {
            problems.push(FieldError::new("name", "must be 1 to 128 characters"));
        } else if name.chars().any(char::is_control) {
            problems.push(FieldError::new("name", "must not contain control characters"));
        }
        let days = new.expires_in_days.unwrap_or(self.api_key_max_days);
        if days == 0 || days > self.api_key_max_days {
            problems.push(FieldError::new(
                "expires_in_days",
                format!("must be between 1 and {} (API_KEY_MAX_DAYS)", self.api_key_max_days),
            ));
        }
        if let Some(roles) = &new.roles {
            if roles.is_empty() {
                problems.push(FieldError::new("roles", "must name at least one role when given"));
            } else if roles.iter().max() > owner.roles.iter().max() {
                problems.push(FieldError::new("roles", "a key cannot have a higher role than its owner"));
            }
        }
        if !problems.is_empty() {
            return Err(AppError::Validation(problems));
        }
        // A key made with a narrowed key is narrowed at least as much: without `roles` it
        // takes its maker's narrowing, not the owner's full roles.
        // Each role once: `["viewer"] x 40` is a viewer key, not a column overflow.
        let roles = new.roles.map(roles::normalize).or_else(|| owner.key_roles.clone());
        let generated = keys::generate(API_KEY_PREFIX).map_err(AppError::internal)?;
        let now = now_micros();
        let roles = roles.map(|r| r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","));
        let expires_at = Some(now.saturating_add(i64::from(days) * 86_400 * 1_000_000));
        let txn = crate::storage::begin_write(&self.db).await?;
        let key = api_keys::insert(&txn, &owner.user_id, &name, &generated, roles, now, expires_at).await?;
        audit::record(&txn, meta, AuditEntry::new("CREATE_API_KEY", "api_key", Some(&key.id), AuditStatus::Success))
            .await?;
        txn.commit().await?;
        Ok(CreatedApiKey { key: generated.plaintext, view: key.into() })
    }

    /// A user's own keys; admins may list anyone's (`user_id`) or everyone's.
    pub async fn list_api_keys(
        &self,
        caller: &Principal,
        user_id: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<ApiKeyView>, u64), AppError> {
        let owner = match (caller.is_admin(), user_id) {
            (true, filter) => filter.map(|id| crate::ids::filter(id, "user_id")).transpose()?,
            (false, _) => Some(caller.user_id.clone()),
        };
        let (keys, total) = api_keys::list(&self.db, owner.as_deref(), limit, offset).await?;
        Ok((keys.into_iter().map(ApiKeyView::from).collect(), total))
    }

    /// Deletes a key the caller owns (admins: any key). Someone else's key is a 404, so
    /// keys of other users cannot be discovered.
    pub async fn delete_api_key(&self, caller: &Principal, key_id: &str, meta: &AuditMeta) -> Result<(), AppError> {
        let key_id = &crate::ids::found(key_id, "API key")?;
        let txn = crate::storage::begin_write(&self.db).await?;
        let key = api_keys::find_by_id(&txn, key_id).await?;
        let key = key
            .filter(|k| caller.is_admin() || k.user_id == caller.user_id)
            .ok_or_else(|| AppError::NotFound(format!("API key not found: {key_id}")))?;
        api_keys::delete(&txn, &key.id).await?;
        audit::record(&txn, meta, AuditEntry::new("DELETE_API_KEY", "api_key", Some(&key.id), AuditStatus::Success))
            .await?;
        txn.commit().await?;
        self.invalidate_key(&key.id);
        Ok(())
    }
}
