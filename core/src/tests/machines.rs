//! The machines, pinned by insta over a text trace of every input and output: a command accepted,
//! rejected, group-committed, an IO failure, a snapshot, a projection catch-up, a process-manager
//! dispatch and a dead letter. Plus the example aggregates end to end on the in-memory driver.

use serde_json::json;

use crate::aggregate_machine::{AggregateConfig, AggregateInput, AggregateMachine};
use crate::domain::TypedAggregate;
use crate::examples::{Balances, BankAccount, BankCommand, BankError, Counter, CounterCommand, Transfers};
use crate::io::{CommandError, CommandId, IoId, IoResult, Output};
use crate::memory::{FailOn, MemoryStore};
use crate::reader::ReaderConfig;
use crate::types::{CommandContext, EventRecord, ExpectedVersion, IdSeed, Payload, StreamId, Timestamp};

fn ctx() -> CommandContext {
    CommandContext::default()
}

fn bank_store() -> MemoryStore {
    let mut store = MemoryStore::new();
    store.register::<BankAccount>();
    store.record_trace();
    store
}

fn open(store: &mut MemoryStore, id: &str) {
    store.execute::<BankAccount>(id, BankCommand::Open { owner: id.to_uppercase() }, ctx()).unwrap();
}

#[test]
fn accepted_command() {
    let mut store = bank_store();
    open(&mut store, "a");
    insta::assert_snapshot!(store.take_trace(), @r#"
    in  bank-account/a: command #1 Open{"owner":"A"} expecting Any
    out bank-account/a: io#0 read-snapshot bank-account/a
    in  bank-account/a: io#0 no snapshot
    out bank-account/a: io#1 read-stream bank-account/a after 0
    in  bank-account/a: io#1 0 event(s) nothing
    out bank-account/a: notify Loaded { stream: StreamId { aggregate_type: "bank-account", instance_id: "a" }, version: 0 }
    out bank-account/a: io#2 append bank-account/a at 0: Opened{"owner":"A"}
    in  bank-account/a: io#2 appended seq 1..=1 pos 1..=1
    out bank-account/a: io#3 sync bank-account/a
    in  bank-account/a: io#3 done
    out bank-account/a: reply #1 ok: version 1 (+1) pos [1]
    "#);
}

#[test]
fn rejected_command_produces_no_io() {
    let mut store = bank_store();
    open(&mut store, "a");
    store.take_trace();
    let err = store.execute::<BankAccount>("a", BankCommand::Withdraw { amount: 5 }, ctx()).unwrap_err();
    let CommandError::Rejected(rejection) = err else { panic!("{err:?}") };
    let typed = rejection.error.unwrap().downcast::<BankError>().unwrap();
    assert_eq!(*typed, BankError::InsufficientFunds { balance: 0, requested: 5 });
    insta::assert_snapshot!(store.take_trace(), @r#"
    in  bank-account/a: command #2 Withdraw{"amount":5} expecting Any
    out bank-account/a: reply #2 err: rejected: insufficient funds: balance 0, requested 5
    "#);
}

/// Drives one machine by hand so commands can arrive while a write is in flight.
struct Driven {
    machine: AggregateMachine,
    log: Vec<String>,
    now: Timestamp,
}

impl Driven {
    fn new(config: AggregateConfig) -> Self {
        let stream = StreamId::new("counter", "c").unwrap();
        let aggregate = Box::new(TypedAggregate::<Counter>::default());
        let mut driven = Driven {
            machine: AggregateMachine::new(stream, aggregate, config, Timestamp(10)),
            log: vec![],
            now: Timestamp(10),
        };
        driven.drain();
        driven
    }

    fn drain(&mut self) -> Vec<(IoId, crate::io::Io)> {
        let mut ios = vec![];
        while let Some(out) = self.machine.poll() {
            self.log.push(format!("out {out}"));
            if let Output::Io { io, request } = out {
                ios.push((io, request));
            }
        }
        ios
    }

    fn send(&mut self, id: u64, command: CounterCommand) -> Vec<(IoId, crate::io::Io)> {
        let command = crate::domain::to_payload(&command).unwrap();
        self.log.push(format!("in  command #{id} {}", command.type_name));
        let input = AggregateInput::Command {
            id: CommandId(id),
            command,
            context: ctx(),
            expected: ExpectedVersion::Any,
            ids: IdSeed(id as u128),
        };
        self.machine.handle(self.now, input);
        self.drain()
    }

    fn complete(&mut self, io: IoId, result: IoResult) -> Vec<(IoId, crate::io::Io)> {
        self.log.push(format!("in  io#{} {result}", io.0));
        self.machine.handle(self.now, AggregateInput::Completed { io, result });
        self.drain()
    }

    /// Answers an append with records numbered from `seq`/`pos`.
    fn appended(&mut self, io: IoId, request: &crate::io::Io, pos: u64) -> Vec<(IoId, crate::io::Io)> {
        let crate::io::Io::Append { expected_seq, events, .. } = request else { panic!("{request:?}") };
        let records = events
            .iter()
            .enumerate()
            .map(|(i, e)| EventRecord::from_new(e.clone(), expected_seq + 1 + i as u64, pos + i as u64))
            .collect();
        self.complete(io, IoResult::Appended(records))
    }
}

#[test]
fn group_commit_decides_queued_commands_against_evolving_state() {
    let config = AggregateConfig { snapshot_every: None, ..AggregateConfig::default() };
    let mut d = Driven::new(config);
    let ios = d.complete(IoId(0), IoResult::Stream(vec![]));
    assert!(ios.is_empty());
    let first = d.send(1, CounterCommand::Increment);
    // While the first append is in flight, three more arrive: they wait, then go out together.
    assert!(d.send(2, CounterCommand::Increment).is_empty());
    assert!(d.send(3, CounterCommand::Decrement).is_empty());
    assert!(d.send(4, CounterCommand::Decrement).is_empty());
    assert!(d.send(5, CounterCommand::Decrement).is_empty());
    let sync = d.appended(first[0].0, &first[0].1.clone(), 1);
    let batch = d.complete(sync[0].0, IoResult::Done);
    assert_eq!(batch.len(), 1, "one append for the whole queued group");
    let sync = d.appended(batch[0].0, &batch[0].1.clone(), 2);
    d.complete(sync[0].0, IoResult::Done);
    assert_eq!(d.machine.version(), 4);
    insta::assert_snapshot!(d.log.join("\n"), @r#"
    out io#0 read-stream counter/c after 0
    in  io#0 0 event(s) nothing
    out notify Loaded { stream: StreamId { aggregate_type: "counter", instance_id: "c" }, version: 0 }
    in  command #1 Increment
    out io#1 append counter/c at 0: Incremented
    in  command #2 Increment
    in  command #3 Decrement
    in  command #4 Decrement
    in  command #5 Decrement
    in  io#1 appended seq 1..=1 pos 1..=1
    out io#2 sync counter/c
    in  io#2 done
    out reply #1 ok: version 1 (+1) pos [1]
    out reply #5 err: rejected: counter is already at zero
    out io#3 append counter/c at 1: Incremented, Decremented, Decremented
    in  io#3 appended seq 2..=4 pos 2..=4
    out io#4 sync counter/c
    in  io#4 done
    out reply #2 ok: version 2 (+1) pos [2]
    out reply #3 ok: version 3 (+1) pos [3]
    out reply #4 ok: version 4 (+1) pos [4]
    "#);
}

#[test]
fn fsync_failure_fails_the_batch_and_poisons_until_reopened() {
    let mut store = bank_store();
    open(&mut store, "a");
    store.take_trace();
    store.fail_next(FailOn::Sync);
    let err = store.execute::<BankAccount>("a", BankCommand::Deposit { amount: 7 }, ctx()).unwrap_err();
    assert!(matches!(err, CommandError::Storage(_)), "{err:?}");
    // The memory driver drops the poisoned machine; the next command reloads durable state.
    store.execute::<BankAccount>("a", BankCommand::Deposit { amount: 1 }, ctx()).unwrap();
    insta::assert_snapshot!(store.take_trace(), @r#"
    in  bank-account/a: command #2 Deposit{"amount":7} expecting Any
    out bank-account/a: io#4 append bank-account/a at 1: Deposited{"amount":7}
    in  bank-account/a: io#4 appended seq 2..=2 pos 2..=2
    out bank-account/a: io#5 sync bank-account/a
    in  bank-account/a: io#5 failed: Storage: injected fsync failure
    out bank-account/a: reply #2 err: storage failed, outcome unknown: Storage: injected fsync failure
    out bank-account/a: notify Poisoned { what: "bank-account/a", reason: "storage failed, outcome unknown: Storage: injected fsync failure" }
    in  bank-account/a: command #3 Deposit{"amount":1} expecting Any
    out bank-account/a: io#0 read-snapshot bank-account/a
    in  bank-account/a: io#0 no snapshot
    out bank-account/a: io#1 read-stream bank-account/a after 0
    in  bank-account/a: io#1 2 event(s) seq 1..=2 pos 1..=2
    out bank-account/a: notify Loaded { stream: StreamId { aggregate_type: "bank-account", instance_id: "a" }, version: 2 }
    out bank-account/a: io#2 append bank-account/a at 2: Deposited{"amount":1}
    in  bank-account/a: io#2 appended seq 3..=3 pos 3..=3
    out bank-account/a: io#3 sync bank-account/a
    in  bank-account/a: io#3 done
    out bank-account/a: reply #3 ok: version 3 (+1) pos [3]
    "#);
}

#[test]
fn append_failure_writes_nothing_and_state_stays_durable() {
    let mut store = bank_store();
    open(&mut store, "a");
    store.fail_next(FailOn::Append);
    let err = store.execute::<BankAccount>("a", BankCommand::Deposit { amount: 7 }, ctx()).unwrap_err();
    assert!(matches!(err, CommandError::Storage(_)), "{err:?}");
    let state = store.state::<BankAccount>("a").unwrap();
    assert_eq!((state.balance, state.movements), (0, 1));
}

#[test]
fn snapshot_by_policy_and_load_from_it() {
    let config = AggregateConfig { snapshot_every: Some(2), ..AggregateConfig::default() };
    let mut store = MemoryStore::with_config(config, ReaderConfig::default());
    store.register::<Counter>();
    for _ in 0..3 {
        store.execute::<Counter>("c", CounterCommand::Increment, ctx()).unwrap();
    }
    store.record_trace();
    store.execute::<Counter>("c", CounterCommand::Increment, ctx()).unwrap();
    insta::assert_snapshot!(store.take_trace(), @r#"
    in  counter/c: command #4 Increment expecting Any
    out counter/c: io#9 append counter/c at 3: Incremented
    in  counter/c: io#9 appended seq 4..=4 pos 4..=4
    out counter/c: io#10 sync counter/c
    in  counter/c: io#10 done
    out counter/c: reply #4 ok: version 4 (+1) pos [4]
    out counter/c: io#11 write-snapshot counter/c seq 4 {"value":4}
    in  counter/c: io#11 done
    "#);
    // A fresh machine loads the snapshot, then only the tail.
    store.fail_next(FailOn::Sync);
    let _ = store.execute::<Counter>("c", CounterCommand::Increment, ctx());
    store.take_trace();
    assert_eq!(store.state::<Counter>("c").unwrap().value, 5);
    let trace = store.take_trace();
    assert!(trace.contains("io#0 snapshot seq 4") && trace.contains("read-stream counter/c after 4"), "{trace}");
}

#[test]
fn projection_catch_up() {
    let mut store = MemoryStore::new();
    store.register::<BankAccount>();
    open(&mut store, "a");
    store.execute::<BankAccount>("a", BankCommand::Deposit { amount: 30 }, ctx()).unwrap();
    store.record_trace();
    store.add_projection::<Balances>();
    insta::assert_snapshot!(store.take_trace(), @r#"
    out balances: io#0 read-checkpoint balances
    in  balances: io#0 no checkpoint
    out balances: io#1 read-all after null max 512
    in  balances: io#1 2 event(s), next 2
    out balances: io#2 write-checkpoint balances at 2 {"accounts":{"a":30},"events":2,"total":30}
    in  balances: io#2 done
    out balances: notify CheckpointSaved { reader: "balances", position: Position(Number(2)) }
    out balances: notify CaughtUp { reader: "balances" }
    out balances: io#3 read-all after 2 max 512
    in  balances: io#3 0 event(s), next 2
    out balances: notify CaughtUp { reader: "balances" }
    "#);
    store.rebuild_projection("balances");
    assert_eq!(store.projection::<Balances>().unwrap().total, 30);
}

#[test]
fn process_manager_dispatch_and_dead_letter() {
    let mut store = MemoryStore::new();
    store.register::<BankAccount>();
    store.add_process_manager::<Transfers>();
    open(&mut store, "a");
    open(&mut store, "b");
    store.execute::<BankAccount>("a", BankCommand::Deposit { amount: 50 }, ctx()).unwrap();
    store.record_trace();
    let transfer = |to: &str| BankCommand::TransferOut { to: to.into(), amount: 20 };
    store.execute::<BankAccount>("a", transfer("b"), ctx()).unwrap();
    store.execute::<BankAccount>("a", transfer("nobody"), ctx()).unwrap();
    let trace = store.take_trace();
    let pm_lines: Vec<&str> = trace.lines().filter(|l| l.contains(" transfers: ")).collect();
    insta::assert_snapshot!(pm_lines.join("\n"), @r#"
    out transfers: io#8 read-all after 3 max 512
    in  transfers: io#8 1 event(s), next 4
    out transfers: io#9 dispatch transfers:00000000-0000-0000-0000-000000040000:0 to bank-account/b Deposit{"amount":20}
    in  transfers: io#9 done
    out transfers: io#10 write-checkpoint transfers at 4 {"dispatched":1}
    in  transfers: io#10 done
    out transfers: notify CheckpointSaved { reader: "transfers", position: Position(Number(4)) }
    out transfers: notify CaughtUp { reader: "transfers" }
    out transfers: io#11 read-all after 4 max 512
    in  transfers: io#11 2 event(s), next 6
    out transfers: io#12 dispatch transfers:00000000-0000-0000-0000-000000060000:0 to bank-account/nobody Deposit{"amount":20}
    in  transfers: io#12 failed: Rejected: account is not open
    out transfers: io#13 dead-letter transfers: bank-account/nobody Deposit after 1 attempt(s): Rejected: account is not open
    in  transfers: io#13 done
    out transfers: notify DeadLettered { reader: "transfers", dispatch_id: "transfers:00000000-0000-0000-0000-000000060000:0" }
    out transfers: io#14 write-checkpoint transfers at 6 {"dispatched":2}
    in  transfers: io#14 done
    out transfers: notify CheckpointSaved { reader: "transfers", position: Position(Number(6)) }
    out transfers: notify CaughtUp { reader: "transfers" }
    "#);
    assert_eq!(store.state::<BankAccount>("b").unwrap().balance, 20);
    assert_eq!(store.dead_letters("transfers").len(), 1);
}

#[test]
fn counter_and_bank_end_to_end() {
    let mut store = MemoryStore::new();
    store.register::<Counter>();
    store.register::<BankAccount>();
    store.add_projection::<Balances>();
    for _ in 0..3 {
        store.execute::<Counter>("c1", CounterCommand::Increment, ctx()).unwrap();
    }
    store.execute::<Counter>("c1", CounterCommand::Decrement, ctx()).unwrap();
    assert_eq!(store.state::<Counter>("c1").unwrap().value, 2);
    open(&mut store, "x");
    store.execute::<BankAccount>("x", BankCommand::Deposit { amount: 100 }, ctx()).unwrap();
    assert!(store.execute::<BankAccount>("x", BankCommand::Withdraw { amount: 101 }, ctx()).is_err());
    store.execute::<BankAccount>("x", BankCommand::Withdraw { amount: 60 }, ctx()).unwrap();
    assert_eq!(store.state::<BankAccount>("x").unwrap().balance, 40);
    assert_eq!(store.projection::<Balances>().unwrap().total, 40);
    let stream = StreamId::new("bank-account", "x").unwrap();
    let types: Vec<&str> = store.read_stream(&stream).iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, ["Opened", "Deposited", "Withdrew"]);
    // Positions are store-wide and strictly increasing.
    let positions: Vec<u64> = store.read_all().iter().map(|e| e.record.pos).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]) && positions.len() == 7);
}

#[test]
fn expected_version_is_checked_without_io() {
    let mut store = bank_store();
    open(&mut store, "a");
    let stream = StreamId::new("bank-account", "a").unwrap();
    let envelope = crate::domain::CommandEnvelope {
        target: stream,
        command: Payload::new("Deposit", json!({"amount": 1})),
        context: ctx(),
    };
    store.take_trace();
    let err = store.execute_envelope(&envelope, ExpectedVersion::Exact(5)).unwrap_err();
    assert!(matches!(err, CommandError::WrongExpectedVersion { actual: 1, .. }));
    assert!(!store.take_trace().contains("append"));
    store.execute_envelope(&envelope, ExpectedVersion::Exact(1)).unwrap();
}

#[test]
fn a_payload_that_does_not_decode_is_a_fault_not_a_panic() {
    let mut store = bank_store();
    let stream = StreamId::new("bank-account", "a").unwrap();
    let envelope =
        crate::domain::CommandEnvelope { target: stream, command: Payload::new("Explode", json!(1)), context: ctx() };
    let err = store.execute_envelope(&envelope, ExpectedVersion::Any).unwrap_err();
    assert!(matches!(err, CommandError::Fault(_)), "{err:?}");
    open(&mut store, "a");
}
