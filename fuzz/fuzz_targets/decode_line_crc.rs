//! Fuzzes the JSON half of `decode_line`: the fuzzer writes the line body and this target appends
//! a correct CRC suffix, so inputs get past the checksum and reach the record decoder (deep
//! nesting, huge numbers, odd escapes, non-UTF-8, duplicate keys).
#![no_main]

use crc::{Crc, CRC_32_ISCSI};
use evfold_core::{decode_line, encode_record};
use libfuzzer_sys::fuzz_target;

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

fuzz_target!(|body: &[u8]| {
    let mut line = body.to_vec();
    let crc = CRC32C.checksum(&line);
    line.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
    if let Ok(record) = decode_line(&line) {
        let encoded = encode_record(&record);
        let again = decode_line(&encoded[..encoded.len() - 1]).expect("an encoded record decodes");
        assert_eq!(again, record);
    }
});
