//! The JSONL codec: exact line format, round trips, torn tails at every offset, bit flips.

use proptest::prelude::*;
use serde_json::json;

use crate::codec::{decode_line, encode_append, encode_record, line_continues, scan_log, LineError, LogEnd, ScanStart};
use crate::types::{EventId, EventRecord, Metadata, Timestamp};

fn record(seq: u64, pos: u64, data: serde_json::Value) -> EventRecord {
    EventRecord {
        version: 1,
        seq,
        pos,
        id: EventId(format!("00000000-0000-0000-0000-{seq:012x}")),
        event_type: "Deposited".into(),
        data,
        ts: Timestamp(1_795_391_118_123),
        meta: Metadata::default().with_actor("ada").with_correlation_id("c-1"),
    }
}

fn log_of(records: &[EventRecord]) -> Vec<u8> {
    records.iter().flat_map(encode_record).collect()
}

fn config() -> ProptestConfig {
    // No failure files: the tests also run on wasm32-wasip1 without a filesystem.
    ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn line_format_is_pinned() {
    let line = encode_record(&record(3, 1042, json!({"amount": 100, "note": "b\"q"})));
    insta::assert_snapshot!(String::from_utf8(line).unwrap(), @r#"{"seq":3,"pos":1042,"id":"00000000-0000-0000-0000-000000000003","type":"Deposited","data":{"amount":100,"note":"b\"q"},"ts":1795391118123,"meta":{"actor":"ada","correlation_id":"c-1"},"crc":"82df6bbf"}"#);
}

#[test]
fn line_is_plain_json_for_jq() {
    let line = encode_record(&record(1, 1, json!({"amount": 5})));
    let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(value["crc"].as_str().unwrap().len(), 8);
    assert_eq!(value["data"]["amount"], 5);
}

#[test]
fn an_append_marks_every_line_but_its_last() {
    let bytes = encode_append(&[record(1, 1, json!(1)), record(2, 2, json!(2))]);
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').map(|l| &l[..l.len() - 1]).collect();
    insta::assert_snapshot!(String::from_utf8(lines[0].to_vec()).unwrap(), @r#"{"seq":1,"pos":1,"id":"00000000-0000-0000-0000-000000000001","type":"Deposited","data":1,"ts":1795391118123,"meta":{"actor":"ada","correlation_id":"c-1"},"more":true,"crc":"6d34791b"}"#);
    assert_eq!(lines.iter().map(|l| line_continues(l)).collect::<Vec<_>>(), [true, false]);
    assert_eq!(decode_line(lines[0]).unwrap(), record(1, 1, json!(1)), "the marker is framing, not data");
    assert_eq!(encode_append(&[record(1, 1, json!(1))]), encode_record(&record(1, 1, json!(1))));
}

#[test]
fn a_log_ending_inside_an_append_drops_the_whole_append_as_torn() {
    let mut bytes = encode_record(&record(1, 1, json!(1)));
    let kept = bytes.len() as u64;
    let append = encode_append(&[record(2, 2, json!(2)), record(3, 3, json!(3)), record(4, 4, json!(4))]);
    let second_line_end = append.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
    bytes.extend_from_slice(&append[..second_line_end]);
    let scan = scan_log(&bytes, ScanStart::default());
    assert_eq!(scan.records, [record(1, 1, json!(1))]);
    assert_eq!(scan.valid_len, kept);
    assert_eq!(scan.end, LogEnd::Torn { valid_len: kept, torn_len: second_line_end as u64 });
    let mut corrupt = bytes.clone();
    corrupt.extend_from_slice(b"garbage\n");
    let scan = scan_log(&corrupt, ScanStart::default());
    assert_eq!((scan.records.len(), scan.valid_len), (1, kept), "a repair cut keeps no part of the append");
    assert!(matches!(scan.end, LogEnd::Corrupt { line: 4, .. }), "{:?}", scan.end);
}

#[test]
fn out_of_order_seq_is_corruption() {
    let mut bytes = log_of(&[record(1, 1, json!(1))]);
    bytes.extend(encode_record(&record(3, 2, json!(2))));
    let scan = scan_log(&bytes, ScanStart::default());
    assert_eq!(scan.records.len(), 1);
    assert!(matches!(scan.end, LogEnd::Corrupt { line: 2, error: LineError::BadSeq { expected: 2, found: 3 }, .. }));
}

#[test]
fn zero_filled_tail_is_torn() {
    let mut bytes = log_of(&[record(1, 1, json!(1))]);
    let valid = bytes.len() as u64;
    bytes.resize(1024, 0);
    bytes.push(b'\n');
    bytes.extend([0u8; 10]);
    let scan = scan_log(&bytes, ScanStart::default());
    assert_eq!(scan.end, LogEnd::Torn { valid_len: valid, torn_len: 1035 - valid });
}

#[test]
fn scan_can_start_mid_file() {
    let records: Vec<_> = (1..=4).map(|i| record(i, i * 10, json!(i))).collect();
    let bytes = log_of(&records);
    let first_two = log_of(&records[..2]).len();
    let start = ScanStart { offset: first_two as u64, line: 3, next_seq: 3 };
    let scan = scan_log(&bytes[first_two..], start);
    assert_eq!(scan.records, records[2..]);
    assert_eq!(scan.valid_len, bytes.len() as u64);
}

fn arb_data() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~\u{e9}\u{1F600}\n\"\\\\]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_log() -> impl Strategy<Value = Vec<EventRecord>> {
    prop::collection::vec((arb_data(), "[A-Za-z]{1,10}", any::<u64>()), 1..6).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (data, event_type, ts))| EventRecord {
                event_type,
                ts: Timestamp(ts),
                ..record(i as u64 + 1, i as u64 * 7 + 1, data)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_records_round_trip(records in arb_log()) {
        let bytes = log_of(&records);
        let scan = scan_log(&bytes, ScanStart::default());
        prop_assert_eq!(&scan.records, &records);
        prop_assert_eq!(scan.end, LogEnd::Clean);
        prop_assert_eq!(scan.valid_len, bytes.len() as u64);
    }

    #[test]
    fn truncation_at_every_offset_is_clean_or_torn(records in arb_log()) {
        let bytes = log_of(&records);
        let line_ends: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
        for cut in 0..=bytes.len() {
            let scan = scan_log(&bytes[..cut], ScanStart::default());
            let complete = line_ends.iter().filter(|e| **e <= cut).count();
            let valid_len = line_ends.iter().rfind(|e| **e <= cut).copied().unwrap_or(0);
            if line_ends.contains(&(cut + 1)) {
                // Only the newline is missing: the complete line is kept, its newline restored.
                prop_assert_eq!(scan.records.len(), complete + 1);
                prop_assert_eq!(scan.valid_len, cut as u64 + 1);
                prop_assert_eq!(&scan.end, &LogEnd::MissingNewline { line_end: cut as u64 });
                continue;
            }
            prop_assert_eq!(scan.records.len(), complete);
            prop_assert_eq!(scan.valid_len, valid_len as u64);
            if valid_len == cut {
                prop_assert_eq!(&scan.end, &LogEnd::Clean);
            } else {
                prop_assert_eq!(&scan.end, &LogEnd::Torn { valid_len: valid_len as u64, torn_len: (cut - valid_len) as u64 });
            }
        }
    }

    /// Logs of several multi-event appends, cut anywhere: only whole appends come back.
    #[test]
    fn truncation_never_keeps_part_of_an_append(records in arb_log(), split in any::<prop::sample::Index>()) {
        let at = split.index(records.len()) + 1;
        let (first, second) = records.split_at(at);
        let mut bytes = encode_append(first);
        let first_len = bytes.len();
        bytes.extend(encode_append(second));
        for cut in 0..=bytes.len() {
            let scan = scan_log(&bytes[..cut], ScanStart::default());
            let (expected, valid_len) = if cut >= bytes.len() - 1 {
                (records.len(), bytes.len())
            } else if cut >= first_len - 1 {
                (first.len(), first_len)
            } else {
                (0, 0)
            };
            prop_assert_eq!(scan.records.len(), expected, "cut at {}", cut);
            prop_assert_eq!(scan.valid_len, valid_len as u64, "cut at {}", cut);
        }
    }

    #[test]
    fn any_single_bit_flip_in_a_complete_line_is_caught(records in arb_log(), line_pick in any::<prop::sample::Index>(), bit_pick in any::<prop::sample::Index>()) {
        let lines: Vec<Vec<u8>> = records.iter().map(encode_record).collect();
        let target = line_pick.index(lines.len());
        let offset: usize = lines[..target].iter().map(Vec::len).sum();
        // Any bit of the line but its newline (flipping that merges or splits lines: covered below).
        let bit = bit_pick.index((lines[target].len() - 1) * 8);
        let mut bytes = lines.concat();
        bytes[offset + bit / 8] ^= 1 << (bit % 8);
        let scan = scan_log(&bytes, ScanStart::default());
        prop_assert_eq!(scan.records.len(), target, "records after the flipped line must not be returned");
        match scan.end {
            LogEnd::Corrupt { line, offset: at, .. } => {
                prop_assert_eq!(line, target as u64 + 1);
                prop_assert_eq!(at, offset as u64);
            }
            other => prop_assert!(false, "a flipped line was not reported as corrupt: {:?}", other),
        }
    }

    #[test]
    fn decode_never_accepts_a_flipped_line(records in arb_log(), bit_pick in any::<prop::sample::Index>()) {
        let line = encode_record(&records[0]);
        let body = &line[..line.len() - 1];
        let bit = bit_pick.index(body.len() * 8);
        let mut flipped = body.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_line(&flipped).is_err());
    }

    /// Issue #12 item 4: a log of complete appends (everything acknowledged) with any single
    /// bit flipped, newlines included, is reported corrupt at or before the flipped line; it is
    /// never a torn tail or a missing newline, and no record after the damage comes back.
    #[test]
    fn a_bit_flip_anywhere_in_a_complete_log_is_never_torn(records in arb_log(), bit_pick in any::<prop::sample::Index>()) {
        let bytes = log_of(&records);
        let bit = bit_pick.index(bytes.len() * 8);
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let scan = scan_log(&flipped, ScanStart::default());
        let line_of_flip = bytes[..bit / 8].iter().filter(|b| **b == b'\n').count();
        prop_assert!(matches!(scan.end, LogEnd::Corrupt { .. }), "flip of bit {}: {:?}", bit, scan.end);
        prop_assert!(scan.records.len() <= line_of_flip);
    }
}

/// A line as another tool writes it: the record without its `id` key, CRC'd like any line.
fn line_without_id(record: &EventRecord) -> Vec<u8> {
    let mut value = serde_json::to_value(record).unwrap();
    value.as_object_mut().unwrap().remove("id");
    let mut body = serde_json::to_vec(&value).unwrap();
    body.pop();
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&body);
    body.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    body
}

/// eventfold-es lines may lack an id: such a line reads, with an id derived from its position
/// (the same on every read), instead of stopping the stream (or, as the last line, the store).
#[test]
fn eventfold_es_event_without_id_reads_with_a_derived_id() {
    let first = record(1, 7, json!({"amount": 5}));
    let second = record(2, 9, json!({"amount": 6}));
    let mut log = encode_record(&first);
    log.extend(line_without_id(&second));
    let scan = scan_log(&log, ScanStart::default());
    assert_eq!(scan.end, LogEnd::Clean);
    assert_eq!(scan.records.len(), 2);
    assert_eq!(scan.records[0].id, first.id);
    assert_eq!(scan.records[1].id, EventId::for_position(9));
    assert_eq!(scan.records[1].id.0, "00000000-0000-8000-8000-000000000009");
    assert_eq!(scan.records[1].data, second.data);
    let again = decode_line(line_without_id(&second).strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(again.id, scan.records[1].id);
    assert_ne!(EventId::for_position(1 << 48).0, EventId::for_position(0).0);
}
