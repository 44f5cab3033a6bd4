//! One stream's JSONL log on disk: load with recovery (torn tail quarantined and truncated, a
//! complete last line's missing newline restored, corruption refused with file/line/offset; the
//! rule is `scan_log`'s), and random access to one record by byte offset.

use std::path::Path;

use evfold_core::{decode_line, line_continues, scan_log, EventId, EventRecord, LogEnd, Scan, ScanStart};

use crate::error::{Corruption, StoreError};
use crate::fsio;

/// What to do with a torn last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// Writer mode: copy the torn bytes to `events.jsonl.torn-<offset>`, truncate, fsync.
    Quarantine,
    /// Reader mode: ignore it (another process may be writing it right now).
    Ignore,
}

/// The valid records of a log, with the byte offset of each.
#[derive(Debug, Default)]
pub struct LoadedLog {
    /// Records in order.
    pub records: Vec<EventRecord>,
    /// Byte offset of each record's line.
    pub offsets: Vec<u64>,
    /// Length of the valid prefix (the file length after recovery).
    pub len: u64,
}

/// Loads a log (`None` if the file does not exist), recovering or refusing as the design says.
pub fn load(path: &Path, torn: TornTail) -> Result<Option<LoadedLog>, StoreError> {
    match load_prefix(path, torn)? {
        None => Ok(None),
        Some((_, Some(corrupt))) => Err(corrupt.into()),
        Some((loaded, None)) => Ok(Some(loaded)),
    }
}

/// Loads a log's valid prefix, recovering its end (torn tail quarantined and truncated, a
/// missing newline restored; both only in writer mode) and saying where it is corrupt, if it
/// is: the records before a corrupt line are returned with the corruption, not instead of it.
pub fn load_prefix(path: &Path, torn: TornTail) -> Result<Option<(LoadedLog, Option<Corruption>)>, StoreError> {
    Ok(load_valid(path, torn)?.map(|(_, loaded, corrupt)| (loaded, corrupt)))
}

/// A log's bytes, what loaded from them, and the corruption that stopped the load, if any.
type ValidPrefix = (Vec<u8>, LoadedLog, Option<Corruption>);

/// [`load_prefix`], also returning the valid bytes (as they are after recovery).
fn load_valid(path: &Path, torn: TornTail) -> Result<Option<ValidPrefix>, StoreError> {
    let Some(bytes) = fsio::read_optional(path)? else { return Ok(None) };
    let scan = scan_log(&bytes, ScanStart::default());
    let mut corrupt = None;
    match scan.end.clone() {
        LogEnd::Clean => {}
        LogEnd::MissingNewline { line_end } => {
            if torn == TornTail::Quarantine {
                restore_newline(path, &bytes, line_end)?;
            }
        }
        LogEnd::Torn { valid_len, torn_len } => {
            if torn == TornTail::Quarantine {
                let cut = &bytes[valid_len as usize..];
                let backup = fsio::backup_cut(path, "torn", valid_len, cut)?;
                fsio::truncate_durable(path, valid_len)?;
                tracing::warn!(path = %path.display(), valid_len, torn_len, backup = %backup.display(),
                    "torn tail quarantined and truncated");
            }
        }
        LogEnd::Corrupt { line, offset, error } => {
            corrupt = Some(Corruption { path: path.to_owned(), line, offset, reason: error.to_string() });
        }
    }
    let bytes = valid_bytes(bytes, &scan);
    let offsets = line_offsets(&bytes);
    debug_assert_eq!(offsets.len(), scan.records.len());
    Ok(Some((bytes, LoadedLog { records: scan.records, offsets, len: scan.valid_len }, corrupt)))
}

/// The log's bytes as they are after recovery: the valid prefix, with a restored newline.
fn valid_bytes(mut bytes: Vec<u8>, scan: &Scan) -> Vec<u8> {
    if let LogEnd::MissingNewline { line_end } = scan.end {
        bytes.truncate(line_end as usize);
        bytes.push(b'\n');
    }
    bytes.truncate(scan.valid_len as usize);
    bytes
}

/// The last line of `path` is complete and valid but its newline is missing (or zeroed): cut
/// whatever follows it (quarantined first, if anything), write the newline, fsync. The line is
/// kept: dropping a complete, CRC-valid event could drop an acknowledged one.
pub fn restore_newline(path: &Path, bytes: &[u8], line_end: u64) -> Result<(), StoreError> {
    use std::os::unix::fs::FileExt;
    let cut = &bytes[line_end as usize..];
    if !cut.is_empty() {
        let backup = fsio::backup_cut(path, "torn", line_end, cut)?;
        fsio::truncate_durable(path, line_end)?;
        tracing::warn!(path = %path.display(), line_end, backup = %backup.display(), "zeros after the last line quarantined");
    }
    let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| StoreError::io(path, e))?;
    file.write_all_at(b"\n", line_end).map_err(|e| StoreError::io(path, e))?;
    file.sync_data().map_err(|e| StoreError::io(path, e))?;
    tracing::warn!(path = %path.display(), line_end, "the last line's missing newline was restored");
    Ok(())
}

/// Every record of a log and its valid length, decoding each line once; anything unusual (torn
/// tail, bad line, `seq` gap) goes through [`load`], so recovery and errors are identical.
pub fn load_records(path: &Path) -> Result<(Vec<EventRecord>, u64), StoreError> {
    let Some(bytes) = fsio::read_optional(path)? else { return Ok((Vec::new(), 0)) };
    if let Some(records) = fast_records(&bytes) {
        return Ok((records, bytes.len() as u64));
    }
    let loaded = load(path, TornTail::Quarantine)?.unwrap_or_default();
    Ok((loaded.records, loaded.len))
}

/// The records of a log whose every line is complete, valid and in `seq` order; `None` else.
fn fast_records(bytes: &[u8]) -> Option<Vec<EventRecord>> {
    let mut records: Vec<EventRecord> = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let nl = bytes[at..].iter().position(|b| *b == b'\n')?;
        let line = &bytes[at..at + nl];
        let record = decode_line(line).ok()?;
        if record.seq != records.len() as u64 + 1 {
            return None;
        }
        records.push(record);
        at += nl + 1;
        if at == bytes.len() && line_continues(line) {
            return None; // ends inside an append that never completed: the scanner drops it
        }
    }
    Some(records)
}

/// Start offsets of the complete lines in `bytes`.
fn line_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut start = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            offsets.push(start);
            start = i as u64 + 1;
        }
    }
    offsets
}

/// What the store needs to know about one valid line without decoding its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInfo {
    /// Stream version of the event.
    pub seq: u64,
    /// Store-wide position.
    pub pos: u64,
    /// Byte offset of the line.
    pub offset: u64,
    /// Line length without its newline.
    pub len: u64,
    /// Event id.
    pub id: EventId,
}

/// A log's bytes and the headers of its valid lines (CRC-checked, `seq`-checked).
#[derive(Debug, Default)]
pub struct Headers {
    /// The file's bytes after recovery (from `base` on).
    pub bytes: Vec<u8>,
    /// File offset of `bytes[0]` (0 unless only a tail was read).
    pub base: u64,
    /// Version before the first line held (0 unless only a tail was read).
    pub before_seq: u64,
    /// One per valid line.
    pub lines: Vec<LineInfo>,
}

impl Headers {
    /// Length of the valid log.
    pub fn len(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// The stream version.
    pub fn version(&self) -> u64 {
        self.before_seq + self.lines.len() as u64
    }

    /// Fully decodes the records with `seq > after_seq`.
    pub fn records_after(&self, path: &Path, after_seq: u64) -> Result<Vec<EventRecord>, StoreError> {
        let start = self.lines.partition_point(|l| l.seq <= after_seq);
        self.lines[start..]
            .iter()
            .map(|l| {
                let start = (l.offset - self.base) as usize;
                let line = &self.bytes[start..start + l.len as usize];
                decode_line(line).map_err(|e| StoreError::Corrupt {
                    path: path.to_owned(),
                    line: l.seq,
                    offset: l.offset,
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}

/// Like [`load`], but verifies lines by CRC and reads only `seq`, `pos` and `id`, decoding no
/// JSON (the open-time scan of every stream, and the actor's load before a snapshot's tail).
/// Any anomaly falls back to the core's scanner, so torn/corrupt classification is identical.
pub fn load_headers(path: &Path, torn: TornTail) -> Result<Option<Headers>, StoreError> {
    match load_headers_prefix(path, torn)? {
        None => Ok(None),
        Some((_, Some(corrupt))) => Err(corrupt.into()),
        Some((headers, None)) => Ok(Some(headers)),
    }
}

/// [`load_headers`] of a log's valid prefix, with where it is corrupt (see [`load_prefix`]).
pub fn load_headers_prefix(path: &Path, torn: TornTail) -> Result<Option<(Headers, Option<Corruption>)>, StoreError> {
    let Some(bytes) = fsio::read_optional(path)? else { return Ok(None) };
    if let Some(lines) = fast_headers(&bytes, 0, 0) {
        return Ok(Some((Headers { bytes, base: 0, before_seq: 0, lines }, None)));
    }
    let Some((bytes, loaded, corrupt)) = load_valid(path, torn)? else { return Ok(None) };
    let lines = loaded
        .records
        .into_iter()
        .zip(&loaded.offsets)
        .enumerate()
        .map(|(i, (r, offset))| {
            let end = loaded.offsets.get(i + 1).copied().unwrap_or(loaded.len);
            LineInfo { seq: r.seq, pos: r.pos, offset: *offset, len: end - offset - 1, id: r.id }
        })
        .collect();
    Ok(Some((Headers { bytes, base: 0, before_seq: 0, lines }, corrupt)))
}

/// Open-time check of one log without reading it all: when its last line is complete and valid
/// (CRC, header), its length and version (that line's `seq`); otherwise the log is loaded whole
/// with recovery (torn tail quarantined and truncated, corruption refused), as a full scan
/// would. `None` if there is no file. Lines before the last are checked when first read.
pub fn open_state(path: &Path) -> Result<Option<(u64, u64)>, StoreError> {
    if let Some(state) = last_line_state(path) {
        return Ok(Some(state));
    }
    Ok(load_headers(path, TornTail::Quarantine)?.map(|h| (h.len(), h.version())))
}

/// (length, seq of the last line) when the file ends with a complete valid line (or is empty).
fn last_line_state(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let file = fsio::open_read(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len == 0 {
        return Some((0, 0));
    }
    let mut chunk = 4096u64;
    loop {
        let start = len.saturating_sub(chunk);
        let mut buf = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut buf, start).ok()?;
        let body = buf.strip_suffix(b"\n")?;
        let line = match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => &body[i + 1..],
            None if start == 0 => body,
            None => {
                chunk *= 4;
                continue;
            }
        };
        let (seq, _, _) = header(line)?;
        // A last line that says "more" ends an append that never completed: full recovery.
        return (!line_continues(line)).then_some((len, seq));
    }
}

/// Reads only the lines after `after_seq` of a clean log known (from this process's own scan
/// or writes) to be `len` bytes and `version` events long, scanning backwards from the end.
/// `None` if the file does not look exactly like that (the caller then loads it whole).
pub fn load_tail(path: &Path, len: u64, version: u64, after_seq: u64) -> Option<Headers> {
    use std::os::unix::fs::FileExt;
    let need = version.checked_sub(after_seq)?;
    let file = fsio::open_read(path).ok()?;
    if file.metadata().ok()?.len() != len {
        return None;
    }
    if need == 0 {
        return Some(Headers { bytes: Vec::new(), base: len, before_seq: after_seq, lines: Vec::new() });
    }
    // Read backwards until the buffer holds more than `need` newlines (or the whole file).
    let mut tail: Vec<u8> = Vec::new();
    let (mut start, mut newlines, mut step) = (len, 0u64, 4096u64);
    while newlines <= need && start > 0 {
        let chunk = start.min(step);
        step = (step * 4).min(1 << 20);
        let mut buf = vec![0u8; chunk as usize];
        file.read_exact_at(&mut buf, start - chunk).ok()?;
        start -= chunk;
        newlines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        buf.extend_from_slice(&tail);
        tail = buf;
    }
    let tail = last_lines(tail, need)?;
    let base = len - tail.len() as u64;
    let lines = fast_headers(&tail, base, after_seq)?;
    (lines.len() as u64 == need).then_some(Headers { bytes: tail, base, before_seq: after_seq, lines })
}

/// The last `need` lines of `bytes` (which holds more than that many, or the whole file).
fn last_lines(bytes: Vec<u8>, need: u64) -> Option<Vec<u8>> {
    if need == 0 {
        return Some(Vec::new());
    }
    let body = bytes.strip_suffix(b"\n")?;
    let mut seen = 0u64;
    let mut from = 0usize;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == need {
                from = i + 1;
                break;
            }
        }
    }
    Some(bytes[from..].to_vec())
}

/// Slice-by-16 tables: the open-time scan CRC-checks every byte of every log.
const CRC32C: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
const CRC_KEY: &[u8] = b",\"crc\":\"";
const CRC_SUFFIX_LEN: usize = CRC_KEY.len() + 8 + 2;

/// Headers of a log whose every line is complete and valid; `None` on anything else.
fn fast_headers(bytes: &[u8], base: u64, before_seq: u64) -> Option<Vec<LineInfo>> {
    let mut lines = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let nl = bytes[at..].iter().position(|b| *b == b'\n')?;
        let line = &bytes[at..at + nl];
        let (seq, pos, id) = header(line)?;
        if seq != before_seq + lines.len() as u64 + 1 {
            return None;
        }
        lines.push(LineInfo { seq, pos, offset: base + at as u64, len: nl as u64, id });
        at += nl + 1;
        if at == bytes.len() && line_continues(line) {
            return None; // ends inside an append that never completed: the scanner drops it
        }
    }
    Some(lines)
}

/// CRC-checks one line and reads its `seq`, `pos` and `id` from the fixed key order
/// `{"seq":N,"pos":N,"id":"..."`; `None` if anything is off (the caller falls back).
fn header(line: &[u8]) -> Option<(u64, u64, EventId)> {
    if line.len() < CRC_SUFFIX_LEN + 2 || !line.ends_with(b"\"}") || line.contains(&0) {
        return None;
    }
    let (body, suffix) = line.split_at(line.len() - CRC_SUFFIX_LEN);
    let hex = suffix.strip_prefix(CRC_KEY)?.get(..8)?;
    if !hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return None;
    }
    let stored = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    if CRC32C.checksum(body) != stored {
        return None;
    }
    let rest = body.strip_prefix(b"{\"seq\":")?;
    let (seq, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"pos\":")?;
    let (pos, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"id\":\"")?;
    let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
    if rest[end] != b'"' {
        return None; // an escaped id: let the full decoder handle it
    }
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    Some((seq, pos, EventId(id.to_owned())))
}

fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let value = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
    Some((value, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use evfold_core::{encode_record, EventId, EventRecord, Metadata, Timestamp};

    use super::*;

    fn record(seq: u64, id: &str) -> EventRecord {
        EventRecord {
            version: 1,
            seq,
            pos: seq * 7,
            id: EventId(id.into()),
            event_type: "T".into(),
            data: serde_json::json!({"s": "a\"b\\c\n", "n": [1, {"x": null}]}),
            ts: Timestamp(5),
            meta: Metadata::default().with_actor("ü"),
        }
    }

    #[test]
    fn fast_headers_agree_with_the_core_scanner() {
        let ids = ["plain", "with \"quote\"", "back\\slash", "ünï", ""];
        let bytes: Vec<u8> =
            ids.iter().enumerate().flat_map(|(i, id)| encode_record(&record(i as u64 + 1, id))).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let headers = load_headers(&path, TornTail::Ignore).unwrap().unwrap();
        let full = load(&path, TornTail::Ignore).unwrap().unwrap();
        assert_eq!(headers.lines.len(), ids.len());
        for ((line, record), offset) in headers.lines.iter().zip(&full.records).zip(&full.offsets) {
            assert_eq!((line.seq, line.pos, &line.id, line.offset), (record.seq, record.pos, &record.id, *offset));
        }
        assert_eq!(headers.records_after(&path, 3).unwrap(), full.records[3..]);
        assert_eq!(load_records(&path).unwrap(), (full.records.clone(), full.len), "one-pass load");
        assert!(fast_headers(&bytes, 0, 0).is_none(), "escaped ids take the fallback path");
        let plain = encode_record(&record(1, "plain"));
        assert_eq!(fast_headers(&plain, 0, 0).unwrap()[0].id, EventId("plain".into()));
    }

    #[test]
    fn tails_match_the_full_scan() {
        let bytes: Vec<u8> = (1..=40).flat_map(|seq| encode_record(&record(seq, &format!("id-{seq}")))).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let full = load_headers(&path, TornTail::Ignore).unwrap().unwrap();
        let len = bytes.len() as u64;
        for after in [0, 1, 17, 39, 40] {
            let tail = load_tail(&path, len, 40, after).unwrap();
            assert_eq!(tail.lines, full.lines[after as usize..], "after {after}");
            assert_eq!((tail.len(), tail.version()), (len, 40));
            assert_eq!(tail.records_after(&path, after).unwrap(), full.records_after(&path, after).unwrap());
        }
        assert!(load_tail(&path, len - 1, 40, 10).is_none(), "length changed");
        assert!(load_tail(&path, len, 41, 10).is_none(), "version does not match the lines");
        assert!(load_tail(&path, len, 40, 41).is_none(), "snapshot ahead of the log");

        let many: Vec<u8> = (1..=1500).flat_map(|seq| encode_record(&record(seq, "x"))).collect();
        assert!(many.len() > 3 * 64 * 1024, "spans several backward reads");
        std::fs::write(&path, &many).unwrap();
        let full = load_headers(&path, TornTail::Ignore).unwrap().unwrap();
        for after in [0, 3, 700, 1499] {
            let tail = load_tail(&path, many.len() as u64, 1500, after).unwrap();
            assert_eq!(tail.lines, full.lines[after as usize..], "after {after}");
        }
    }

    #[test]
    fn fast_headers_refuse_what_the_core_refuses() {
        let mut line = encode_record(&record(1, "a"));
        assert!(fast_headers(&line, 0, 0).is_some());
        line[12] ^= 1;
        assert!(fast_headers(&line, 0, 0).is_none(), "CRC mismatch");
        let torn = &encode_record(&record(1, "a"))[..20];
        assert!(fast_headers(torn, 0, 0).is_none(), "no newline");
        let mut two = encode_record(&record(1, "a"));
        two.extend(encode_record(&record(3, "b")));
        assert!(fast_headers(&two, 0, 0).is_none(), "seq gap");
    }

    #[test]
    fn an_unfinished_append_at_the_end_is_dropped_by_every_load_path() {
        let first = encode_record(&record(1, "a"));
        let append = evfold_core::encode_append(&[record(2, "b"), record(3, "c")]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // The log ends after the first line of a two-line append: its "more" line is valid
        // alone, but the append never completed.
        let cut = append.iter().position(|b| *b == b'\n').unwrap() + 1;
        let unfinished: Vec<u8> = first.iter().chain(&append[..cut]).copied().collect();
        assert!(fast_records(&unfinished).is_none());
        assert!(fast_headers(&unfinished, 0, 0).is_none());
        std::fs::write(&path, &unfinished).unwrap();
        assert_eq!(last_line_state(&path), None, "open must recover this log, not trust it");
        let (records, len) = load_records(&path).unwrap();
        assert_eq!((records.len(), len), (1, first.len() as u64), "the whole append is dropped");
        assert_eq!(std::fs::read(&path).unwrap(), first, "and cut from the log (quarantined)");
        let whole: Vec<u8> = first.iter().chain(&append).copied().collect();
        assert_eq!(fast_records(&whole).map(|r| r.len()), Some(3), "a finished append is kept");
    }
}
