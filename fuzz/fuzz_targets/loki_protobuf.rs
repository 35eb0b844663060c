//! Loki push `PushRequest`s (decompressed protobuf) read into log entries; every entry can
//! be located for an error message.
#![no_main]

use killkrill::protocol::loki;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(push) = loki::read_protobuf(data) {
        for index in 0..push.logs.len().min(64) {
            let _ = push.locate(index);
            let _ = push.rename_field(&format!("logs[{index}].message"));
        }
    }
});
