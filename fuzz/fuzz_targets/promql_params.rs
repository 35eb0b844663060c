//! The Prometheus API's parameters: a form body and a query string (split at the first
//! `\n`) read as the extractor reads them, then every time, duration and limit parameter
//! the endpoints read.
#![no_main]

use killkrill::http::promql_api::params::{self, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (form, query) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (Some(&data[..at]), &data[at + 1..]),
        None => (None, data),
    };
    let params = Params::parse(form, query);
    for name in ["time", "start", "end"] {
        if let Ok(Some(instant)) = params.time(name) {
            let _ = instant.millis();
        }
        let _ = params.required_time(name);
    }
    for name in ["step", "timeout"] {
        let _ = params.duration(name);
    }
    let _ = params.limit();
    let _ = params.values("match[]");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = params::parse_time(text);
        let _ = params::parse_duration(text);
        let _ = params::prometheus_duration(text);
    }
});
