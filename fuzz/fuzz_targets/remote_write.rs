//! Prometheus remote_write 1.0 `WriteRequest`s (decompressed), decoded and read into
//! samples and metadata; every sample can be located for an error message.
#![no_main]

use killkrill::protocol::remote_write;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = remote_write::decode(data) else { return };
    if let Ok(batch) = remote_write::read(request) {
        for index in 0..batch.samples.len().min(64) {
            let _ = batch.locate(index);
            let _ = batch.rename_field(&format!("metrics[{index}].value"));
        }
        let _ = batch.rename_field("metrics[18446744073709551615].value");
    }
});
