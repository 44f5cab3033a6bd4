//! What the simulator checks, and the bookkeeping it needs: an omniscient model of every reply
//! and dispatch attempt, checked against the disk after every restart and at the end of a run.
//!
//! Process-manager delivery semantics checked (at-least-once, precisely):
//! 1. every `Deposited` caused by the `transfers` manager (its `causation_id`) names a durable
//!    `TransferredOut` event with the same target and amount (no phantom delivery);
//! 2. per cause, deposits <= delivery attempts the host executed (a retry or redelivery never
//!    appends twice by itself);
//! 3. more than one deposit per cause only if that cause was *uncertain*: an attempt ended
//!    without a definite answer (storage failure, poisoned target, crash) or a crash came while
//!    the cause was past the manager's durable checkpoint (redelivery after restart);
//! 4. at the end, every durable `TransferredOut` has a deposit or a dead letter.

use std::collections::BTreeMap;

use evfold_core::examples::{Balances, BankAccount, BankEvent, Counter, Transfers};
use evfold_core::{
    from_payload, Aggregate, AggregateFactory, CommandError, Committed, DynProcessManager, DynProjection, EventRecord,
    IdSeed, ProcessManager, Projection, StoredEvent, StreamId, TypedAggregateFactory, TypedProcessManager,
    TypedProjection,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::host::SimStore;

/// A projection that records every position it folds: equal to the list of all durable
/// positions exactly when no reader skipped, repeated or invented one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Positions folded, in fold order.
    pub positions: Vec<u64>,
}

impl Projection for AuditLog {
    const NAME: &'static str = "audit";
    fn apply(&mut self, event: &StoredEvent) {
        self.positions.push(event.record.pos);
    }
}

/// A command the store acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    stream: StreamId,
    ids: IdSeed,
    committed: Committed,
}

/// What one dispatch id went through.
#[derive(Debug, Clone, Default)]
pub struct DispatchLog {
    /// Attempts the host executed (commands sent to the target).
    pub attempts: u32,
    /// Whether an attempt's outcome was unknown, or a crash forced redelivery.
    pub uncertain: bool,
}

/// The omniscient observer's record of a run.
#[derive(Debug, Default)]
pub struct Model {
    acked: Vec<Acked>,
    refused: Vec<(StreamId, IdSeed, String)>,
    /// Per dispatch id.
    pub dispatches: BTreeMap<String, DispatchLog>,
}

impl Model {
    /// Records a reply: `Ok` must be durable; a definite refusal must have written nothing.
    pub fn on_reply(&mut self, stream: &StreamId, ids: IdSeed, result: &Result<Committed, CommandError>) {
        match result {
            Ok(committed) => self.acked.push(Acked { stream: stream.clone(), ids, committed: committed.clone() }),
            Err(CommandError::Storage(_) | CommandError::Unavailable(_)) => {} // outcome unknown
            Err(e) => self.refused.push((stream.clone(), ids, e.to_string())),
        }
    }

    /// The host sent a dispatch attempt to its target.
    pub fn on_dispatch_attempt(&mut self, dispatch_id: &str) {
        self.dispatches.entry(dispatch_id.to_owned()).or_default().attempts += 1;
    }

    /// A dispatch attempt ended without a definite answer.
    pub fn on_dispatch_unknown(&mut self, dispatch_id: &str) {
        self.dispatches.entry(dispatch_id.to_owned()).or_default().uncertain = true;
    }

    /// After a crash (disk resolved): every attempted dispatch whose cause lies past the
    /// manager's durable checkpoint will be delivered again.
    pub fn on_crash(&mut self, store: &SimStore) {
        let checkpoint = store.checkpoint(Transfers::NAME, true).and_then(|c| c.position.0.as_u64()).unwrap_or(0);
        let pos_of: BTreeMap<&str, u64> =
            store.durable_events().values().map(|e| (e.record.id.0.as_str(), e.record.pos)).collect();
        for (dispatch_id, log) in &mut self.dispatches {
            let cause = dispatch_id.split(':').nth(1).unwrap_or_default();
            if log.attempts > 0 && pos_of.get(cause).is_none_or(|pos| *pos > checkpoint) {
                log.uncertain = true;
            }
        }
    }
}

/// The state a stream's log folds to, by aggregate type.
pub fn fold_stream(stream: &StreamId, records: &[EventRecord]) -> Result<Value, String> {
    let factory: Box<dyn AggregateFactory> = match stream.aggregate_type() {
        Counter::AGGREGATE_TYPE => Box::new(TypedAggregateFactory::<Counter>::default()),
        BankAccount::AGGREGATE_TYPE => Box::new(TypedAggregateFactory::<BankAccount>::default()),
        other => return Err(format!("unknown aggregate type {other}")),
    };
    let mut aggregate = factory.instantiate().map_err(|e| e.to_string())?;
    let payloads: Vec<_> = records.iter().map(EventRecord::payload).collect();
    aggregate.apply(&payloads).map_err(|e| format!("{stream}: log does not fold: {e}"))?;
    aggregate.snapshot().map_err(|e| e.to_string())
}

/// The state a reader folds to over `events` (in `pos` order).
pub fn fold_reader(reader: &str, events: &[StoredEvent]) -> Value {
    match reader {
        Balances::NAME => fold_projection(TypedProjection::<Balances>::default(), events),
        AuditLog::NAME => fold_projection(TypedProjection::<AuditLog>::default(), events),
        Transfers::NAME => {
            let mut manager = TypedProcessManager::<Transfers>::default();
            events.iter().for_each(|e| drop(manager.react(e)));
            manager.snapshot().expect("transfers serialize")
        }
        other => panic!("unknown reader {other}"),
    }
}

fn fold_projection(mut projection: impl DynProjection, events: &[StoredEvent]) -> Value {
    projection.apply(events).expect("typed projections do not fault");
    projection.snapshot().expect("typed projections serialize")
}

/// Checks the disk as it survives a crash (call after `SimStore::restart`).
pub fn check_store(store: &SimStore, model: &Model) -> Result<(), String> {
    let ids = check_logs(store)?;
    check_whole_appends(store, &ids)?;
    check_acked(store, model)?;
    for (stream, seed, error) in &model.refused {
        if let Some((s, seq)) = ids.get(&seed.event_id(0).0) {
            return Err(format!("command to {stream} was refused ({error}) but its event is {s} seq {seq}"));
        }
    }
    check_snapshots(store)?;
    for reader in [Balances::NAME, AuditLog::NAME, Transfers::NAME] {
        check_checkpoint(store, reader)?;
    }
    check_deliveries(store, model).map(drop)
}

/// Per stream: pos strictly increasing; across the store: pos and event ids unique.
fn check_logs(store: &SimStore) -> Result<BTreeMap<String, (StreamId, u64)>, String> {
    let mut ids = BTreeMap::new();
    let mut n_events = 0;
    for stream in store.streams() {
        let log = store.log(stream);
        n_events += log.len();
        if let Some(w) = log.windows(2).find(|w| w[0].pos >= w[1].pos) {
            return Err(format!("{stream}: pos {} then {}", w[0].pos, w[1].pos));
        }
        for r in log {
            if let Some((s, seq)) = ids.insert(r.id.0.clone(), (stream.clone(), r.seq)) {
                return Err(format!("event id {} twice: {s} seq {seq} and {stream} seq {}", r.id, r.seq));
            }
        }
    }
    if store.durable_events().len() != n_events {
        return Err(format!("{n_events} events in logs but {} distinct positions", store.durable_events().len()));
    }
    Ok(ids)
}

/// An append (one command's events, or a group commit) survives a crash whole or not at all.
fn check_whole_appends(store: &SimStore, ids: &BTreeMap<String, (StreamId, u64)>) -> Result<(), String> {
    for append in &store.appends {
        let kept = append.iter().filter(|id| ids.contains_key(&id.0)).count();
        if kept != 0 && kept != append.len() {
            let (stream, _) = append.iter().find_map(|id| ids.get(&id.0)).expect("kept > 0");
            return Err(format!("{stream}: {kept} of the {} events of one append survived", append.len()));
        }
    }
    Ok(())
}

fn check_acked(store: &SimStore, model: &Model) -> Result<(), String> {
    for a in &model.acked {
        let log = store.log(&a.stream);
        let first = a.committed.version - a.committed.n_events;
        for i in 0..a.committed.n_events {
            let want = a.ids.event_id(i as usize);
            let got = log.get((first + i) as usize);
            let ok = got.is_some_and(|r| r.id == want && r.pos == a.committed.positions[i as usize]);
            if !ok {
                let got = got.map(|r| format!("{} at pos {}", r.id, r.pos));
                return Err(format!(
                    "acknowledged event lost: {} seq {} should be {want} at pos {}, log has {got:?} ({} events)",
                    a.stream,
                    first + i + 1,
                    a.committed.positions[i as usize],
                    log.len()
                ));
            }
        }
    }
    Ok(())
}

fn check_snapshots(store: &SimStore) -> Result<(), String> {
    for stream in store.streams() {
        let path = format!("streams/{}/{}/snapshot.json", stream.aggregate_type(), stream.instance_id());
        let Some(bytes) = store.disk.files.get(&path).and_then(|f| f.durable.as_deref()) else { continue };
        let snapshot: evfold_core::Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let log = store.log(stream);
        if snapshot.seq as usize > log.len() {
            return Err(format!("{stream}: snapshot at seq {} but the log has {} events", snapshot.seq, log.len()));
        }
        let folded = fold_stream(stream, &log[..snapshot.seq as usize])?;
        if folded != snapshot.state {
            return Err(format!(
                "{stream}: snapshot at {} is {} but the log folds to {folded}",
                snapshot.seq, snapshot.state
            ));
        }
    }
    Ok(())
}

/// A durable checkpoint equals the fold of exactly the durable events up to its position.
fn check_checkpoint(store: &SimStore, reader: &str) -> Result<(), String> {
    let Some(checkpoint) = store.checkpoint(reader, true) else { return Ok(()) };
    let upto = checkpoint.position.0.as_u64().unwrap_or(0);
    let events: Vec<StoredEvent> = store.durable_events().range(..=upto).map(|(_, e)| e.clone()).collect();
    let mut cursors = BTreeMap::new();
    for e in &events {
        cursors.insert(e.stream.to_string(), e.record.seq);
    }
    if cursors != checkpoint.cursors {
        return Err(format!(
            "{reader}: checkpoint at {upto} has cursors {:?}, events say {cursors:?}",
            checkpoint.cursors
        ));
    }
    let folded = fold_reader(reader, &events);
    if folded != checkpoint.state {
        return Err(format!(
            "{reader}: checkpoint at {upto} holds {} but the events fold to {folded}",
            checkpoint.state
        ));
    }
    Ok(())
}

/// Rules 1–3 of the module doc; returns deposits per cause event id.
fn check_deliveries(store: &SimStore, model: &Model) -> Result<BTreeMap<String, u32>, String> {
    let by_id: BTreeMap<&str, &StoredEvent> =
        store.durable_events().values().map(|e| (e.record.id.0.as_str(), e)).collect();
    let mut deposits: BTreeMap<String, u32> = BTreeMap::new();
    for e in store.durable_events().values() {
        let Some(cause_id) = &e.record.meta.causation_id else { continue };
        let Ok(BankEvent::Deposited { amount }) = from_payload(&e.record.payload()) else { continue };
        let cause =
            by_id.get(cause_id.as_str()).ok_or(format!("deposit pos {} caused by unknown {cause_id}", e.record.pos))?;
        let matches = matches!(from_payload(&cause.record.payload()),
            Ok(BankEvent::TransferredOut { to, amount: a }) if to == e.stream.instance_id() && a == amount);
        if !matches {
            return Err(format!("deposit pos {} does not match its cause pos {}", e.record.pos, cause.record.pos));
        }
        *deposits.entry(cause_id.clone()).or_default() += 1;
    }
    for (cause, n) in &deposits {
        let id = format!("{}:{cause}:0", Transfers::NAME);
        let log = model.dispatches.get(&id).cloned().unwrap_or_default();
        if *n > log.attempts {
            return Err(format!("{id}: {n} deposits from {} delivery attempt(s)", log.attempts));
        }
        if *n > 1 && !log.uncertain {
            return Err(format!("{id}: delivered {n} times though every attempt had a definite outcome and no crash"));
        }
    }
    Ok(deposits)
}

/// End-of-run checks on live machine states (after the last restart and quiescence).
pub struct LiveStates {
    /// `(stream, version, state)` answered by each aggregate machine.
    pub aggregates: Vec<(StreamId, u64, Value)>,
    /// `(reader, state)` of each reader machine.
    pub readers: Vec<(String, Value)>,
}

/// Everything in [`check_store`], plus: machine states equal the folds, and rule 4. Returns how
/// many transfers were (legitimately) delivered more than once.
pub fn check_final(store: &SimStore, model: &Model, live: &LiveStates) -> Result<u64, String> {
    check_store(store, model)?;
    for (stream, version, state) in &live.aggregates {
        let log = store.log(stream);
        let folded = fold_stream(stream, log)?;
        if *version != log.len() as u64 || *state != folded {
            return Err(format!("{stream}: machine at v{version} {state}, log v{} folds to {folded}", log.len()));
        }
    }
    let all: Vec<StoredEvent> = store.durable_events().values().cloned().collect();
    for (reader, state) in &live.readers {
        let folded = fold_reader(reader, &all);
        if *state != folded {
            return Err(format!("{reader}: state {state} but all events fold to {folded}"));
        }
    }
    let deposits = check_deliveries(store, model)?;
    let letters = store.dead_letters(Transfers::NAME);
    for e in &all {
        let Ok(BankEvent::TransferredOut { .. }) = from_payload(&e.record.payload()) else { continue };
        let id = &e.record.id.0;
        if !deposits.contains_key(id) && !letters.iter().any(|l| &l.cause == id) {
            return Err(format!("transfer pos {} ({id}) neither delivered nor dead-lettered", e.record.pos));
        }
    }
    Ok(deposits.values().filter(|n| **n > 1).count() as u64)
}
