//! Reading an eventfold-es 0.2 store exactly as the peer crate reads it: its stream directories,
//! its `app.jsonl` lines (turned into evfold events: ids kept or derived, seconds to
//! milliseconds, metadata mapped), and the deterministic order the import appends them in.
//!
//! What the peer itself does, and this reader copies: streams are the directories
//! `streams/<type>/<id>/` (anything else there is ignored, as the peer's listing ignores it),
//! sorted by type then id; a log's empty lines are skipped; a last line without its `\n` is a
//! torn write the peer never reads (reported, not imported). What the peer tolerates and this
//! reader refuses, with a typed error: a line that does not parse (the peer fails on it too), a
//! rotated `archive.jsonl.zst` (the peer's stream reads skip it), a nested stream directory
//! (an instance id holding `/`, invisible to the peer's listing), a name evfold refuses.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};

use evfold_core::{EventId, Metadata, NewEvent, Payload, StreamId, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// One line of a peer log: `eventfold::Event`'s serde shape (`type`, `data` and `ts` required,
/// like the peer's own decoding).
#[derive(Deserialize)]
struct PeerLine {
    #[serde(rename = "type")]
    event_type: String,
    data: Value,
    ts: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    meta: Option<Value>,
}

/// One event read from a peer log.
#[derive(Debug, Clone)]
pub(crate) struct PeerEvent {
    /// 1-based line number in the log.
    pub line: u64,
    /// The peer's `ts` (Unix seconds): the import order's key.
    pub ts_secs: u64,
    /// The line had no `id`: [`derived_event_id`] gave it one.
    pub derived_id: bool,
    /// The event as evfold stores it.
    pub event: NewEvent,
}

/// One peer stream and its events, in log order.
#[derive(Debug)]
pub(crate) struct PeerStream {
    /// Aggregate type and instance id (the directory names).
    pub stream: StreamId,
    /// Its `app.jsonl`.
    pub path: PathBuf,
    /// Its events.
    pub events: Vec<PeerEvent>,
    /// The log ends in a torn write (a last line without `\n`), which was not imported.
    pub torn_tail: bool,
}

/// The id evfold gives the `seq`-th event (1-based, in log order) of a peer stream whose line
/// has no `id`: a UUID (version 8, RFC 9562 variant) made of the first 16 bytes of
/// SHA-256(`"eventfold-es\n" + aggregate_type + "\n" + instance_id + "\n" + seq`), with the
/// version and variant bits set. The same line gets the same id on every import, on any
/// machine, so a re-run recognises it.
pub fn derived_event_id(aggregate_type: &str, instance_id: &str, seq: u64) -> EventId {
    let digest = Sha256::digest(format!("eventfold-es\n{aggregate_type}\n{instance_id}\n{seq}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    EventId(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

/// Reads every stream of the peer store at `root`, sorted by type then id.
pub(crate) fn read_store(root: &Path) -> Result<Vec<PeerStream>, StoreError> {
    let streams_dir = root.join("streams");
    if !streams_dir.is_dir() {
        return Err(StoreError::PeerUnsupported {
            path: root.to_owned(),
            reason: "not an eventfold-es store: it has no streams/ directory".into(),
        });
    }
    let mut streams = Vec::new();
    for (aggregate_type, type_dir) in sorted_dirs(&streams_dir)? {
        for (instance_id, stream_dir) in sorted_dirs(&type_dir)? {
            let stream =
                StreamId::new(&aggregate_type, &instance_id).map_err(|reason| StoreError::PeerUnsupported {
                    path: stream_dir.clone(),
                    reason: format!("evfold refuses this stream id ({reason}); rename the directory first"),
                })?;
            streams.push(read_stream(stream, &stream_dir)?);
        }
    }
    Ok(streams)
}

/// The sub-directories of `dir` (not links: the peer's listing does not follow them either),
/// sorted by name.
fn sorted_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        if !entry.file_type().map_err(|e| StoreError::io(&path, e))?.is_dir() {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|_| StoreError::PeerUnsupported {
            path: path.clone(),
            reason: "the directory name is not UTF-8".into(),
        })?;
        found.insert(name, path);
    }
    Ok(found.into_iter().collect())
}

fn read_stream(stream: StreamId, dir: &Path) -> Result<PeerStream, StoreError> {
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let (name, path) = (entry.file_name(), entry.path());
        let is_dir = entry.file_type().map_err(|e| StoreError::io(&path, e))?.is_dir();
        let refused = |reason: &str| StoreError::PeerUnsupported { path: path.clone(), reason: reason.to_owned() };
        if name == "archive.jsonl.zst" {
            return Err(refused("a rotated eventfold archive; eventfold-es never rotates and the importer reads only app.jsonl: merge the archive back into app.jsonl first"));
        }
        if is_dir && name != "views" {
            return Err(refused("a directory inside a stream directory: an instance id holding '/', whose events the peer's listing never shows; move it to a stream of its own first"));
        }
    }
    let path = dir.join("app.jsonl");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let (events, torn_tail) = parse_log(&stream, &path, &bytes)?;
    Ok(PeerStream { stream, path, events, torn_tail })
}

/// Parses a log's complete lines; says whether a torn last line was left out.
fn parse_log(stream: &StreamId, path: &Path, bytes: &[u8]) -> Result<(Vec<PeerEvent>, bool), StoreError> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // After the last `\n`: empty for a complete log, else a torn write.
    let torn_tail = lines.pop().is_some_and(|rest| !rest.is_empty());
    let mut events = Vec::new();
    for (index, raw) in lines.into_iter().enumerate() {
        let line = index as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let bad = |reason: String| StoreError::PeerLine { path: path.to_owned(), line, reason };
        let text = std::str::from_utf8(raw).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        let parsed: PeerLine = serde_json::from_str(text).map_err(|e| bad(format!("not an eventfold event: {e}")))?;
        let seq = events.len() as u64 + 1;
        events.push(to_evfold(stream, seq, line, parsed));
    }
    Ok((events, torn_tail))
}

/// The evfold event of a peer line: its id (or a derived one), `ts` in milliseconds, and its
/// metadata (see [`to_metadata`]).
fn to_evfold(stream: &StreamId, seq: u64, line: u64, parsed: PeerLine) -> PeerEvent {
    let derived_id = parsed.id.is_none();
    let id = match parsed.id {
        Some(id) => EventId(id),
        None => derived_event_id(stream.aggregate_type(), stream.instance_id(), seq),
    };
    let event = NewEvent {
        version: 1,
        id,
        payload: Payload::new(parsed.event_type, parsed.data),
        ts: Timestamp(parsed.ts.saturating_mul(1000)),
        meta: to_metadata(parsed.actor, parsed.meta),
    };
    PeerEvent { line, ts_secs: parsed.ts, derived_id, event }
}

/// The peer's `actor` and `meta` as evfold metadata: `actor` stays the actor; string
/// `correlation_id` and `causation_id` keys of `meta` become evfold's fields; every other key
/// (`source_device`, the application's own) goes to `extra` unchanged. A `meta` that is not an
/// object (only a hand-written or injected line can have one) is kept whole as `extra.meta`.
pub(crate) fn to_metadata(actor: Option<String>, meta: Option<Value>) -> Metadata {
    let mut metadata = Metadata { actor, ..Metadata::default() };
    match meta {
        None => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("correlation_id", Value::String(s)) => metadata.correlation_id = Some(s),
                    ("causation_id", Value::String(s)) => metadata.causation_id = Some(s),
                    (_, value) => {
                        metadata.extra.insert(key, value);
                    }
                }
            }
        }
        Some(other) => {
            metadata.extra.insert("meta".into(), other);
        }
    }
    metadata
}

/// The import order, as (stream index, event index) pairs: a merge of the streams by the
/// peer's `ts` (seconds), ties broken by stream (type, then id) and, within a stream, by log
/// order. Every stream keeps its own order even where its clock went backwards (a stream's next
/// event is only a candidate once the one before it is taken). Deterministic: the same source
/// gives the same order on every run, which is what lets an interrupted import resume.
pub(crate) fn import_order(streams: &[PeerStream]) -> Vec<(usize, usize)> {
    let total = streams.iter().map(|s| s.events.len()).sum();
    let mut order = Vec::with_capacity(total);
    let mut heads: BinaryHeap<Reverse<(u64, usize)>> =
        streams.iter().enumerate().filter_map(|(i, s)| Some(Reverse((s.events.first()?.ts_secs, i)))).collect();
    let mut next = vec![0usize; streams.len()];
    while let Some(Reverse((_, stream))) = heads.pop() {
        order.push((stream, next[stream]));
        next[stream] += 1;
        if let Some(event) = streams[stream].events.get(next[stream]) {
            heads.push(Reverse((event.ts_secs, stream)));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_uuids_that_differ_per_stream_and_seq() {
        let id = derived_event_id("bank-account", "acc-1", 1);
        assert_eq!(id, derived_event_id("bank-account", "acc-1", 1));
        assert_ne!(id, derived_event_id("bank-account", "acc-1", 2));
        assert_ne!(id, derived_event_id("bank-account", "acc-2", 1));
        assert_eq!(id.0.len(), 36);
        assert_eq!(&id.0[14..15], "8", "version 8");
        assert!(matches!(&id.0[19..20], "8" | "9" | "a" | "b"), "RFC 9562 variant");
    }

    #[test]
    fn metadata_keeps_every_key() {
        let meta = serde_json::json!({"correlation_id": "c-1", "source_device": "laptop", "n": 3});
        let mapped = to_metadata(Some("ada".into()), Some(meta));
        assert_eq!(mapped.actor.as_deref(), Some("ada"));
        assert_eq!(mapped.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(mapped.extra.get("source_device"), Some(&serde_json::json!("laptop")));
        assert_eq!(mapped.extra.get("n"), Some(&serde_json::json!(3)));
        assert_eq!(to_metadata(None, Some(serde_json::json!([1]))).extra.get("meta"), Some(&serde_json::json!([1])));
    }
}
