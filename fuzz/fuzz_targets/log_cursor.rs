//! The log query's `cursor` parameter: garbage is a 400, never a panic, and a cursor that
//! decodes encodes back to one that decodes to the same position.
#![no_main]

use killkrill::service::logs::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cursor) = Cursor::decode(text) {
        assert_eq!(Cursor::decode(&cursor.encode()).ok(), Some(cursor), "round trip");
    }
});
