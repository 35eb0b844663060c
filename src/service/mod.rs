//! The data the platform exists for: sources, their ingest keys, logs and metrics. HTTP
//! handlers (and the gRPC services) call these functions and only translate transport.

pub mod audit;
pub mod compaction;
pub mod identity;
pub mod ingest_keys;
pub mod ingestor;
pub mod license;
pub mod logs;
pub mod promql;
pub mod retention;
pub mod samples;
pub mod settings;
pub mod sources;
pub mod status;

use sea_orm::{DbErr, SqlErr};
use serde_json::Value;

use self::retention::{Ingested, Kept};
use crate::{
    error::{AppError, FieldError},
    metrics::{IngestKind, Metrics},
};

/// Maps a foreign-key violation of rows stored for `source_id` to 404: the source was
/// deleted while they were being stored (ingest checks it first, but does not hold it),
/// as if it had been gone before.
pub fn source_gone_or(err: DbErr, source_id: &str) -> AppError {
    match err.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => AppError::NotFound(format!("Source not found: {source_id}")),
        _ => AppError::from(err),
    }
}

/// How deep a stored JSON document (a source's `config`, a log's `attributes`) may nest.
/// gRPC carries one as a `google.protobuf.Struct`, three protobuf levels per JSON level,
/// and protobuf decoders (prost, Python, Go) stop at 100 levels: a deeper document would
/// be stored through REST and then break every gRPC answer that holds it.
pub const MAX_JSON_DEPTH: usize = 30;

/// What a stored JSON document must not be, whichever transport brought it: nested
/// deeper than `MAX_JSON_DEPTH`, or holding a NUL in a key or string (no database stores
/// it alike; REST refuses it while parsing, gRPC delivers it).
pub fn json_problem(value: &Value) -> Option<String> {
    fn walk(value: &Value, depth: usize) -> Option<String> {
        let too_deep = || Some(format!("must not nest deeper than {MAX_JSON_DEPTH} levels"));
        let nul = || Some("must not contain NUL characters".to_owned());
        match value {
            Value::String(s) if s.contains('\0') => nul(),
            Value::Array(_) | Value::Object(_) if depth >= MAX_JSON_DEPTH => too_deep(),
            Value::Array(items) => items.iter().find_map(|item| walk(item, depth + 1)),
            Value::Object(map) => {
                map.iter().find_map(|(key, item)| if key.contains('\0') { nul() } else { walk(item, depth + 1) })
            }
            _ => None,
        }
    }
    walk(value, 0)
}

/// Maps a unique-constraint violation to 409, anything else to the usual mapping.
pub fn conflict_or(err: DbErr, what: &str) -> AppError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AppError::Conflict(format!("{what} already exists")),
        _ => AppError::from(err),
    }
}

/// The bounds of an ingest batch of `len` items: at least one (else a validation error on
/// `field`, naming `one` item), at most `max` (else too large, naming `many`).
fn check_batch(len: usize, max: usize, field: &str, (one, many): (&str, &str)) -> Result<(), AppError> {
    if len == 0 {
        return Err(AppError::Validation(vec![FieldError::new(field, format!("must contain at least one {one}"))]));
    }
    if len > max {
        return Err(AppError::TooLarge(format!("A batch holds at most {max} {many}")));
    }
    Ok(())
}

/// One refused item's problems as one line of text: `field: message; …`.
fn reasons(problems: &[FieldError]) -> String {
    problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; ")
}

/// Awaits an ingest batch's storing and counts its `items` for `source_id` in `/metrics`:
/// accepted if it was stored, dropped if it was older than its retention, refused if the
/// batch was refused (a batch is stored whole or not at all).
async fn counted(
    metrics: &Metrics,
    source_id: &str,
    kind: IngestKind,
    items: usize,
    stored: impl Future<Output = Result<Ingested, AppError>>,
) -> Result<Ingested, AppError> {
    let stored = stored.await;
    match &stored {
        Ok(ingested) => {
            metrics.observe_ingest(source_id, kind, ingested.accepted, true);
            metrics.observe_dropped(source_id, kind, ingested.dropped);
        }
        Err(_) => metrics.observe_ingest(source_id, kind, items, false),
    }
    stored
}

/// Counts the items of a batch answered item by item: stored, dropped (older than their
/// retention) and refused; all refused when the whole batch failed.
fn counted_each<T>(
    metrics: &Metrics,
    source_id: &str,
    kind: IngestKind,
    items: usize,
    outcomes: &Result<Vec<Result<Kept, T>>, AppError>,
) {
    match outcomes {
        Ok(outcomes) => {
            let stored = outcomes.iter().filter(|o| matches!(o, Ok(Kept::Stored))).count();
            let dropped = outcomes.iter().filter(|o| matches!(o, Ok(Kept::Dropped))).count();
            metrics.observe_ingest(source_id, kind, stored, true);
            metrics.observe_dropped(source_id, kind, dropped);
            metrics.observe_ingest(source_id, kind, items - stored - dropped, false);
        }
        Err(_) => metrics.observe_ingest(source_id, kind, items, false),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({ "n": inner }))
    }

    #[test]
    fn json_documents_are_bounded_in_depth_and_free_of_nul() {
        assert_eq!(json_problem(&json!({"a": [1, "x", {"b": null}]})), None);
        assert_eq!(json_problem(&nested(MAX_JSON_DEPTH)), None);
        assert!(json_problem(&nested(MAX_JSON_DEPTH + 1)).is_some_and(|m| m.contains("nest")));
        assert!(json_problem(&json!({"a": [[["x\u{0}"]]]})).is_some_and(|m| m.contains("NUL")));
        assert!(json_problem(&json!({"k\u{0}": 1})).is_some_and(|m| m.contains("NUL")));
    }
}
