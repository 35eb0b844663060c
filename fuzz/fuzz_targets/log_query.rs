//! The log query's parameters (`GET /api/v1/logs?...`): the query string as the HTTP
//! extractor (axum's `Query`) deserializes it, then the page, the filter and the cursor
//! as the handler reads them.
#![no_main]

use axum::extract::Query;
use killkrill::http::{pagination, telemetry::LogsQuery};
use killkrill::service::logs::{Cursor, LogFilter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let Ok(uri) = format!("/api/v1/logs?{query}").parse::<http::Uri>() else { return };
    let Ok(Query(q)) = Query::<LogsQuery>::try_from_uri(&uri) else { return };
    let _ = pagination::page(q.limit, None);
    let _ = LogFilter::parse(q.source_id, q.level.as_deref(), q.since.as_deref(), q.until.as_deref(), q.q);
    let _ = q.cursor.as_deref().map(Cursor::decode);
});
