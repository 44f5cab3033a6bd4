//! `events` (JSONL or pretty, one stream or store-wide, optional follow) and `streams`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use evfold_core::{EventRecord, StreamId};
use evfold_native::AggregateStore;
use serde_json::{json, Value};

use crate::args::{EventsArgs, StreamsArgs};
use crate::output::Out;
use crate::store;

/// Events per store-wide read.
const PAGE: usize = 1000;

/// `evfold events [TYPE ID] [--from N] [--pretty] [--follow]`.
pub async fn events(dir: &Path, args: EventsArgs, out: &Out) -> Result<ExitCode> {
    let store = store::open_reader(dir, Vec::new()).await?;
    let mut printer = Printer { pretty: args.pretty && !out.json, printed: 0, limit: args.limit };
    match (&args.aggregate_type, &args.id) {
        (Some(t), Some(id)) => stream_events(&store, t, id, &args, &mut printer).await?,
        _ => all_events(&store, &args, &mut printer).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn stream_events(
    store: &AggregateStore,
    t: &str,
    id: &str,
    args: &EventsArgs,
    printer: &mut Printer,
) -> Result<()> {
    let stream = StreamId::new(t, id).context("invalid stream id")?;
    let mut after = args.from;
    let mut next_pos = 1;
    let records = store.read_events_from(t, id, after).await.context("reading events")?;
    for record in &records {
        (after, next_pos) = (record.seq, record.pos + 1);
        if printer.print(&stream, record)? {
            return Ok(());
        }
    }
    if !args.follow {
        return Ok(());
    }
    // Then follow the store-wide order, keeping this stream's later events.
    let mut subscription = store.subscribe(next_pos).context("following the store")?;
    while let Some(event) = subscription.recv().await {
        let event = event.context("following the store")?;
        if event.stream == stream && event.record.seq > after {
            after = event.record.seq;
            if printer.print(&stream, &event.record)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Pages through the store-wide order (one scan of the store, then tails of the logs); with
/// `--follow`, a subscription woken by file changes. A missing position that no writer has
/// settled is an error here (after a grace period), never a silent end.
async fn all_events(store: &AggregateStore, args: &EventsArgs, printer: &mut Printer) -> Result<()> {
    let from = args.from.max(1);
    if args.follow {
        let mut subscription = store.subscribe(from).context("following the store")?;
        while let Some(event) = subscription.recv().await {
            let event = event.context("following the store")?;
            if printer.print(&event.stream, &event.record)? {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut from = from;
    loop {
        let page = store.read_all_page(from, PAGE).await.context("reading events")?;
        for event in &page {
            from = event.record.pos + 1;
            if printer.print(&event.stream, &event.record)? {
                return Ok(());
            }
        }
        if page.is_empty() {
            return Ok(());
        }
    }
}

struct Printer {
    pretty: bool,
    printed: usize,
    limit: Option<usize>,
}

impl Printer {
    /// Prints one event; returns true once `limit` events were printed.
    fn print(&mut self, stream: &StreamId, record: &EventRecord) -> Result<bool> {
        let mut stdout = std::io::stdout().lock();
        if self.pretty {
            writeln!(
                stdout,
                "#{:<6} {:<28} v{:<5} {:<16} {}",
                record.pos,
                stream.to_string(),
                record.seq,
                record.event_type,
                record.data
            )?;
        } else {
            let mut line = serde_json::to_value(record)?;
            if let Value::Object(map) = &mut line {
                map.insert("stream".into(), json!(stream.to_string()));
            }
            writeln!(stdout, "{line}")?;
        }
        stdout.flush()?;
        self.printed += 1;
        Ok(self.limit.is_some_and(|limit| self.printed >= limit))
    }
}

/// `evfold streams [--type T]`.
pub async fn streams(dir: &Path, args: StreamsArgs, out: &Out) -> Result<ExitCode> {
    let store = store::open_reader(dir, Vec::new()).await?;
    let streams = store.list_streams(args.aggregate_type.as_deref()).await.context("listing streams")?;
    let mut rows = Vec::with_capacity(streams.len());
    for stream in &streams {
        let version = store.stream_version(stream.aggregate_type(), stream.instance_id()).await?;
        rows.push((stream.to_string(), version));
    }
    out.emit(
        || {
            let mut text = format!("{} stream(s)", rows.len());
            for (stream, version) in &rows {
                text.push_str(&format!("\n  {stream:<40} version {version}"));
            }
            text
        },
        || json!(rows.iter().map(|(s, v)| json!({ "stream": s, "version": v })).collect::<Vec<_>>()),
    );
    Ok(ExitCode::SUCCESS)
}
