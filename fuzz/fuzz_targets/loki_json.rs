//! Loki push JSON bodies read into log entries, and the stream selectors they and the
//! protobuf form carry (`{job="api"}`).
#![no_main]

use killkrill::protocol::loki;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(push) = loki::read_json(data) {
        for index in 0..push.logs.len().min(64) {
            let _ = push.locate(index);
            let _ = push.rename_field(&format!("logs[{index}].message"));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = loki::parse_selector(text);
    }
});
