//! The JSON API's ingest bodies: `POST /api/v1/logs` as JSON or NDJSON (through the
//! handler's own `parse_logs`) and `POST /api/v1/metrics`, each entry converted to the
//! service's input (times, levels, label values). The first byte picks the form.
#![no_main]

use killkrill::http::{
    extract::refuse_nul,
    telemetry::{IngestQuery, MetricBatch, parse_logs},
};
use killkrill::service::{logs::NewLog, samples::NewSample};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    match pick % 3 {
        0 | 1 => {
            let content_type = if pick % 3 == 0 { "application/json" } else { "application/x-ndjson" };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
            let query = IngestQuery { source_id: Some("0b7e4f2a-9c1d-4e8f-a6b3-5d2c1e0f9a87".into()) };
            if let Ok((_, entries)) = parse_logs(&headers, query, body) {
                let _: Vec<NewLog> = entries.into_iter().map(NewLog::from).collect();
            }
        }
        _ => {
            if refuse_nul(body).is_ok()
                && let Ok(batch) = serde_json::from_slice::<MetricBatch>(body)
            {
                let _: Vec<NewSample> = batch.metrics.into_iter().map(NewSample::from).collect();
            }
        }
    }
});
