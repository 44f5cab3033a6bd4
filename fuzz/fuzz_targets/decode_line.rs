//! Fuzzes `decode_line` with arbitrary bytes: never panics; whatever decodes re-encodes to a line
//! that decodes to the same record.
#![no_main]

use evfold_core::{decode_line, encode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(record) = decode_line(line) {
        let encoded = encode_record(&record);
        assert_eq!(encoded.last(), Some(&b'\n'));
        let again = decode_line(&encoded[..encoded.len() - 1]).expect("an encoded record decodes");
        assert_eq!(again, record);
    }
});
