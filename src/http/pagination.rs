//! `?limit=&offset=` as docs/API.md defines them: limit 1–1000 (default 50), offset >= 0.

use serde::Serialize;

use crate::error::{AppError, FieldError};

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 1000;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

/// Validates the raw values (non-numeric and negative ones were already refused by the
/// query extractor, which parses them as unsigned integers).
pub fn page(limit: Option<u64>, offset: Option<u64>) -> Result<Page, AppError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(AppError::Validation(vec![FieldError::new("limit", format!("must be between 1 and {MAX_LIMIT}"))]));
    }
    // The databases take a signed 64-bit offset; a larger one makes the driver panic.
    let offset = offset.unwrap_or(0);
    if offset > i64::MAX as u64 {
        return Err(AppError::Validation(vec![FieldError::new("offset", format!("must be at most {}", i64::MAX))]));
    }
    Ok(Page { limit, offset })
}

/// `{"<items>": [...], "total", "limit", "offset"}`.
pub fn listing<T: Serialize>(items_key: &str, items: Vec<T>, total: u64, page: Page) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert(items_key.to_owned(), serde_json::json!(items));
    body.insert("total".into(), total.into());
    body.insert("limit".into(), page.limit.into());
    body.insert("offset".into(), page.offset.into());
    serde_json::Value::Object(body)
}
