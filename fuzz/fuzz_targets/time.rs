//! Times and steps as the JSON API reads them (`since`, `until`, `start`, `end`, `step`,
//! JSON numbers as seconds): an error, not a panic; a timestamp an entry carries is written
//! back as RFC 3339 that reads as the same time.
#![no_main]

use killkrill::time;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bytes) = <[u8; 8]>::try_from(data) {
        let seconds = f64::from_le_bytes(bytes);
        if let Ok(micros) = time::timestamp_from_seconds(seconds) {
            let written = time::micros_to_rfc3339(micros);
            assert_eq!(time::parse_timestamp(&written), Ok(micros), "{seconds} is written {written:?}");
        }
        let _ = time::step_from_seconds(seconds);
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(micros) = time::parse_time("since", text) {
        let _ = time::micros_to_rfc3339(micros);
    }
    if let Ok(micros) = time::parse_timestamp(text) {
        let written = time::micros_to_rfc3339(micros);
        assert_eq!(time::parse_timestamp(&written), Ok(micros), "{text:?} is written {written:?}");
    }
    let _ = time::parse_step(text);
});
