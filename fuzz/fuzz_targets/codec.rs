//! Request body decoders: `Content-Encoding: gzip` and snappy's block format. A decoded
//! body never exceeds the limit; the limit comes from the first two bytes.
#![no_main]

use killkrill::protocol::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else { return };
    let limit = usize::from(u16::from_le_bytes([*a, *b])) * 16;
    if let Ok(out) = codec::snappy_block(body, limit) {
        assert!(out.len() <= limit, "snappy output over the limit");
    }
    if let Ok(out) = codec::gunzip(body, limit) {
        assert!(out.len() <= limit, "gzip output over the limit");
    }
    if let Ok(out) = codec::decode_content(body, Some("gzip"), limit) {
        assert!(out.len() <= limit, "decoded body over the limit");
    }
});
