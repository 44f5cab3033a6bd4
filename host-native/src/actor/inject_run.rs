//! Batched injection (`AggregateStore::inject_run`): many pre-validated events of one stream
//! appended in one write and one `fdatasync`, with the checks of a single inject (every event
//! must fold with the aggregate's code and encode as a line that decodes; an id already stored
//! is a duplicate, never a second copy). Importers use it: one inject per event would cost one
//! `fdatasync` per event.

use std::collections::HashSet;

use evfold_core::{CommandError, DynAggregate, EventId, EventRecord, Fault, IoResult, NewEvent};

use super::{Actor, Reply};
use crate::error::StoreError;
use crate::log;
use crate::store::Durability;

/// What an injected run became.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InjectRunOutcome {
    /// The events appended (in the order given), as stored.
    pub appended: Vec<EventRecord>,
    /// Ids of the events not written because an event with that id is already stored (or came
    /// earlier in the same run).
    pub duplicates: Vec<EventId>,
}

/// A queued run and where its answer goes.
pub(crate) type QueuedRun = (Vec<NewEvent>, Reply<Result<InjectRunOutcome, StoreError>>);

/// The aggregate folded through the stream's log, cached between runs while the log's version
/// is the one it was folded to (an importer sends many runs to one stream in a row).
pub(crate) type RunScratch = Option<(u64, Box<dyn DynAggregate>)>;

impl Actor {
    /// Whether single injects or runs wait for the machine to be quiescent.
    pub(super) fn has_injects(&self) -> bool {
        !self.injects.is_empty() || !self.runs.is_empty()
    }

    /// Performs the queued runs; whether any appended. After a failure that poisons the
    /// stream, the runs not yet performed stay queued: retiring hands them to a fresh actor.
    pub(super) fn run_queued_runs(&mut self) -> bool {
        let mut appended = false;
        let mut queued = std::mem::take(&mut self.runs).into_iter();
        while !self.poisoned {
            let Some((events, reply)) = queued.next() else { break };
            let result = self.inject_run(events);
            appended |= matches!(&result, Ok(outcome) if !outcome.appended.is_empty());
            let _ = reply.send(result);
        }
        self.runs.extend(queued);
        appended
    }

    /// Appends `events` (minus those whose id is stored) in one write and one sync. Nothing is
    /// written if one of them does not fold or encode.
    fn inject_run(&mut self, events: Vec<NewEvent>) -> Result<InjectRunOutcome, StoreError> {
        let _span = tracing::debug_span!("inject_run", n_events = events.len()).entered();
        if !self.log.loaded {
            self.load_log()?;
        }
        let mut outcome = InjectRunOutcome::default();
        let mut in_run = HashSet::new();
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            if !in_run.insert(event.id.clone()) || self.inner.ledger.contains_id(&event.id)? {
                outcome.duplicates.push(event.id);
            } else {
                fresh.push(event);
            }
        }
        if fresh.is_empty() {
            return Ok(outcome);
        }
        self.check_run(&fresh)?;
        let records = match self.write_events(fresh, true)? {
            Ok(records) => records,
            Err(duplicate) => {
                // Another stream stored one of these ids since the check above: nothing written.
                self.run_scratch = None;
                return Err(StoreError::InvalidEvent(format!("event id {duplicate} was stored meanwhile")));
            }
        };
        // What `load_log` kept for the machine's next read predates the append.
        self.preloaded = None;
        if self.inner.config.durability == Durability::Sync {
            if let IoResult::Failed(e) = self.sync() {
                self.run_scratch = None;
                return Err(StoreError::Command(CommandError::Storage(e)));
            }
        }
        outcome.appended = records;
        Ok(outcome)
    }

    /// Folds the run, in order, onto the stream's current state, and checks that every event's
    /// line decodes. On success the folded state is kept for the next run.
    pub(super) fn check_run(&mut self, events: &[NewEvent]) -> Result<(), StoreError> {
        let mut scratch = match self.run_scratch.take() {
            Some((version, scratch)) if version == self.log.version => scratch,
            _ => self.fold_log()?,
        };
        for (index, event) in events.iter().enumerate() {
            let refused = |reason: String| StoreError::InvalidEvent(format!("event {index} ({}): {reason}", event.id));
            scratch.apply(std::slice::from_ref(&event.payload)).map_err(|f| refused(f.to_string()))?;
            let probe = evfold_core::encode_record(&EventRecord::from_new(event.clone(), 1, 1));
            evfold_core::decode_line(&probe[..probe.len() - 1])
                .map_err(|e| refused(format!("its line would not decode: {e}")))?;
        }
        self.run_scratch = Some((self.log.version + events.len() as u64, scratch));
        Ok(())
    }

    /// A fresh aggregate folded through every event of the log.
    fn fold_log(&mut self) -> Result<Box<dyn DynAggregate>, StoreError> {
        let mut scratch = self.factory.instantiate().map_err(StoreError::Fault)?;
        let (records, _) = log::load_records(&self.log.path)?;
        let (payloads, _skipped) =
            evfold_core::schema::read_records(&*scratch, records).map_err(|e| StoreError::Fault(Fault::new(e)))?;
        scratch.apply(&payloads).map_err(StoreError::Fault)?;
        Ok(scratch)
    }
}
