//! The decide context comes from the machine's inputs only: the `Inventory` example (whose rules
//! read the stream id, the actor and `now`) decides the same events when its journal is replayed
//! into a fresh machine, and a typed refusal carries its error as data.

use std::collections::VecDeque;

use crate::aggregate_machine::{AggregateConfig, AggregateInput, AggregateMachine};
use crate::domain::{to_payload, AggregateFactory, TypedAggregateFactory};
use crate::examples::{Inventory, InventoryCommand, InventoryError, InventoryEvent};
use crate::io::{CommandError, CommandId, Io, IoResult, Output};
use crate::journal::{outputs_jsonl, Journal, Journaled, OutputRecord};
use crate::replay::replay_aggregate;
use crate::types::{CommandContext, EventRecord, ExpectedVersion, IdSeed, StreamId, Timestamp};
use crate::{error_from_data, Aggregate};

const T0: u64 = 1_790_000_000_000;

fn command(id: u64, command: InventoryCommand, actor: Option<&str>) -> AggregateInput {
    let context = actor.map_or_else(CommandContext::default, |a| CommandContext::default().with_actor(a));
    AggregateInput::Command {
        id: CommandId(id),
        command: to_payload(&command).unwrap(),
        context,
        expected: ExpectedVersion::Any,
        ids: IdSeed(u128::from(id) << 16),
    }
}

fn receive(sku: &str, quantity: u64) -> InventoryCommand {
    InventoryCommand::Receive { sku: sku.into(), quantity }
}

/// Feeds `inputs` (each at its own `now`), fulfilling IO from an in-test log; returns the log.
fn drive(machine: &mut Journaled<AggregateMachine>, inputs: Vec<(u64, AggregateInput)>) -> Vec<EventRecord> {
    let mut log: Vec<EventRecord> = Vec::new();
    let mut queue = VecDeque::new();
    let mut settle = |machine: &mut Journaled<AggregateMachine>, now: u64, log: &mut Vec<EventRecord>| {
        while let Some(output) = machine.poll() {
            if let Output::Io { io, request } = output {
                queue.push_back((io, request));
            }
            while let Some((io, request)) = queue.pop_front() {
                let result = match request {
                    Io::ReadSnapshot { .. } => IoResult::Snapshot(None),
                    Io::ReadStream { .. } => IoResult::Stream(log.clone()),
                    Io::Append { events, .. } => {
                        let start = log.len() as u64;
                        let records: Vec<EventRecord> = (events.into_iter().enumerate())
                            .map(|(i, e)| EventRecord::from_new(e, start + 1 + i as u64, start + 1 + i as u64))
                            .collect();
                        log.extend(records.iter().cloned());
                        IoResult::Appended(records)
                    }
                    _ => IoResult::Done,
                };
                machine.handle(Timestamp(now), AggregateInput::Completed { io, result });
            }
        }
    };
    settle(machine, T0, &mut log);
    for (now, input) in inputs {
        machine.handle(Timestamp(now), input);
        settle(machine, now, &mut log);
    }
    log
}

#[test]
fn handle_with_sees_stream_actor_and_now_from_the_inputs_and_replays_identically() {
    let stream = StreamId::new(Inventory::AGGREGATE_TYPE, "sku-1").unwrap();
    let factory = TypedAggregateFactory::<Inventory>::default();
    let mut machine =
        Journaled::aggregate(stream, factory.instantiate().unwrap(), AggregateConfig::default(), Timestamp(T0));
    let log = drive(
        &mut machine,
        vec![
            (T0 + 5, command(1, receive("sku-1", 10), Some("alice"))),
            (T0 + 9, command(2, receive("sku-2", 1), Some("alice"))),
            (T0 + 12, command(3, receive("sku-1", 1), None)),
            (T0 + 20, command(4, InventoryCommand::Ship { sku: "sku-1".into(), quantity: 4 }, Some("bob"))),
            (T0 + 30, command(5, InventoryCommand::Ship { sku: "sku-1".into(), quantity: 7 }, Some("bob"))),
        ],
    );
    let events: Vec<InventoryEvent> = log.iter().map(|r| crate::domain::from_payload(&r.payload()).unwrap()).collect();
    assert_eq!(
        events,
        [
            InventoryEvent::Received { quantity: 10, by: "alice".into(), at: Timestamp(T0 + 5) },
            InventoryEvent::Shipped { quantity: 4, by: "bob".into(), at: Timestamp(T0 + 20) },
        ]
    );
    let (journal, live, _) = machine.into_parts();
    let refusals: Vec<&str> = live
        .iter()
        .filter_map(|output| match output {
            OutputRecord::Reply { result: Err(error), .. } => Some(error.message.as_str()),
            _ => None,
        })
        .collect();
    let expected = [
        InventoryError::WrongSku { stream: "sku-1".into(), command: "sku-2".into() },
        InventoryError::NoActor,
        InventoryError::InsufficientStock { available: 6, requested: 7 },
    ];
    assert_eq!(refusals, expected.map(|e| format!("rejected: {e}")));
    let replayed = replay_aggregate(&Journal::from_jsonl(&journal.to_jsonl()).unwrap(), &factory).unwrap();
    assert_eq!(outputs_jsonl(&replayed), outputs_jsonl(&live), "same journal, same context, same outputs");
}

#[test]
fn a_typed_refusal_carries_its_error_as_data() {
    let stream = StreamId::new(Inventory::AGGREGATE_TYPE, "sku-1").unwrap();
    let aggregate = TypedAggregateFactory::<Inventory>::default().instantiate().unwrap();
    let mut machine = AggregateMachine::new(stream, aggregate, AggregateConfig::default(), Timestamp(T0));
    let mut replies = Vec::new();
    let mut pending: VecDeque<Output> = VecDeque::new();
    let mut step =
        |machine: &mut AggregateMachine, input: AggregateInput, replies: &mut Vec<_>| {
            machine.handle(Timestamp(T0), input);
            while let Some(output) = machine.poll() {
                pending.push_back(output);
            }
            while let Some(output) = pending.pop_front() {
                match output {
                    Output::Io { io, request: Io::ReadSnapshot { .. } } => machine
                        .handle(Timestamp(T0), AggregateInput::Completed { io, result: IoResult::Snapshot(None) }),
                    Output::Io { io, request: Io::ReadStream { .. } } => machine
                        .handle(Timestamp(T0), AggregateInput::Completed { io, result: IoResult::Stream(vec![]) }),
                    Output::Reply { result, .. } => replies.push(result),
                    _ => {}
                }
                while let Some(output) = machine.poll() {
                    pending.push_back(output);
                }
            }
        };
    step(&mut machine, command(1, receive("sku-9", 1), Some("alice")), &mut replies);
    let Some(Err(CommandError::Rejected(rejection))) = replies.pop() else { panic!("{replies:?}") };
    let expected = InventoryError::WrongSku { stream: "sku-1".into(), command: "sku-9".into() };
    assert_eq!(rejection.message, expected.to_string());
    assert_eq!(error_from_data::<InventoryError>(rejection.data.as_ref().unwrap()), Some(expected));
}
