//! Sources: the producers of logs and metrics.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{conflict_or, ingest_keys::cache::IngestKeyCache};
use crate::storage::{self, entity::source, sources::SourceChange};

/// A source as the services hand it to transports.
pub use crate::storage::entity::source::Model as Source;
use crate::{
    config::{Cidr, MAX_RETENTION_DAYS},
    error::{AppError, FieldError},
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus},
    time::{micros_to_rfc3339, now_micros},
};

pub const SOURCE_TYPES: [&str; 5] = ["syslog", "http", "prometheus", "otlp", "file"];
/// Entries of `allowed_cidrs`, at most.
const MAX_CIDRS: usize = 256;

/// A source as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub source_type: String,
    pub description: String,
    pub enabled: bool,
    #[schema(value_type = Object)]
    pub config: Value,
    pub allowed_cidrs: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: Option<String>,
    /// Days its logs and samples are kept: `null` for the global settings
    /// (`LOG_RETENTION_DAYS`, `METRIC_RETENTION_DAYS`), 0 for forever.
    #[schema(required = true, minimum = 0, maximum = 36500)]
    pub retention_days: Option<u32>,
}

impl From<source::Model> for SourceView {
    fn from(s: source::Model) -> Self {
        Self {
            allowed_cidrs: s.cidr_list(),
            config: serde_json::from_str(&s.config).unwrap_or_else(|_| Value::Object(Default::default())),
            id: s.id,
            name: s.name,
            source_type: s.source_type,
            description: s.description,
            enabled: s.enabled,
            created_at: micros_to_rfc3339(s.created_at),
            updated_at: micros_to_rfc3339(s.updated_at),
            created_by: s.created_by,
            retention_days: s.retention_days.and_then(|d| u32::try_from(d).ok()),
        }
    }
}

impl source::Model {
    pub fn cidr_list(&self) -> Vec<String> {
        serde_json::from_str(&self.allowed_cidrs).unwrap_or_default()
    }

    /// Whether `ip` may ingest with this source's keys (any address when the list is empty).
    pub fn admits(&self, ip: Option<std::net::IpAddr>) -> bool {
        let cidrs = self.cidr_list();
        if cidrs.is_empty() {
            return true;
        }
        let Some(ip) = ip else { return false };
        cidrs.iter().filter_map(|c| c.parse::<Cidr>().ok()).any(|c| c.contains(ip))
    }
}

/// Fields of a create (all required but `description`, `enabled`, `config`,
/// `allowed_cidrs`) or of a partial update (any subset).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    #[schema(min_length = 1, max_length = 128)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    #[schema(pattern = "^(syslog|http|prometheus|otlp|file)$")]
    pub source_type: Option<String>,
    #[schema(max_length = 4096)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub config: Option<Value>,
    #[schema(max_items = 256)]
    pub allowed_cidrs: Option<Vec<String>>,
    /// Days the source's logs and samples are kept: a whole number, 0 for forever, or
    /// `null` for the global settings. Missing: `null` on a create, unchanged on an update.
    // Kept as sent (any JSON), so that `validate` names the field whatever it holds.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 36500)]
    pub retention_days: Option<Value>,
}

/// A field that is present, `null` included (`Some(Value::Null)`); `#[serde(default)]`
/// makes a missing one `None`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A source's `retention_days` as sent: `null` is `None` (the global settings), else a
/// whole number of days from 0 (forever) to [`MAX_RETENTION_DAYS`].
fn retention_days(value: &Value) -> Result<Option<i32>, String> {
    let problem = || format!("must be null or a whole number of days from 0 (keep forever) to {MAX_RETENTION_DAYS}");
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let days = n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
            match days {
                Some(days) if days <= u64::from(MAX_RETENTION_DAYS) => Ok(Some(days as i32)),
                _ => Err(problem()),
            }
        }
        _ => Err(problem()),
    }
}

impl SourceInput {
    /// The fields a create needs and a partial update does not (see `validate`).
    pub const REQUIRED_ON_CREATE: [&str; 2] = ["name", "type"];

    fn validate(&self, creating: bool) -> Result<(), AppError> {
        let mut problems = Vec::new();
        match &self.name {
            Some(name) if name.trim().is_empty() || name.chars().count() > 128 || name != name.trim() => {
                problems.push(FieldError::new("name", "must be 1 to 128 characters, without surrounding spaces"));
            }
            Some(name) if name.chars().any(char::is_control) => {
                problems.push(FieldError::new("name", "must not contain control characters"));
            }
            None if creating => problems.push(FieldError::new("name", "is required")),
            _ => {}
        }
        match &self.source_type {
            Some(t) if !SOURCE_TYPES.contains(&t.as_str()) => {
                problems.push(FieldError::new("type", format!("must be one of {}", SOURCE_TYPES.join(", "))));
            }
            None if creating => problems.push(FieldError::new("type", "is required")),
            _ => {}
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 4096) {
            problems.push(FieldError::new("description", "must be at most 4096 characters"));
        } else if self.description.as_ref().is_some_and(|d| d.contains('\0')) {
            problems.push(FieldError::new("description", "must not contain NUL characters"));
        }
        if self.config.as_ref().is_some_and(|c| !c.is_object()) {
            problems.push(FieldError::new("config", "must be a JSON object"));
        }
        if let Some(problem) = self.config.as_ref().and_then(super::json_problem) {
            problems.push(FieldError::new("config", problem));
        }
        if self.config.as_ref().is_some_and(|c| c.to_string().len() > 65_536) {
            problems.push(FieldError::new("config", "must be at most 64 KiB"));
        }
        if self.allowed_cidrs.as_ref().is_some_and(|list| list.len() > MAX_CIDRS) {
            problems.push(FieldError::new("allowed_cidrs", format!("at most {MAX_CIDRS} entries")));
        }
        for cidr in self.allowed_cidrs.iter().flatten() {
            if let Err(message) = cidr.parse::<Cidr>() {
                problems.push(FieldError::new("allowed_cidrs", message));
            }
        }
        if let Err(problem) = self.retention_days.as_ref().map(retention_days).transpose() {
            problems.push(FieldError::new("retention_days", problem));
        }
        if problems.is_empty() { Ok(()) } else { Err(AppError::Validation(problems)) }
    }

    /// The validated `retention_days`: `None` when missing, `Some(None)` for `null`.
    fn retention(&self) -> Option<Option<i32>> {
        self.retention_days.as_ref().and_then(|value| retention_days(value).ok())
    }
}

fn normalized_cidrs(cidrs: &[String]) -> String {
    let list: Vec<String> = cidrs.iter().filter_map(|c| c.parse::<Cidr>().ok()).map(|c| c.to_string()).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
}

pub async fn create(
    db: &DatabaseConnection,
    input: SourceInput,
    created_by: &str,
    meta: &AuditMeta,
) -> Result<SourceView, AppError> {
    input.validate(true)?;
    let now = now_micros();
    let retention_days = input.retention().flatten();
    let row = source::Model {
        id: uuid::Uuid::new_v4().to_string(),
        name: input.name.unwrap_or_default(),
        source_type: input.source_type.unwrap_or_default(),
        description: input.description.unwrap_or_default(),
        enabled: input.enabled.unwrap_or(true),
        config: input.config.unwrap_or_else(|| Value::Object(Default::default())).to_string(),
        allowed_cidrs: normalized_cidrs(&input.allowed_cidrs.unwrap_or_default()),
        created_at: now,
        updated_at: now,
        created_by: Some(created_by.to_owned()),
        retention_days,
    };
    let txn = storage::begin_write(db).await?;
    let created = storage::sources::insert(&txn, row).await.map_err(|e| conflict_or(e, "A source with this name"))?;
    audit::record(&txn, meta, AuditEntry::new("CREATE_SOURCE", "source", Some(&created.id), AuditStatus::Success))
        .await?;
    txn.commit().await?;
    Ok(created.into())
}

/// The source, or 404 (also for ids that are not UUIDs).
pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<source::Model, AppError> {
    storage::sources::find(db, &crate::ids::found(id, "Source")?)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Source not found: {id}")))
}

/// The source a client names by its id or by its name.
pub async fn find_by_id_or_name(db: &impl ConnectionTrait, id_or_name: &str) -> Result<source::Model, AppError> {
    let id_or_name = id_or_name.trim();
    if let Ok(id) = crate::ids::found(id_or_name, "Source")
        && let Some(source) = storage::sources::find(db, &id).await?
    {
        return Ok(source);
    }
    storage::sources::find_by_name(db, id_or_name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Source not found: {id_or_name}")))
}

pub struct SourceFilter {
    pub source_type: Option<String>,
    pub enabled: Option<bool>,
}

pub async fn list(
    db: &DatabaseConnection,
    filter: &SourceFilter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<SourceView>, u64), AppError> {
    // A type no source can have is a mistake in the filter, not an empty answer.
    if filter.source_type.as_deref().is_some_and(|t| !SOURCE_TYPES.contains(&t)) {
        let message = format!("must be one of {}", SOURCE_TYPES.join(", "));
        return Err(AppError::Validation(vec![FieldError::new("type", message)]));
    }
    let (rows, total) =
        storage::sources::list(db, filter.source_type.as_deref(), filter.enabled, limit, offset).await?;
    Ok((rows.into_iter().map(SourceView::from).collect(), total))
}

/// Changes only the fields given.
pub async fn update(
    db: &DatabaseConnection,
    id: &str,
    input: SourceInput,
    meta: &AuditMeta,
) -> Result<SourceView, AppError> {
    input.validate(false)?;
    let id = &crate::ids::found(id, "Source")?;
    let txn = storage::begin_write(db).await?;
    let current = find(&txn, id).await?;
    let retention_days = input.retention();
    let change = SourceChange {
        name: input.name,
        source_type: input.source_type,
        description: input.description,
        enabled: input.enabled,
        config: input.config.map(|c| c.to_string()),
        allowed_cidrs: input.allowed_cidrs.map(|cidrs| normalized_cidrs(&cidrs)),
        retention_days,
        updated_at: now_micros(),
    };
    let updated =
        storage::sources::update(&txn, current, change).await.map_err(|e| conflict_or(e, "A source with this name"))?;
    audit::record(&txn, meta, AuditEntry::new("UPDATE_SOURCE", "source", Some(id), AuditStatus::Success)).await?;
    txn.commit().await?;
    Ok(updated.into())
}

/// Deletes the source; its ingest keys, logs and metrics go with it (ON DELETE CASCADE),
/// and its keys cached in `keys` are dropped, so they are refused at once. Ingest running
/// meanwhile cannot deadlock the cascade: the deletion takes the source's row first, and
/// every ingest transaction takes it shared before any row the cascade deletes
/// (`storage::sources::lock_shared`; a log batch is one statement whose only lock on
/// existing rows is its foreign key's on the source).
pub async fn delete(
    db: &DatabaseConnection,
    keys: &IngestKeyCache,
    id: &str,
    meta: &AuditMeta,
) -> Result<(), AppError> {
    let id = &crate::ids::found(id, "Source")?;
    let txn = storage::begin_write(db).await?;
    let deleted = if storage::sources::find(&txn, id).await?.is_none() {
        false
    } else {
        storage::sources::delete(&txn, id).await?;
        audit::record(&txn, meta, AuditEntry::new("DELETE_SOURCE", "source", Some(id), AuditStatus::Success)).await?;
        txn.commit().await?;
        true
    };
    if !deleted {
        return Err(AppError::NotFound(format!("Source not found: {id}")));
    }
    keys.forget_source(id);
    Ok(())
}
