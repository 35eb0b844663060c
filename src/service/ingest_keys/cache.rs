//! Authenticating ingest keys, with the keys found cached for a moment.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;

use crate::{
    auth::keys::{self, INGEST_KEY_PREFIX},
    error::AppError,
    storage,
    time::now_micros,
};

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
    pub(in crate::service) fn forget(&self, key_id: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.retain(|_, (_, k)| k.key_id != key_id);
        }
    }

    /// Drops every cached key of a deleted source, so they are refused at once.
    pub(in crate::service) fn forget_source(&self, source_id: &str) {
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
                let row = storage::ingest_keys::find_by_digest(db, &digest).await?.ok_or_else(invalid)?;
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
            if let Err(err) = storage::ingest_keys::touch(&db, &key_id, now_micros()).await {
                tracing::warn!(event = "ingest_key_touch_failed", error = %err);
            }
        });
    }
}
