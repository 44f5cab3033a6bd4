//! The eventfold-es importer: [`import`] reads a peer store (see the `peer` module for how),
//! checks all of it before writing anything, and appends its events to an evfold store in
//! batched, group-committed runs ([`AggregateStore::inject_run`]), skipping events already there.
//!
//! Before the first write it refuses, with a typed error and nothing written: a malformed line
//! ([`StoreError::PeerLine`], path and line), an event the aggregate's code cannot fold
//! ([`StoreError::PeerEventRefused`], path and line),
//! an aggregate type the store has no code for ([`StoreError::UnknownAggregateType`]), an id
//! used twice ([`StoreError::DuplicateEventId`]), a non-empty target ([`StoreError::TargetNotEmpty`],
//! unless [`ImportOptions::append`] or the target holds only events of this same source: a
//! resumed import), and a target running process managers
//! ([`StoreError::ImportWithProcessManagers`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use evfold_core::{EventId, NewEvent, StreamId};

pub use super::peer::derived_event_id;
use super::peer::{self, PeerStream};
use crate::error::StoreError;
use crate::store::AggregateStore;

/// The callback of [`ImportOptions::progress`].
pub type ProgressCallback = Box<dyn FnMut(&ImportProgress) + Send>;

/// How to import.
#[derive(Default)]
pub struct ImportOptions {
    /// Allow a target that already holds other events (the import is added after them).
    /// Without it, such a target is refused with [`StoreError::TargetNotEmpty`].
    pub append: bool,
    /// Import at most this many new events (events already present do not count), then stop:
    /// running the import again continues where this one stopped.
    pub limit: Option<u64>,
    /// Called after every appended run (at most `max_batch_events` events) with the counts
    /// so far.
    pub progress: Option<ProgressCallback>,
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("append", &self.append)
            .field("limit", &self.limit)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .finish()
    }
}

/// Counts passed to [`ImportOptions::progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportProgress {
    /// Events of the source handled so far (imported or already present).
    pub done: u64,
    /// Events in the source.
    pub total: u64,
    /// Events appended so far.
    pub imported: u64,
    /// Events found already stored so far.
    pub skipped: u64,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Streams in the source (empty ones included).
    pub streams: u64,
    /// Events in the source.
    pub events: u64,
    /// Events appended by this run.
    pub imported: u64,
    /// Events skipped because the target already holds them (same stream, same id): what an
    /// earlier, interrupted run imported.
    pub skipped: u64,
    /// Events of the source whose line had no id (they carry [`derived_event_id`]s).
    pub derived_ids: u64,
    /// Events left for a later run because of [`ImportOptions::limit`].
    pub remaining: u64,
    /// Logs ending in a torn write (a last line without `\n`): the peer never reads it, and
    /// neither does the import.
    pub torn_tails: Vec<PathBuf>,
}

/// Imports the eventfold-es store at `source` into `store`.
///
/// Every event keeps its stream, its order within the stream, its id (a line without one gets
/// [`derived_event_id`]), its type and data, its timestamp (the peer's seconds, times 1,000)
/// and its metadata (`actor`; `meta.correlation_id` and `meta.causation_id` when strings;
/// every other `meta` key in `extra`). Across streams, events are appended ordered by the
/// peer's timestamp, ties broken by aggregate type, then instance id, then log order; every
/// stream keeps its own order. Re-running an import skips what is already stored, so an
/// interrupted (or [`ImportOptions::limit`]ed) import is resumed by running it again.
///
/// Every aggregate type of the source must be registered on `store` (its evfold code), and
/// `store` must run no process managers.
pub async fn import(
    source: impl AsRef<Path>,
    store: &AggregateStore,
    mut options: ImportOptions,
) -> Result<ImportReport, StoreError> {
    if store.is_read_only() {
        return Err(StoreError::ReadOnly);
    }
    let managers = store.process_manager_names();
    if !managers.is_empty() {
        return Err(StoreError::ImportWithProcessManagers(managers.join(", ")));
    }
    let root = source.as_ref().to_owned();
    let streams = blocking(move || peer::read_store(&root)).await?;
    let factories = store.clone();
    let streams = blocking(move || check_folds(&factories, streams)).await?;
    check_unique_ids(&streams)?;
    let present = check_target(store, &streams, options.append).await?;

    let mut report = ImportReport {
        streams: streams.len() as u64,
        events: streams.iter().map(|s| s.events.len() as u64).sum(),
        derived_ids: streams.iter().flat_map(|s| &s.events).filter(|e| e.derived_id).count() as u64,
        torn_tails: streams.iter().filter(|s| s.torn_tail).map(|s| s.path.clone()).collect(),
        ..ImportReport::default()
    };
    let max_run = store.config().max_batch_events.max(1);
    let mut run: Vec<(usize, usize)> = Vec::new();
    for (stream, index) in peer::import_order(&streams) {
        if present.contains(&streams[stream].events[index].event.id) {
            report.skipped += 1;
            continue;
        }
        if options.limit.is_some_and(|limit| report.imported + run.len() as u64 >= limit) {
            report.remaining += 1;
            continue;
        }
        if run.first().is_some_and(|first| first.0 != stream) || run.len() >= max_run {
            write_run(store, &streams, std::mem::take(&mut run), &mut report, &mut options).await?;
        }
        run.push((stream, index));
    }
    write_run(store, &streams, run, &mut report, &mut options).await?;
    Ok(report)
}

/// Appends one run (consecutive events of one stream) and reports progress.
async fn write_run(
    store: &AggregateStore,
    streams: &[PeerStream],
    run: Vec<(usize, usize)>,
    report: &mut ImportReport,
    options: &mut ImportOptions,
) -> Result<(), StoreError> {
    let Some(&(stream, first)) = run.first() else { return Ok(()) };
    let peer = &streams[stream];
    let events: Vec<NewEvent> = run.iter().map(|&(_, i)| peer.events[i].event.clone()).collect();
    let id = &peer.stream;
    let outcome = store.inject_run(id.aggregate_type(), id.instance_id(), events).await.map_err(|e| match e {
        StoreError::InvalidEvent(reason) => {
            StoreError::PeerEventRefused { path: peer.path.clone(), line: peer.events[first].line, reason }
        }
        other => other,
    })?;
    if let Some(duplicate) = outcome.duplicates.first() {
        // Checked before the first write: another writer stored this id meanwhile.
        let line = run.iter().map(|&(_, i)| &peer.events[i]).find(|e| &e.event.id == duplicate).map_or(0, |e| e.line);
        return Err(StoreError::DuplicateEventId {
            id: duplicate.0.clone(),
            path: peer.path.clone(),
            line,
            other: "an event stored in the target while the import ran".into(),
        });
    }
    report.imported += outcome.appended.len() as u64;
    if let Some(progress) = options.progress.as_mut() {
        let done = report.imported + report.skipped;
        progress(&ImportProgress { done, total: report.events, imported: report.imported, skipped: report.skipped });
    }
    Ok(())
}

/// Folds every source stream with its aggregate's code, from the stream's first event, so an
/// event the code does not know is refused (with its line) before anything is written.
fn check_folds(store: &AggregateStore, streams: Vec<PeerStream>) -> Result<Vec<PeerStream>, StoreError> {
    for peer in streams.iter().filter(|s| !s.events.is_empty()) {
        let factory = store.aggregate_factory(peer.stream.aggregate_type())?;
        let mut aggregate = factory.instantiate().map_err(StoreError::Fault)?;
        for event in &peer.events {
            aggregate.apply(std::slice::from_ref(&event.event.payload)).map_err(|fault| {
                StoreError::PeerEventRefused {
                    path: peer.path.clone(),
                    line: event.line,
                    reason: format!("the {} code refuses the event: {fault}", peer.stream.aggregate_type()),
                }
            })?;
        }
    }
    Ok(streams)
}

/// Refuses an id used by two events of the source.
fn check_unique_ids(streams: &[PeerStream]) -> Result<(), StoreError> {
    let mut seen: HashMap<&EventId, (&Path, u64)> = HashMap::new();
    for peer in streams {
        for event in &peer.events {
            if let Some((path, line)) = seen.insert(&event.event.id, (&peer.path, event.line)) {
                return Err(StoreError::DuplicateEventId {
                    id: event.event.id.0.clone(),
                    path: peer.path.clone(),
                    line: event.line,
                    other: format!("{} line {line}", path.display()),
                });
            }
        }
    }
    Ok(())
}

/// Compares the target with the source: the ids already imported (same stream, same id), or a
/// refusal when the target holds other events (without `append`) or holds a source id in
/// another stream.
async fn check_target(
    store: &AggregateStore,
    streams: &[PeerStream],
    append: bool,
) -> Result<HashSet<EventId>, StoreError> {
    let stored = store.read_all(1).await?;
    if stored.is_empty() {
        return Ok(HashSet::new());
    }
    let source: HashMap<&EventId, (&StreamId, &Path, u64)> = streams
        .iter()
        .flat_map(|s| s.events.iter().map(move |e| (&e.event.id, (&s.stream, s.path.as_path(), e.line))))
        .collect();
    let (mut present, mut foreign) = (HashSet::new(), 0u64);
    for event in &stored {
        match source.get(&event.record.id) {
            Some((stream, _, _)) if **stream == event.stream => {
                present.insert(event.record.id.clone());
            }
            Some((_, path, line)) => {
                return Err(StoreError::DuplicateEventId {
                    id: event.record.id.0.clone(),
                    path: path.to_path_buf(),
                    line: *line,
                    other: format!("target stream {} (seq {})", event.stream, event.record.seq),
                });
            }
            None => foreign += 1,
        }
    }
    if foreign > 0 && !append {
        return Err(StoreError::TargetNotEmpty { path: store.layout().root().to_owned(), events: foreign });
    }
    Ok(present)
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Stopped(format!("import task: {e}"))),
    }
}
