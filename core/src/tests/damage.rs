//! Torn versus corrupt (issue #12, items 4 and 12): a flipped or missing final newline, and
//! torn appends that left zero-filled holes, at every bit and every aligned hole position.

use serde_json::json;

use crate::codec::{encode_append, encode_record, scan_log, LineError, LogEnd, ScanStart, HOLE_ALIGN};
use crate::types::{EventId, EventRecord, Metadata, Timestamp};

fn record(seq: u64, data: serde_json::Value) -> EventRecord {
    EventRecord {
        version: 1,
        seq,
        pos: seq,
        id: EventId(format!("id-{seq}")),
        event_type: "Noted".into(),
        data,
        ts: Timestamp(7),
        meta: Metadata::default(),
    }
}

fn three_lines() -> Vec<u8> {
    (1..=3).flat_map(|s| encode_record(&record(s, json!({"n": s})))).collect()
}

#[test]
fn every_bit_flip_of_the_final_newline_is_corruption_not_a_torn_tail() {
    let log = three_lines();
    let last_start = log[..log.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    for bit in 0..8 {
        let mut bytes = log.clone();
        *bytes.last_mut().unwrap() ^= 1 << bit;
        let scan = scan_log(&bytes, ScanStart::default());
        let found = b'\n' ^ (1 << bit);
        assert_eq!(
            scan.end,
            LogEnd::Corrupt { line: 3, offset: last_start as u64, error: LineError::BadNewline { found } },
            "bit {bit}"
        );
        assert_eq!(scan.records.len(), 2, "bit {bit}: the records before the damaged line stay");
    }
}

#[test]
fn a_complete_last_line_missing_only_its_newline_is_kept() {
    let log = three_lines();
    let scan = scan_log(&log[..log.len() - 1], ScanStart::default());
    let line_end = log.len() as u64 - 1;
    assert_eq!(scan.end, LogEnd::MissingNewline { line_end });
    assert_eq!((scan.records.len(), scan.valid_len), (3, log.len() as u64));
    // The newline lost in a zero-filled hole that runs to the end of the file: kept too, when
    // the newline's offset is a block boundary (a hole starts on one).
    let pad = (0..2000).find(|p| aligned_log(*p).len() - 1 == 1024).expect("a padding puts the newline at 1024");
    let log = aligned_log(pad);
    let mut holed = log[..1024].to_vec();
    holed.resize(1024 + 512, 0);
    let scan = scan_log(&holed, ScanStart::default());
    assert_eq!((scan.end, scan.records.len()), (LogEnd::MissingNewline { line_end: 1024 }, 3));
    // Zeros from an offset no hole starts at (the newline of an unaligned line) are damage.
    let mut unaligned = aligned_log(pad - 1)[..1023].to_vec();
    unaligned.extend([0, 0]);
    let scan = scan_log(&unaligned, ScanStart::default());
    assert!(matches!(scan.end, LogEnd::Corrupt { error: LineError::BadNewline { found: 0 }, .. }), "{:?}", scan.end);
}

fn aligned_log(pad: usize) -> Vec<u8> {
    let mut log: Vec<u8> = (1..=2).flat_map(|s| encode_record(&record(s, json!({"n": s})))).collect();
    log.extend(encode_record(&record(3, json!({"pad": "p".repeat(pad)}))));
    log
}

#[test]
fn a_final_line_of_an_unfinished_append_missing_its_newline_is_still_torn() {
    let first = encode_record(&record(1, json!(1)));
    let append = encode_append(&[record(2, json!(2)), record(3, json!(3))]);
    let first_line = append.iter().position(|b| *b == b'\n').unwrap();
    let bytes: Vec<u8> = first.iter().chain(&append[..first_line]).copied().collect();
    let scan = scan_log(&bytes, ScanStart::default());
    let valid_len = first.len() as u64;
    assert_eq!(scan.end, LogEnd::Torn { valid_len, torn_len: first_line as u64 });
    assert_eq!(scan.records.len(), 1);
}

#[test]
fn a_flipped_bit_that_makes_a_nul_is_corruption_even_in_the_last_line() {
    let log = three_lines();
    let last_start = log[..log.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    // `{"n":3}` holds no byte one flip turns into NUL, so plant one in the id instead: any
    // single NUL inside a line is not hole-shaped.
    for at in last_start + 1..log.len() - 1 {
        let mut bytes = log.clone();
        bytes[at] = 0;
        let scan = scan_log(&bytes, ScanStart::default());
        assert!(matches!(scan.end, LogEnd::Corrupt { line: 3, .. }), "NUL at {at}: {:?}", scan.end);
    }
}

/// A durable prefix, then one unacknowledged append of several long lines; the crash zeroes
/// `[hole_from, hole_to)` and the file ends at `cut`.
struct Shape {
    durable: Vec<u8>,
    append: Vec<u8>,
    /// Start offset (in the file) of each line of the append, and of the end.
    line_starts: Vec<usize>,
}

fn shape() -> Shape {
    let durable: Vec<u8> = (1..=2).flat_map(|s| encode_record(&record(s, json!({"pad": "d".repeat(300)})))).collect();
    let records: Vec<EventRecord> =
        (3..=6).map(|s| record(s, json!({"pad": "x".repeat(400 + 37 * s as usize)}))).collect();
    let append = encode_append(&records);
    let mut line_starts = vec![durable.len()];
    line_starts.extend(append.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| durable.len() + i + 1));
    Shape { durable, append, line_starts }
}

/// Hole starts a crash can produce: every aligned offset inside the append, and the append's
/// first byte (the old end of file).
fn hole_starts(s: &Shape) -> Vec<usize> {
    let end = s.durable.len() + s.append.len();
    let mut starts = vec![s.durable.len()];
    starts.extend((0..end).step_by(HOLE_ALIGN as usize).filter(|o| *o > s.durable.len()));
    starts
}

/// Whether the scanner can prove the append's final line belongs to the holed append: the line
/// before it is untouched, or shows its `more` marker and CRC after the hole.
fn final_line_linked(s: &Shape, hole_from: usize, hole_to: usize) -> bool {
    let n = s.line_starts.len();
    let (prev_start, final_start) = (s.line_starts[n - 3], s.line_starts[n - 2]);
    let untouched = hole_to <= prev_start || hole_from >= final_start;
    let visible_tail = final_start - 1 - hole_to.max(prev_start);
    untouched || (hole_to < final_start && visible_tail >= 30)
}

#[test]
fn a_torn_append_with_a_zero_hole_is_torn_at_every_aligned_offset() {
    let s = shape();
    let end = s.durable.len() + s.append.len();
    let full: Vec<u8> = s.durable.iter().chain(&s.append).copied().collect();
    let (mut torn, mut corrupt) = (0, 0);
    for hole_from in hole_starts(&s) {
        let ends = (hole_from + 1..=end).filter(|o| *o % HOLE_ALIGN as usize == 0 || *o == end);
        for hole_to in ends {
            // The file ends at the hole's end, or anywhere after it up to the whole append.
            let cuts = (hole_to..=end).step_by(41).chain([end - 1, end]).filter(|c| *c >= hole_to);
            for cut in cuts {
                let mut bytes = full[..cut].to_vec();
                bytes[hole_from..hole_to].fill(0);
                let scan = scan_log(&bytes, ScanStart::default());
                let final_start = s.line_starts[s.line_starts.len() - 2];
                let final_complete = cut >= end - 1 && hole_to <= final_start;
                let what = format!("hole {hole_from}..{hole_to}, cut {cut}: {:?}", scan.end);
                assert_eq!(scan.records.len(), 2, "{what}");
                assert_eq!(scan.valid_len, s.durable.len() as u64, "{what}");
                if final_complete && !final_line_linked(&s, hole_from, hole_to) {
                    assert!(matches!(scan.end, LogEnd::Corrupt { .. }), "{what}");
                    corrupt += 1;
                } else {
                    let expect =
                        LogEnd::Torn { valid_len: s.durable.len() as u64, torn_len: (cut - s.durable.len()) as u64 };
                    assert_eq!(scan.end, expect, "{what}");
                    torn += 1;
                }
            }
        }
    }
    eprintln!("zero holes: {torn} shapes torn, {corrupt} ambiguous shapes refused as corrupt");
    assert!(torn >= 90, "{torn} torn shapes");
    assert!(corrupt <= torn / 10, "{corrupt} shapes are ambiguous (refused, never dropped)");
}

#[test]
fn a_hole_followed_by_a_separate_complete_append_is_corruption() {
    // An acknowledged single-event line zeroed in place, followed by a later acknowledged
    // line: the later line ends its own append, so the damage is not a torn tail.
    let lines: Vec<Vec<u8>> = (1..=4).map(|s| encode_record(&record(s, json!({"pad": "y".repeat(900)})))).collect();
    let bytes0 = lines.concat();
    let second_start = lines[0].len();
    let from = second_start.next_multiple_of(HOLE_ALIGN as usize);
    let to = from + HOLE_ALIGN as usize;
    let mut bytes = bytes0.clone();
    bytes[from..to].fill(0);
    let scan = scan_log(&bytes, ScanStart::default());
    assert_eq!(scan.records.len(), 1);
    assert_eq!(scan.end, LogEnd::Corrupt { line: 2, offset: second_start as u64, error: LineError::Nul });
}

#[test]
fn zeros_that_do_not_end_on_a_block_boundary_are_corruption() {
    let mut bytes = three_lines();
    let valid = bytes.len();
    bytes.extend([0u8; 40]);
    bytes.push(b'\n');
    bytes.extend([0u8; 10]);
    let scan = scan_log(&bytes, ScanStart::default());
    assert!(matches!(scan.end, LogEnd::Corrupt { line: 4, .. }), "{:?}", scan.end);
    bytes.truncate(valid + 40);
    let scan = scan_log(&bytes, ScanStart::default());
    assert_eq!(scan.end, LogEnd::Torn { valid_len: valid as u64, torn_len: 40 }, "zeros to the end of the file");
}
