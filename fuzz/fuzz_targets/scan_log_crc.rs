//! Fuzzes `scan_log` past the checksum: every newline-terminated chunk of the input gets a
//! correct CRC suffix appended before scanning (the unterminated rest stays as a torn tail), so
//! the scanner's JSON, seq-order, NUL and torn-tail paths are all reached.
#![no_main]

use crc::{Crc, CRC_32_ISCSI};
use evfold_core::{encode_record, scan_log, LogEnd, ScanStart};
use libfuzzer_sys::fuzz_target;

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

fn with_crcs(input: &[u8]) -> Vec<u8> {
    let mut log = Vec::with_capacity(input.len() + 64);
    let mut chunks = input.split(|&b| b == b'\n').peekable();
    while let Some(chunk) = chunks.next() {
        log.extend_from_slice(chunk);
        if chunks.peek().is_some() {
            let crc = CRC32C.checksum(chunk);
            log.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
        }
    }
    log
}

fuzz_target!(|input: &[u8]| {
    let log = with_crcs(input);
    let scan = scan_log(&log, ScanStart::default());
    assert!(scan.valid_len <= log.len() as u64);
    for (i, r) in scan.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
    if let LogEnd::Torn { valid_len, torn_len } = scan.end {
        assert_eq!(valid_len + torn_len, log.len() as u64);
    }
    let reencoded: Vec<u8> = scan.records.iter().flat_map(encode_record).collect();
    let again = scan_log(&reencoded, ScanStart::default());
    assert_eq!(again.records, scan.records);
    assert_eq!(again.end, LogEnd::Clean);
});
