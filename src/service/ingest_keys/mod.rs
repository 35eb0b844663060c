//! Ingest keys (`kki_...`): a key can only ingest logs and metrics for its own source.

pub(super) mod cache;

use sea_orm::DatabaseConnection;
use serde::Serialize;

pub use self::cache::{IngestKeyAuth, IngestKeyCache};
use super::sources;
use crate::storage::{self, entity::ingest_key};
use crate::{
    auth::keys::{self, INGEST_KEY_PREFIX},
    error::{AppError, FieldError},
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus},
    time::{micros_to_rfc3339, now_micros},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestKeyView {
    pub id: String,
    pub source_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub created_by: Option<String>,
}

impl From<ingest_key::Model> for IngestKeyView {
    fn from(k: ingest_key::Model) -> Self {
        Self {
            id: k.id,
            source_id: k.source_id,
            name: k.name,
            prefix: k.prefix,
            created_at: micros_to_rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(micros_to_rfc3339),
            created_by: k.created_by,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedIngestKey {
    pub key: String,
    #[serde(flatten)]
    pub view: IngestKeyView,
}

pub async fn create(
    db: &DatabaseConnection,
    source_id: &str,
    name: &str,
    created_by: &str,
    meta: &AuditMeta,
) -> Result<CreatedIngestKey, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(AppError::Validation(vec![FieldError::new("name", "must be 1 to 128 characters")]));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::Validation(vec![FieldError::new("name", "must not contain control characters")]));
    }
    let source_id = &crate::ids::found(source_id, "Source")?;
    let txn = storage::begin_write(db).await?;
    sources::find(&txn, source_id).await?;
    let generated = keys::generate(INGEST_KEY_PREFIX).map_err(AppError::internal)?;
    let row = ingest_key::Model {
        id: uuid::Uuid::new_v4().to_string(),
        source_id: source_id.to_owned(),
        name: name.to_owned(),
        prefix: generated.prefix,
        key_hash: generated.digest,
        created_at: now_micros(),
        last_used_at: None,
        created_by: Some(created_by.to_owned()),
    };
    let key = storage::ingest_keys::insert(&txn, row).await?;
    audit::record(&txn, meta, AuditEntry::new("CREATE_INGEST_KEY", "ingest_key", Some(&key.id), AuditStatus::Success))
        .await?;
    txn.commit().await?;
    Ok(CreatedIngestKey { key: generated.plaintext, view: key.into() })
}

pub async fn list(
    db: &DatabaseConnection,
    source_id: &str,
    limit: u64,
    offset: u64,
) -> Result<(Vec<IngestKeyView>, u64), AppError> {
    let source_id = &crate::ids::found(source_id, "Source")?;
    sources::find(db, source_id).await?;
    let (rows, total) = storage::ingest_keys::list(db, source_id, limit, offset).await?;
    Ok((rows.into_iter().map(IngestKeyView::from).collect(), total))
}

pub async fn delete(
    db: &DatabaseConnection,
    cache: &IngestKeyCache,
    source_id: &str,
    key_id: &str,
    meta: &AuditMeta,
) -> Result<(), AppError> {
    let source_id = &crate::ids::found(source_id, "Source")?;
    let key_id = &crate::ids::found(key_id, "Ingest key")?;
    let txn = storage::begin_write(db).await?;
    if !storage::ingest_keys::delete(&txn, source_id, key_id).await? {
        return Err(AppError::NotFound(format!("Ingest key not found: {key_id}")));
    }
    audit::record(&txn, meta, AuditEntry::new("DELETE_INGEST_KEY", "ingest_key", Some(key_id), AuditStatus::Success))
        .await?;
    txn.commit().await?;
    cache.forget(key_id);
    Ok(())
}
