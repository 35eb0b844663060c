//! Ingest keys (`kki_...`): a key can only ingest logs and metrics for its own source.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};
use serde::Serialize;

use super::sources;
use crate::storage::entity::ingest_key;
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
    let txn = crate::storage::begin_write(db).await?;
    sources::find(&txn, source_id).await?;
    let generated = keys::generate(INGEST_KEY_PREFIX).map_err(AppError::internal)?;
    let key = ingest_key::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        source_id: Set(source_id.to_owned()),
        name: Set(name.to_owned()),
        prefix: Set(generated.prefix),
        key_hash: Set(generated.digest),
        created_at: Set(now_micros()),
        last_used_at: Set(None),
        created_by: Set(Some(created_by.to_owned())),
    }
    .insert(&txn)
    .await?;
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
    let query = ingest_key::Entity::find().filter(ingest_key::Column::SourceId.eq(source_id));
    let total = query.clone().count(db).await?;
    let rows = query.order_by_desc(ingest_key::Column::CreatedAt).limit(limit).offset(offset).all(db).await?;
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
    let txn = crate::storage::begin_write(db).await?;
    let deleted = ingest_key::Entity::delete_many()
        .filter(ingest_key::Column::Id.eq(key_id))
        .filter(ingest_key::Column::SourceId.eq(source_id))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(AppError::NotFound(format!("Ingest key not found: {key_id}")));
    }
    audit::record(&txn, meta, AuditEntry::new("DELETE_INGEST_KEY", "ingest_key", Some(key_id), AuditStatus::Success))
        .await?;
    txn.commit().await?;
    cache.forget(key_id);
    Ok(())
}

/// An authenticated ingest key.
#[derive(Clone, Debug)]
pub struct IngestKeyAuth {
    pub key_id: String,
    pub source_id: String,
}

const CACHE_TTL: Duration = Duration::from_secs(2);
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Digest → key, for at most 2 s, so ingest does not pay a key lookup per batch.
#[derive(Debug, Default)]
pub struct IngestKeyCache {
    keys: Mutex<HashMap<String, (Instant, IngestKeyAuth)>>,
    touched: Mutex<HashMap<String, Instant>>,
}

impl IngestKeyCache {
    fn forget(&self, key_id: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.retain(|_, (_, k)| k.key_id != key_id);
        }
    }

    /// Drops every cached key of a deleted source, so they are refused at once.
    pub fn forget_source(&self, source_id: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.retain(|_, (_, k)| k.source_id != source_id);
        }
    }

    pub async fn authenticate(&self, db: &DatabaseConnection, key: &str) -> Result<IngestKeyAuth, AppError> {
        let invalid = || AppError::Unauthorized("Invalid ingest key".to_owned());
        if !key.starts_with(INGEST_KEY_PREFIX) || key.len() > 128 {
            return Err(invalid());
        }
        let digest = keys::digest(key);
        let cached = self
            .keys
            .lock()
            .ok()
            .and_then(|keys| keys.get(&digest).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, k)| k.clone()));
        let auth = match cached {
            Some(auth) => auth,
            None => {
                let row = ingest_key::Entity::find()
                    .filter(ingest_key::Column::KeyHash.eq(digest.as_str()))
                    .one(db)
                    .await?
                    .ok_or_else(invalid)?;
                let auth = IngestKeyAuth { key_id: row.id, source_id: row.source_id };
                if let Ok(mut keys) = self.keys.lock() {
                    if keys.len() > 10_000 {
                        keys.clear();
                    }
                    keys.insert(digest, (Instant::now(), auth.clone()));
                }
                auth
            }
        };
        self.touch(db, &auth.key_id);
        Ok(auth)
    }

    /// Records `last_used_at` at most once a minute per key, off the request path.
    fn touch(&self, db: &DatabaseConnection, key_id: &str) {
        let Ok(mut touched) = self.touched.lock() else { return };
        if touched.get(key_id).is_some_and(|at| at.elapsed() < TOUCH_INTERVAL) {
            return;
        }
        if touched.len() > 10_000 {
            touched.clear();
        }
        touched.insert(key_id.to_owned(), Instant::now());
        let db = db.clone();
        let key_id = key_id.to_owned();
        tokio::spawn(async move {
            let result = ingest_key::Entity::update_many()
                .col_expr(ingest_key::Column::LastUsedAt, Expr::value(now_micros()))
                .filter(ingest_key::Column::Id.eq(key_id))
                .exec(&db)
                .await;
            if let Err(err) = result {
                tracing::warn!(event = "ingest_key_touch_failed", error = %err);
            }
        });
    }
}
