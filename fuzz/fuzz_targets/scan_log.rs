//! Fuzzes `scan_log` (the log scanner every store open runs) with arbitrary bytes and start points.
#![no_main]

use evfold_core::{encode_record, scan_log, LogEnd, ScanStart};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte picks a start shape; the rest is the log.
    let (shape, bytes) = match input.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, input),
    };
    let start = if shape & 1 == 0 {
        ScanStart::default()
    } else {
        ScanStart { offset: u64::from(shape) * 1000, line: u64::from(shape), next_seq: u64::from(shape >> 1) }
    };
    let scan = scan_log(bytes, start);
    let end = start.offset + bytes.len() as u64;
    // A restored newline counts: valid_len may be one past the end.
    assert!(scan.valid_len >= start.offset && scan.valid_len <= end + 1, "valid_len out of range");
    for (i, r) in scan.records.iter().enumerate() {
        assert_eq!(r.seq, start.next_seq + i as u64, "records are not contiguous");
    }
    match &scan.end {
        LogEnd::Clean => assert_eq!(scan.valid_len, end),
        LogEnd::MissingNewline { line_end } => assert_eq!(scan.valid_len, line_end + 1),
        LogEnd::Torn { valid_len, torn_len } => {
            assert_eq!(*valid_len, scan.valid_len);
            assert_eq!(valid_len + torn_len, end);
            assert!(*torn_len > 0);
        }
        LogEnd::Corrupt { offset, line, .. } => {
            // Equal unless the corrupt line follows lines of an unfinished append (not returned).
            assert!(*offset >= scan.valid_len);
            assert!(*line >= start.line + scan.records.len() as u64);
        }
    }
    // The valid prefix re-scans to the same records, and re-encoding them scans clean.
    let mut prefix = bytes[..((scan.valid_len - start.offset) as usize).min(bytes.len())].to_vec();
    if let LogEnd::MissingNewline { line_end } = scan.end {
        prefix.truncate((line_end - start.offset) as usize);
        prefix.push(b'\n');
    }
    let again = scan_log(&prefix, start);
    assert_eq!(again.records, scan.records);
    assert_eq!(again.end, LogEnd::Clean);
    let reencoded: Vec<u8> = scan.records.iter().flat_map(encode_record).collect();
    let third = scan_log(&reencoded, start);
    assert_eq!(third.records, scan.records);
    assert_eq!(third.end, LogEnd::Clean);
});
