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

/// The UUID under which the API shows a row the database numbers itself (a log entry, a
/// metric series, an audit row): docs/API.md promises UUID strings, and these tables keep an
/// integer key because their order is what the log cursor and the audit chain walk.
///
/// A UUID version 8 (RFC 9562's layout for ids of one's own scheme) holding the number:
/// `00000000-HHHH-8000-8000-LLLLLLLLLLLL`, its high 16 bits in `H`, its low 48 in `L`.
/// Distinct rows of a table get distinct UUIDs, and the same row the same UUID on every
/// replica and both transports.
pub fn of_row(id: i64) -> String {
    let n = id.to_be_bytes();
    let bytes = [0, 0, 0, 0, n[0], n[1], 0x80, 0, 0x80, 0, n[2], n[3], n[4], n[5], n[6], n[7]];
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_numbers_become_version_8_uuids() {
        assert_eq!(of_row(123), "00000000-0000-8000-8000-00000000007b");
        assert_eq!(of_row(i64::MAX), "00000000-7fff-8000-8000-ffffffffffff");
        for n in [1, 0xffff_ffff_ffff, 0x1_0000_0000_0000, i64::MAX] {
            let id = uuid::Uuid::parse_str(&of_row(n)).expect("a UUID");
            assert_eq!(id.get_version_num(), 8, "{n}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{n}");
            assert_eq!(canonical(&of_row(n)), Some(of_row(n)), "{n}");
        }
        assert_ne!(of_row(0xffff_ffff_ffff), of_row(0x1_0000_0000_0000));
    }

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
