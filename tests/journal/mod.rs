//! Journal and replay: recorded machine inputs replay to byte-identical outputs, the checked-in
//! cross-target fixture is current, and replaying history through a changed aggregate version
//! reports each divergence.
//!
//! Regenerate the fixture after an intended change of the machines' behaviour:
//! `EVFOLD_BLESS=1 cargo test -p evfold-tests --test main journal::`

mod native;
mod v2;

use std::collections::VecDeque;

use evfold_core::examples::{Balances, BankAccount, BankCommand, Transfers};
use evfold_core::journal::{outputs_jsonl, Journal, Journaled, Machine};
use evfold_core::replay::{
    compare_events, compare_journal, replay_aggregate, replay_process_manager, replay_projection, DivergenceKind,
    DivergenceReport, ReplayError,
};
use evfold_core::{
    to_payload, AggregateConfig, AggregateFactory, AggregateInput, AggregateMachine, CommandContext, CommandId,
    EventRecord, ExpectedVersion, IdSeed, Io, IoError, IoErrorKind, IoId, IoResult, Output, Position, ReaderConfig,
    ReaderInput, StoredEvent, StreamId, Timestamp, TypedAggregateFactory, TypedProcessManager, TypedProjection,
};
use serde_json::Value;

use v2::BankAccountV2;

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/testdata/replay");
const T0: u64 = 1_767_225_600_000;

/// A synchronous in-test store for one stream: fulfils storage IO, can fail the next sync.
#[derive(Default)]
struct OneStream {
    log: Vec<EventRecord>,
    fail_next_sync: bool,
}

impl OneStream {
    fn fulfil(&mut self, request: Io) -> IoResult {
        match request {
            Io::ReadSnapshot { .. } => IoResult::Snapshot(None),
            Io::ReadStream { after_seq, .. } => {
                IoResult::Stream(self.log.iter().filter(|r| r.seq > after_seq).cloned().collect())
            }
            Io::Append { expected_seq, events, .. } => {
                let start = self.log.len() as u64;
                if start != expected_seq {
                    return IoResult::Failed(IoError::new(IoErrorKind::Conflict { actual_seq: start }, "moved"));
                }
                let records: Vec<EventRecord> = events
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| EventRecord::from_new(e, start + 1 + i as u64, 10 * (start + 1 + i as u64)))
                    .collect();
                self.log.extend(records.iter().cloned());
                IoResult::Appended(records)
            }
            Io::Sync { .. } if std::mem::take(&mut self.fail_next_sync) => {
                IoResult::Failed(IoError::new(IoErrorKind::Storage, "fsync: EIO"))
            }
            Io::Sync { .. } | Io::WriteSnapshot { .. } => IoResult::Done,
            other => panic!("an aggregate asked for {other:?}"),
        }
    }
}

/// Drains outputs, queueing IO; returns nothing else (the journal captures every output).
fn collect<M: Machine>(machine: &mut Journaled<M>, queue: &mut VecDeque<(IoId, Io)>) {
    while let Some(output) = machine.poll() {
        if let Output::Io { io, request } = output {
            queue.push_back((io, request));
        }
    }
}

fn command(id: u64, command: &BankCommand, n: u64) -> AggregateInput {
    AggregateInput::Command {
        id: CommandId(id),
        command: to_payload(command).expect("tagged"),
        context: CommandContext::default()
            .with_actor("ada")
            .with_correlation_id(format!("corr-{id}"))
            .with_extra("rate", serde_json::json!(0.1 + n as f64 / 3.0)),
        expected: ExpectedVersion::Any,
        ids: IdSeed(0x0190_0000_0000_7000_8000_0000_0000_0000 + (u128::from(n) << 8)),
    }
}

/// The scripted bank-account scenario: load, group commit, rejections, a query, a spurious
/// timeout, a failed fsync that poisons the machine, and a command refused after it.
fn record_bank() -> (Journaled<AggregateMachine>, Vec<EventRecord>) {
    let stream = StreamId::new("bank-account", "acc-1").expect("valid");
    let aggregate = TypedAggregateFactory::<BankAccount>::default().instantiate().expect("typed");
    let config = AggregateConfig { snapshot_every: Some(3), ..AggregateConfig::default() };
    let mut m = Journaled::aggregate(stream, aggregate, config, Timestamp(T0));
    let mut store = OneStream::default();
    let mut queue = VecDeque::new();
    let run = |m: &mut Journaled<AggregateMachine>, store: &mut OneStream, queue: &mut VecDeque<_>, t: u64| {
        collect(m, queue);
        while let Some((io, request)) = queue.pop_front() {
            let result = store.fulfil(request);
            m.handle(Timestamp(T0 + t), AggregateInput::Completed { io, result });
            collect(m, queue);
        }
    };
    run(&mut m, &mut store, &mut queue, 1);
    m.handle(Timestamp(T0 + 10), command(1, &BankCommand::Open { owner: "ada".into() }, 1));
    run(&mut m, &mut store, &mut queue, 11);
    // Three commands while the first append is in flight: one group commit for the last two.
    m.handle(Timestamp(T0 + 20), command(2, &BankCommand::Deposit { amount: 120 }, 2));
    m.handle(Timestamp(T0 + 21), command(3, &BankCommand::Withdraw { amount: 70 }, 3));
    m.handle(Timestamp(T0 + 22), command(4, &BankCommand::TransferOut { to: "acc-2".into(), amount: 20 }, 4));
    run(&mut m, &mut store, &mut queue, 23);
    m.handle(Timestamp(T0 + 30), command(5, &BankCommand::Open { owner: "bob".into() }, 5));
    m.handle(Timestamp(T0 + 31), command(6, &BankCommand::Withdraw { amount: 500 }, 6));
    m.handle(Timestamp(T0 + 32), AggregateInput::Query { id: CommandId(7) });
    m.handle(Timestamp(T0 + 33), AggregateInput::Timeout);
    run(&mut m, &mut store, &mut queue, 34);
    store.fail_next_sync = true;
    m.handle(Timestamp(T0 + 40), command(8, &BankCommand::Withdraw { amount: 10 }, 8));
    run(&mut m, &mut store, &mut queue, 41);
    m.handle(Timestamp(T0 + 50), command(9, &BankCommand::Deposit { amount: 5 }, 9));
    run(&mut m, &mut store, &mut queue, 51);
    (m, store.log)
}

fn stored(log: &[EventRecord]) -> Vec<StoredEvent> {
    let stream = StreamId::new("bank-account", "acc-1").expect("valid");
    log.iter().map(|r| StoredEvent { stream: stream.clone(), record: r.clone() }).collect()
}

/// Fulfils a reader's IO from a fixed list of events; dispatches to `acc-2` are refused.
fn fulfil_reader(events: &[StoredEvent], request: Io) -> IoResult {
    match request {
        Io::ReadCheckpoint { .. } => IoResult::Checkpoint(None),
        Io::ReadAll { after, max_events } => {
            let after = after.0.as_u64().unwrap_or(0);
            let batch: Vec<StoredEvent> =
                events.iter().filter(|e| e.record.pos > after).take(max_events).cloned().collect();
            let next = batch.last().map_or(after, |e| e.record.pos);
            IoResult::Batch { events: batch, next: Position(Value::from(next)) }
        }
        Io::WriteCheckpoint { .. } | Io::WriteDeadLetter { .. } => IoResult::Done,
        Io::Dispatch { .. } => IoResult::Failed(IoError::new(IoErrorKind::Rejected, "account is not open")),
        other => panic!("a reader asked for {other:?}"),
    }
}

fn run_reader<M: Machine<Input = ReaderInput>>(m: &mut Journaled<M>, events: &[StoredEvent]) {
    let mut queue = VecDeque::new();
    m.handle(Timestamp(T0 + 100), ReaderInput::Wake);
    for step in 0..200 {
        collect(m, &mut queue);
        if let Some((io, request)) = queue.pop_front() {
            let result = fulfil_reader(events, request);
            m.handle(Timestamp(T0 + 100 + step), ReaderInput::Completed { io, result });
        } else if let Some((deadline, _)) = m.poll_timeout() {
            m.handle(deadline, ReaderInput::Timeout);
        } else {
            return;
        }
    }
    panic!("reader did not settle");
}

#[test]
fn aggregate_journal_replays_to_identical_bytes() {
    let (machine, log) = record_bank();
    assert!(machine.machine().is_poisoned(), "the scenario ends poisoned by the failed fsync");
    assert_eq!(log.len(), 5, "open, deposit, withdraw, transfer, and the unsynced withdrawal");
    let (journal, live, _) = machine.into_parts();
    let text = journal.to_jsonl();
    let parsed = Journal::from_jsonl(&text).expect("own output parses");
    assert_eq!(parsed, journal);
    assert_eq!(parsed.to_jsonl(), text, "journal text round-trips byte for byte");
    let replayed = replay_aggregate(&parsed, &TypedAggregateFactory::<BankAccount>::default()).expect("replays");
    assert_eq!(outputs_jsonl(&replayed), outputs_jsonl(&live));
    assert!(outputs_jsonl(&live).contains("\"kind\":\"Storage\""), "the failed fsync is in the outputs");
}

#[test]
fn reader_journals_replay_to_identical_bytes() {
    let (_, log) = record_bank();
    let events = stored(&log);
    let config = ReaderConfig { batch_size: 2, ..ReaderConfig::default() };
    let mut projection =
        Journaled::projection(Box::new(TypedProjection::<Balances>::default()), config.clone(), Timestamp(T0));
    run_reader(&mut projection, &events);
    let (journal, live, _) = projection.into_parts();
    let journal = Journal::from_jsonl(&journal.to_jsonl()).expect("parses");
    let replayed = replay_projection(&journal, Box::new(TypedProjection::<Balances>::default())).expect("replays");
    assert_eq!(outputs_jsonl(&replayed), outputs_jsonl(&live));

    let mut manager =
        Journaled::process_manager(Box::new(TypedProcessManager::<Transfers>::default()), config, Timestamp(T0));
    run_reader(&mut manager, &events);
    let (journal, live, _) = manager.into_parts();
    assert!(outputs_jsonl(&live).contains("dead_lettered"), "the refused transfer is dead-lettered");
    let journal = Journal::from_jsonl(&journal.to_jsonl()).expect("parses");
    let replayed =
        replay_process_manager(&journal, Box::new(TypedProcessManager::<Transfers>::default())).expect("replays");
    assert_eq!(outputs_jsonl(&replayed), outputs_jsonl(&live));
}

#[test]
fn replay_refuses_the_wrong_machine_or_domain() {
    let (machine, _) = record_bank();
    let journal = machine.journal().clone();
    let err = replay_projection(&journal, Box::new(TypedProjection::<Balances>::default())).expect_err("kind");
    assert_eq!(err, ReplayError::WrongMachine { found: "aggregate", wanted: "projection" });
    let counter = TypedAggregateFactory::<evfold_core::examples::Counter>::default();
    let err = replay_aggregate(&journal, &counter).expect_err("type");
    assert!(matches!(err, ReplayError::WrongDomain { .. }), "{err:?}");
}

/// The fixture core's cross-target test replays (on x86_64 and wasm32-wasip1) is exactly what
/// this scenario records today.
#[test]
fn cross_target_fixture_is_current() {
    let (machine, log) = record_bank();
    let (journal, outputs, _) = machine.into_parts();
    let mut fixtures = vec![("bank", journal, outputs)];
    let (events, config) = (stored(&log), ReaderConfig { batch_size: 2, ..ReaderConfig::default() });
    let mut projection =
        Journaled::projection(Box::new(TypedProjection::<Balances>::default()), config.clone(), Timestamp(T0));
    run_reader(&mut projection, &events);
    let (journal, outputs, _) = projection.into_parts();
    fixtures.push(("balances", journal, outputs));
    let mut manager =
        Journaled::process_manager(Box::new(TypedProcessManager::<Transfers>::default()), config, Timestamp(T0));
    run_reader(&mut manager, &events);
    let (journal, outputs, _) = manager.into_parts();
    fixtures.push(("transfers", journal, outputs));
    for (name, journal, outputs) in fixtures {
        check_fixture(&format!("{name}.journal.jsonl"), &journal.to_jsonl());
        check_fixture(&format!("{name}.outputs.jsonl"), &outputs_jsonl(&outputs));
    }
}

fn check_fixture(file: &str, text: &str) {
    let path = format!("{FIXTURE_DIR}/{file}");
    if std::env::var_os("EVFOLD_BLESS").is_some() {
        std::fs::create_dir_all(FIXTURE_DIR).expect("fixture dir");
        std::fs::write(&path, text).expect("write fixture");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}; run with EVFOLD_BLESS=1"));
    assert_eq!(stored, text, "{file} is stale: EVFOLD_BLESS=1 to regenerate");
}

fn kinds(report: &DivergenceReport) -> Vec<(&'static str, Option<u64>)> {
    report
        .divergences
        .iter()
        .map(|d| {
            let kind = match d.kind {
                DivergenceKind::StateDiffers { .. } => "state",
                DivergenceKind::NowRejected { .. } => "now-rejected",
                DivergenceKind::NowAccepted { .. } => "now-accepted",
                DivergenceKind::DifferentEvents { .. } => "different-events",
                DivergenceKind::CandidateFault { .. } => "fault",
            };
            (kind, d.version)
        })
        .collect()
}

#[test]
fn the_same_version_replays_without_divergence() {
    let (machine, log) = record_bank();
    let same = TypedAggregateFactory::<BankAccount>::default();
    let report = compare_journal(machine.journal(), &same, &same).expect("replays");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.commands, 7, "every decided command was compared");
    let stream = StreamId::new("bank-account", "acc-1").expect("valid");
    let report = compare_events(&stream, &log, &same, &same).expect("replays");
    assert!(report.is_clean() && report.events == 5, "{report}");
}

#[test]
fn a_changed_version_reports_each_divergence() {
    let (machine, _) = record_bank();
    let baseline = TypedAggregateFactory::<BankAccount>::default();
    let candidate = TypedAggregateFactory::<BankAccountV2>::default();
    let report = compare_journal(machine.journal(), &baseline, &candidate).expect("replays");
    // v1: Opened. v2: +120 (v2 adds a bonus event). v3: -70 (v2 caps withdrawals at 50).
    // Opening again is accepted by v2 (idempotent). Opened is no movement in v2: state differs.
    assert_eq!(
        kinds(&report),
        vec![("state", Some(1)), ("different-events", Some(1)), ("now-rejected", Some(2)), ("now-accepted", Some(4))],
        "{report}"
    );
    assert!(report.state_mismatches >= 4, "every event after the first differs: {report}");
    let json = serde_json::to_string(&report).expect("serializes");
    let back: DivergenceReport = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, report);
    let text = report.to_string();
    assert!(text.contains("Withdraw now rejected (over the 50 limit)"), "{text}");
}

#[test]
fn stored_events_alone_show_state_divergence_and_undecodable_events() {
    let (_, log) = record_bank();
    let stream = StreamId::new("bank-account", "acc-1").expect("valid");
    let baseline = TypedAggregateFactory::<BankAccount>::default();
    let report =
        compare_events(&stream, &log, &baseline, &TypedAggregateFactory::<BankAccountV2>::default()).expect("replays");
    assert_eq!(kinds(&report), vec![("state", Some(1))], "{report}");
    let renamed = v2::RenamedEventsFactory;
    let report = compare_events(&stream, &log, &baseline, &renamed).expect("replays");
    assert_eq!(kinds(&report), vec![("fault", Some(2))], "Deposited no longer decodes: {report}");
}
