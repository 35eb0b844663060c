//! Elasticsearch `_bulk` NDJSON bodies and single documents, and `filter_path`. The first
//! line is the URL's index (empty: none) and the `filter_path` parameter, separated by a
//! space; the rest is the body.
#![no_main]

use killkrill::protocol::elastic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let head = String::from_utf8_lossy(head);
    let (index, filter) = head.split_once(' ').unwrap_or((&head, ""));
    let url_index = (!index.is_empty()).then_some(index);
    match elastic::parse_bulk(body, url_index) {
        Ok(actions) => assert!(!actions.is_empty(), "a body with no action is refused"),
        Err(failure) => {
            let body = failure.body();
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "the error body is JSON");
        }
    }
    let _ = elastic::parse_document(body, url_index.unwrap_or("logs"));
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = elastic::filter_path(value.clone(), filter);
        let _ = elastic::timestamp_of(&value);
    }
});
