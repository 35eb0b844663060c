//! Resource ids: UUIDs, which the service writes in one canonical form (lower case,
//! hyphenated).
//!
//! An id from a request is put in that form before it reaches the database, and one that
//! is not a UUID never reaches it: PostgreSQL and SQLite compare exactly, but MariaDB's
//! collations ignore trailing spaces (`"<id> "` found the resource) and, in some tables,
//! case (`"<ID>"` found a user there and nowhere else).

use crate::error::{AppError, FieldError};

/// `id` in canonical form, if it is a hyphenated UUID in any case.
pub fn canonical(id: &str) -> Option<String> {
    if id.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(id).ok().map(|u| u.hyphenated().to_string())
}

/// A path's id: canonical, or 404 naming `what` (an id that is not a UUID names nothing).
pub fn found(id: &str, what: &str) -> Result<String, AppError> {
    canonical(id).ok_or_else(|| AppError::NotFound(format!("{what} not found: {id}")))
}

/// A filter's id: canonical, or 400 naming `field`.
pub fn filter(id: &str, field: &str) -> Result<String, AppError> {
    canonical(id).ok_or_else(|| AppError::Validation(vec![FieldError::new(field, "must be a UUID")]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_canonical_uuids() {
        let id = "0b7e4f2a-9c1d-4e8f-a6b3-5d2c1e0f9a87";
        assert_eq!(canonical(id).as_deref(), Some(id));
        assert_eq!(canonical(&id.to_uppercase()).as_deref(), Some(id));
        for not in [&format!("{id} "), &format!(" {id}"), "0b7e4f2a9c1d4e8fa6b35d2c1e0f9a87", "not-a-uuid", ""] {
            assert_eq!(canonical(not), None, "{not:?}");
        }
        assert!(matches!(found("x", "Source"), Err(AppError::NotFound(m)) if m == "Source not found: x"));
        assert!(matches!(filter("x", "source_id"), Err(AppError::Validation(_))));
    }
}
