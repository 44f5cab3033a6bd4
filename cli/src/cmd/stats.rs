//! `stats`: what a store holds, read-only — streams, events and log bytes per aggregate type,
//! events per event type, and the lowest and highest store-wide position.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use crate::output::Out;
use crate::{exit, store};

/// Totals of one aggregate type.
#[derive(Default)]
struct TypeStats {
    streams: u64,
    events: u64,
    bytes: u64,
    event_types: BTreeMap<String, u64>,
}

/// `evfold stats`.
pub async fn run(dir: &Path, out: &Out) -> Result<ExitCode> {
    let store = store::open_reader(dir, Vec::new()).await?;
    let streams = store.list_streams(None).await.context("listing streams")?;
    let bar = out.bar(streams.len() as u64, "counting");
    let mut types: BTreeMap<String, TypeStats> = BTreeMap::new();
    let (mut first_pos, mut last_pos) = (None::<u64>, None::<u64>);
    for stream in &streams {
        let records = store.read_events(stream.aggregate_type(), stream.instance_id()).await?;
        let path = store.layout().events_file(stream);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).with_context(|| format!("reading {}", path.display()))?;
        let totals = types.entry(stream.aggregate_type().to_owned()).or_default();
        totals.streams += 1;
        totals.events += records.len() as u64;
        totals.bytes += bytes;
        for record in &records {
            *totals.event_types.entry(record.event_type.clone()).or_default() += 1;
            first_pos = Some(first_pos.map_or(record.pos, |p| p.min(record.pos)));
            last_pos = Some(last_pos.map_or(record.pos, |p| p.max(record.pos)));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (events, bytes) = types.values().fold((0, 0), |(e, b), t| (e + t.events, b + t.bytes));
    out.emit(
        || {
            let mut text = format!(
                "{} stream(s), {events} event(s), {bytes} bytes; positions {}..{}",
                streams.len(),
                first_pos.map_or("-".into(), |p| p.to_string()),
                last_pos.map_or("-".into(), |p| p.to_string())
            );
            for (name, t) in &types {
                text.push_str(&format!("\n  {name:<24} {:>8} stream(s) {:>10} event(s) {:>12} bytes", t.streams, t.events, t.bytes));
                for (event_type, n) in &t.event_types {
                    text.push_str(&format!("\n    {event_type:<22} {n:>10}"));
                }
            }
            text
        },
        || {
            let by_type: BTreeMap<&String, serde_json::Value> = types
                .iter()
                .map(|(name, t)| (name, json!({ "streams": t.streams, "events": t.events, "bytes": t.bytes, "event_types": t.event_types })))
                .collect();
            json!({ "streams": streams.len(), "events": events, "bytes": bytes,
                    "first_pos": first_pos, "last_pos": last_pos, "types": by_type })
        },
    );
    Ok(ExitCode::from(exit::OK))
}
