//! The JSONL record codec: one event per line, a fixed-width CRC-32C as the last key, and a pure
//! scanner that returns the valid records of a log and classifies how the log ends.
//!
//! A line is `{"seq":1,"pos":7,"id":"…","type":"…","data":…,"ts":…,"meta":{…},"crc":"89abcdef"}\n`.
//! The CRC covers every byte before `,"crc"`, so a line is verified without parsing JSON, and it is
//! always the last 18 bytes before the newline: `,"crc":"xxxxxxxx"}`.
//!
//! An append of several events (one command's events, or a group commit) is all-or-nothing: every
//! line of it but the last carries `,"more":true` just before the CRC key. A log whose last valid
//! line says `more` ends inside an append that never completed (a crash between the write and the
//! fsync that would have acknowledged it), so the scanner classifies that whole append as torn,
//! not only its last partial line. Single-event appends carry no marker, so they cost nothing.

use crc::{Crc, Table, CRC_32_ISCSI};

use crate::types::EventRecord;

/// CRC-32C, slice-by-16 tables: the byte-at-a-time default was 40% of decoding a line (perf,
/// plugin bench "fold from log lines"); portable, so it still runs on wasm32.
const CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);
/// `,"crc":"` + 8 hex digits + `"}`.
const CRC_SUFFIX_LEN: usize = 18;
const CRC_KEY: &[u8] = b",\"crc\":\"";

/// Deepest nesting (arrays/objects) allowed in an event's `data` or in a metadata value. A line
/// is decoded with serde_json's 128-level recursion limit and the record itself adds up to three
/// levels (`{"meta":{"extra":{..}}}`): anything deeper would be written, acknowledged, and then
/// refuse to decode, so the aggregate machine refuses it before appending.
pub const MAX_JSON_DEPTH: usize = 100;

/// Nesting depth of `value`: 0 for a scalar, 1 for `[]` or `{}`, 2 for `[[1]]`, ... Iterative,
/// so a hostile value cannot overflow the stack here.
pub fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(depth);
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth);
                stack.extend(map.values().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Length of `value` serialized as JSON, counted without building the text. Serializing
/// recurses once per level: call it only on a value whose depth was checked
/// ([`crate::depth::exceeds`]).
pub fn json_len(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Marker before the CRC key on each line of an append that continues on the next line.
const MORE_MARKER: &[u8] = b",\"more\":true";

/// Encodes one record as a complete line (an append of one event), newline included.
pub fn encode_record(record: &EventRecord) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    encode_line_into(&mut line, record, false);
    line
}

/// Encodes the records of one append as lines that recovery keeps or drops together: every line
/// but the last carries the `more` marker.
pub fn encode_append(records: &[EventRecord]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256 * records.len());
    for (i, record) in records.iter().enumerate() {
        encode_line_into(&mut bytes, record, i + 1 < records.len());
    }
    bytes
}

/// Appends one line of an append to `out`; `append_continues` is true for every line of the
/// append but its last (see [`encode_append`], which does this for a whole append).
pub fn encode_line_into(out: &mut Vec<u8>, record: &EventRecord, append_continues: bool) {
    let start = out.len();
    serde_json::to_writer(&mut *out, record).expect("an EventRecord always serializes");
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    if append_continues {
        out.extend_from_slice(MORE_MARKER);
    }
    let crc = CRC32C.checksum(&out[start..]);
    out.extend_from_slice(CRC_KEY);
    out.extend_from_slice(format!("{crc:08x}").as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Why a complete line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line does not end with `,"crc":"xxxxxxxx"}`.
    #[error("no CRC suffix")]
    NoCrc,
    /// The stored CRC does not match the bytes.
    #[error("CRC mismatch: stored {stored:08x}, computed {computed:08x}")]
    CrcMismatch {
        /// CRC written in the line.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The CRC matches but the JSON does not decode as a record.
    #[error("bad record JSON: {0}")]
    BadJson(String),
    /// The record's `seq` breaks the stream's 1, 2, 3, … order.
    #[error("seq {found} where {expected} was expected")]
    BadSeq {
        /// Expected seq.
        expected: u64,
        /// Seq in the line.
        found: u64,
    },
    /// The line holds NUL bytes (zero-filled blocks after a crash, or damage).
    #[error("NUL bytes in line")]
    Nul,
    /// A complete, valid last line is followed by another byte where its newline belongs (a
    /// torn write never does that: it is damage, e.g. a flipped bit of the newline).
    #[error("byte {found:#04x} where the line's newline belongs")]
    BadNewline {
        /// The byte found.
        found: u8,
    },
}

/// Whether a line (without its newline) carries the `more` marker, i.e. its append continues on
/// the next line. Looks at the bytes only; the CRC is not checked here.
pub fn line_continues(line: &[u8]) -> bool {
    line.len() >= CRC_SUFFIX_LEN && line[..line.len() - CRC_SUFFIX_LEN].ends_with(MORE_MARKER)
}

/// Verifies and decodes one line (without its trailing newline).
pub fn decode_line(line: &[u8]) -> Result<EventRecord, LineError> {
    decode_framed_line(line).map(|(record, _more)| record)
}

/// Verifies and decodes one line, and says whether its append continues on the next line.
fn decode_framed_line(line: &[u8]) -> Result<(EventRecord, bool), LineError> {
    if line.contains(&0) {
        return Err(LineError::Nul);
    }
    if line.len() < CRC_SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
        return Err(LineError::NoCrc);
    }
    let (body, suffix) = line.split_at(line.len() - CRC_SUFFIX_LEN);
    if !suffix.starts_with(CRC_KEY) {
        return Err(LineError::NoCrc);
    }
    let hex = &suffix[CRC_KEY.len()..CRC_KEY.len() + 8];
    let stored = std::str::from_utf8(hex)
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or(LineError::NoCrc)?;
    let computed = CRC32C.checksum(body);
    if stored != computed {
        return Err(LineError::CrcMismatch { stored, computed });
    }
    // The last key of a record is always `meta` (an object, ending in `}`), so a body ending in
    // the marker can only be one the encoder wrote.
    let more = body.ends_with(MORE_MARKER);
    let body = if more { &body[..body.len() - MORE_MARKER.len()] } else { body };
    let mut json = Vec::with_capacity(body.len() + 1);
    json.extend_from_slice(body);
    json.push(b'}');
    let mut record: EventRecord = serde_json::from_slice(&json).map_err(|e| LineError::BadJson(e.to_string()))?;
    if record.id.is_missing() {
        record.id = crate::types::EventId::for_position(record.pos);
    }
    Ok((record, more))
}

/// Where a scan starts: byte offset and line number of the first byte given, and the `seq` the
/// first record must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanStart {
    /// Byte offset in the file of the first byte passed to the scanner.
    pub offset: u64,
    /// 1-based line number of that byte's line.
    pub line: u64,
    /// `seq` the first record must carry.
    pub next_seq: u64,
}

impl Default for ScanStart {
    fn default() -> Self {
        ScanStart { offset: 0, line: 1, next_seq: 1 }
    }
}

/// How a log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// Every byte belongs to a valid, complete line.
    Clean,
    /// The last line is complete and valid (CRC, `seq`) and ends an append, but its newline is
    /// missing (or lies in a zero-filled hole that runs to the end of the file). The line is
    /// kept: recovery cuts the file at `line_end` and writes the newline there, durably.
    /// `Scan::valid_len` counts the restored newline (`line_end + 1`).
    MissingNewline {
        /// File offset where the newline belongs (just after the line's closing `}`).
        line_end: u64,
    },
    /// A torn write (see the module doc of [`scan_log`] for the exact rule): everything before
    /// `valid_len` is good; the `torn_len` bytes after it should be quarantined and truncated.
    Torn {
        /// Length in bytes (file offset) of the valid prefix.
        valid_len: u64,
        /// Bytes after it.
        torn_len: u64,
    },
    /// A complete line is invalid: the log is corrupt from `offset` on. Never skipped.
    Corrupt {
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's first byte.
        offset: u64,
        /// What is wrong with it.
        error: LineError,
    },
}

/// The result of scanning a log.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Valid records, in order (those before any corruption).
    pub records: Vec<EventRecord>,
    /// Byte offset (file offset) just after the last valid record (after recovery: with
    /// [`LogEnd::MissingNewline`] it counts the newline to be restored).
    pub valid_len: u64,
    /// How the log ends.
    pub end: LogEnd,
}

/// Granularity of a zero-filled hole a crash can leave: the smallest block a disk or file
/// system writes (one sector). A hole starts on such a boundary (or where the durable file
/// ended, which is always a line start) and ends on one or at the end of the file.
pub const HOLE_ALIGN: u64 = 512;

/// Scans `bytes` (a log, or its tail starting at `start`, which must be the start of an append)
/// into records and an end classification.
///
/// The classification rule, exactly:
///
/// 1. Lines are split at `\n`. A complete line that verifies (CRC, JSON, `seq` = previous + 1)
///    is a record. An append left open at the end (its last valid line carries the `more`
///    marker) is not returned: it is torn back to the append's first line.
/// 2. **Torn tail.** The bytes after the last newline (no newline of their own) are a torn
///    write, unless they begin with a complete valid line (rule 3).
/// 3. **Missing newline.** If those final bytes are a complete valid line followed by nothing,
///    or only by a zero-filled hole (rule 4) running to the end of the file, the line is kept
///    ([`LogEnd::MissingNewline`]): a torn write may stop just before a newline, and keeping a
///    complete, verified line loses nothing. If the line is followed by any other byte (e.g. a
///    bit flip of its newline), that is corruption ([`LineError::BadNewline`]): a torn write
///    only ever leaves a prefix of what was written, or zeros.
/// 4. **Holes.** A *hole* is a maximal run of NUL bytes that starts at a file offset that is a
///    multiple of [`HOLE_ALIGN`] or at the start of a line, and ends at a multiple of
///    [`HOLE_ALIGN`] or at the end of the file: what a power cut leaves when the file's size
///    (or a later page) reached the disk but an earlier page did not. Any other NUL (a single
///    flipped bit) is damage, never a hole. evfold never writes a NUL byte.
/// 5. **Torn append with holes.** A complete line holding NUL bytes starts a *damaged region*
///    that runs to the end of the file. The region is torn (the last, unacknowledged append:
///    an acknowledged append was fsynced whole, so it has no hole) when every part of it is
///    consistent with one append that never finished: every NUL run in it is a hole; every
///    complete line in it without NULs is valid (CRC, `seq` increasing) and carries the `more`
///    marker, except that the line ending the append may follow when the line just before it
///    is linked to it (it says `more`, or its bytes after the hole end with the `more` marker
///    and CRC key); nothing follows a line that ends the append; and a final unterminated part
///    is a prefix of a line, or a complete valid line as above followed by nothing or a hole.
///    Anything else (a valid line that ends an append and is not provably part of the damaged
///    one, an invalid line without NULs, a stray NUL) makes the first damaged line
///    [`LogEnd::Corrupt`]. A complete, CRC-valid line that ends an append is therefore never
///    quarantined, except as the final line of an append that has a hole.
pub fn scan_log(bytes: &[u8], start: ScanStart) -> Scan {
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut line_no = start.line;
    let mut next_seq = start.next_seq;
    // Where the append in progress began: (byte index, records before it). None between appends.
    let mut open_append: Option<(usize, usize)> = None;
    let abs = |i: usize| start.offset + i as u64;
    let finish = |mut records: Vec<EventRecord>, valid_len: u64, end: LogEnd, open: Option<(usize, usize)>| {
        let Some((append_at, kept)) = open else {
            return Scan { records, valid_len, end };
        };
        records.truncate(kept);
        let end = match end {
            LogEnd::Corrupt { .. } => end,
            LogEnd::Clean | LogEnd::Torn { .. } | LogEnd::MissingNewline { .. } => {
                LogEnd::Torn { valid_len: abs(append_at), torn_len: (bytes.len() - append_at) as u64 }
            }
        };
        Scan { records, valid_len: abs(append_at), end }
    };
    let holes = Holes { base: start.offset, eof: abs(bytes.len()) };
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            let torn = LogEnd::Torn { valid_len: abs(at), torn_len: rest.len() as u64 };
            let Some((len, r, more)) = complete_line_prefix(rest) else {
                return finish(records, abs(at), torn, open_append);
            };
            let after = &rest[len..];
            let error = if r.seq != next_seq {
                Some(LineError::BadSeq { expected: next_seq, found: r.seq })
            } else if !(after.is_empty() || after[0] == 0 && holes.all_holes(after, at + len, false)) {
                Some(LineError::BadNewline { found: after[0] })
            } else {
                None
            };
            if let Some(error) = error {
                return finish(
                    records,
                    abs(at),
                    LogEnd::Corrupt { line: line_no, offset: abs(at), error },
                    open_append,
                );
            }
            match (more, open_append) {
                (true, None) => open_append = Some((at, records.len())),
                (false, Some(_)) => open_append = None,
                _ => {}
            }
            records.push(r);
            let line_end = abs(at + len);
            return finish(records, line_end + 1, LogEnd::MissingNewline { line_end }, open_append);
        };
        let line = &rest[..nl];
        let record = decode_framed_line(line).and_then(|(r, more)| {
            if r.seq == next_seq {
                Ok((r, more))
            } else {
                Err(LineError::BadSeq { expected: next_seq, found: r.seq })
            }
        });
        match record {
            Ok((r, more)) => {
                match (more, open_append) {
                    (true, None) => open_append = Some((at, records.len())),
                    (false, Some(_)) => open_append = None,
                    _ => {}
                }
                records.push(r);
            }
            Err(LineError::Nul) if holes.region_is_torn(rest, at, next_seq, open_append.is_some()) => {
                let end = LogEnd::Torn { valid_len: abs(at), torn_len: rest.len() as u64 };
                return finish(records, abs(at), end, open_append);
            }
            Err(error) => {
                let end = LogEnd::Corrupt { line: line_no, offset: abs(at), error };
                return finish(records, abs(at), end, open_append);
            }
        }
        next_seq += 1;
        line_no += 1;
        at += nl + 1;
    }
    finish(records, abs(at), LogEnd::Clean, open_append)
}

/// The complete valid line at the start of `bytes` (which holds no newline), if any: its
/// length (without a newline), record and `more` flag. Tries every place the CRC key could end.
fn complete_line_prefix(bytes: &[u8]) -> Option<(usize, EventRecord, bool)> {
    (CRC_SUFFIX_LEN + 2..=bytes.len())
        .filter(|&end| bytes[..end].ends_with(b"\"}") && bytes[end - CRC_SUFFIX_LEN..].starts_with(CRC_KEY))
        .find_map(|end| decode_framed_line(&bytes[..end]).ok().map(|(r, more)| (end, r, more)))
}

/// Whether every NUL run in `part` (which starts at file offset `offset`, at a line start, in a
/// file `file_len` bytes long) is a hole a crash can leave (rule 4 of [`scan_log`]); true if
/// it holds no NUL. For append-only files without CRCs (dead letters), which share the rule.
pub fn nul_runs_are_holes(part: &[u8], offset: u64, file_len: u64) -> bool {
    Holes { base: offset, eof: file_len }.all_holes(part, 0, true)
}

/// Hole arithmetic in file offsets: `base` is the file offset of the scanned bytes' index 0.
struct Holes {
    base: u64,
    eof: u64,
}

impl Holes {
    /// Whether every NUL run in `part` (at index `at` of the scanned bytes; `starts_line` when
    /// a line begins there) is a hole (rule 4 of [`scan_log`]).
    fn all_holes(&self, part: &[u8], at: usize, starts_line: bool) -> bool {
        let mut i = 0;
        while i < part.len() {
            if part[i] != 0 {
                i += 1;
                continue;
            }
            let run = part[i..].iter().take_while(|&&b| b == 0).count();
            let (from, to) = (self.base + (at + i) as u64, self.base + (at + i + run) as u64);
            let line_start = if i == 0 { starts_line } else { part[i - 1] == b'\n' };
            let starts = from % HOLE_ALIGN == 0 || line_start;
            let ends = to % HOLE_ALIGN == 0 || to == self.eof;
            if !(starts && ends) {
                return false;
            }
            i += run;
        }
        true
    }

    /// Rule 5 of [`scan_log`]: whether the damaged region `region` (from the first complete
    /// line with NULs, at index `at`, to the end) is what a crash left of the last append.
    /// `next_seq` is the `seq` the damaged line would have had; `continues` says whether the
    /// line before it carries the `more` marker.
    fn region_is_torn(&self, region: &[u8], at: usize, next_seq: u64, continues: bool) -> bool {
        let mut offset = 0usize;
        // Lowest seq a later valid line may carry, and whether it must be exactly that.
        let (mut min_seq, mut exact) = (next_seq, true);
        let mut linked = continues;
        let mut ended = false;
        while offset < region.len() {
            if ended {
                return false; // something follows the line that ended the append
            }
            let part = &region[offset..];
            let (segment, complete) = match part.iter().position(|&b| b == b'\n') {
                Some(nl) => (&part[..nl], true),
                None => (part, false),
            };
            if segment.contains(&0) {
                if !self.all_holes(segment, at + offset, true) {
                    return false;
                }
                linked = tail_continues(segment);
                (min_seq, exact) = (min_seq + 1, false);
            } else if complete {
                let Ok((r, more)) = decode_framed_line(segment) else { return false };
                if r.seq < min_seq || (exact && r.seq != min_seq) || !(more || linked) {
                    return false;
                }
                (min_seq, exact, linked, ended) = (r.seq + 1, true, more, !more);
            } else if let Some((len, r, more)) = complete_line_prefix(segment) {
                // A complete line at the very end: only its newline may be missing.
                let seq_ok = r.seq >= min_seq && (!exact || r.seq == min_seq);
                return len == segment.len() && seq_ok && (more || linked);
            }
            offset += segment.len() + usize::from(complete);
        }
        true
    }
}

/// Whether the bytes of a damaged line after its last NUL end like a line whose append
/// continues: the `more` marker, then the CRC key and its 8 hex digits.
fn tail_continues(segment: &[u8]) -> bool {
    let after = segment.iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
    let tail = &segment[after..];
    tail.len() >= MORE_MARKER.len() + CRC_SUFFIX_LEN && line_continues(tail)
}

#[cfg(test)]
mod depth_tests {
    use serde_json::json;

    use super::{json_depth, MAX_JSON_DEPTH};

    #[test]
    fn depth_counts_nested_containers() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([])), 1);
        assert_eq!(json_depth(&json!({"a": [[1], 2]})), 3);
        let deep = (0..MAX_JSON_DEPTH).fold(json!(null), |v, _| json!([v]));
        assert_eq!(json_depth(&deep), MAX_JSON_DEPTH);
    }
}
