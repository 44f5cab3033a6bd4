//! # evfold-core: the sans-IO event-sourcing core
//!
//! Pure state machines that fold events into aggregate state, decide commands into new events,
//! and advance projection and process-manager checkpoints. They never touch a file, a clock, a
//! thread or a random source: time, event-id entropy and every IO result come in as inputs, and
//! IO comes out as requests ([`Io`]) for a host to fulfil. Same inputs, same outputs, always.
//!
//! ## The loop contract
//! Every machine ([`AggregateMachine`], [`ProjectionMachine`], [`ProcessManagerMachine`]) is
//! driven the same way:
//!
//! ```text
//! machine.handle(now, input);                 // a command, a completion, a timeout, a wake-up
//! while let Some(out) = machine.poll() {      // drain after EVERY handle
//!     match out {
//!         Output::Io { io, request } => { /* fulfil, later: handle(now, Completed { io, result }) */ }
//!         Output::Reply { id, result } => { /* answer the caller */ }
//!         Output::State { id, result } => { /* answer a state query */ }
//!         Output::Notify(n) => { /* loaded, idle, poisoned, checkpoint saved, ... */ }
//!     }
//! }
//! // then sleep until machine.poll_timeout() or the next input
//! ```
//! Every `Output::Io` is answered by exactly one completion with the same [`IoId`]; duplicate
//! completions are ignored. `now` is clamped to be monotonic.
//!
//! ## Layers
//! - [`types`]: stream ids, event records, metadata, positions.
//! - [`domain`]: the typed traits users implement and the JSON-level traits plugins implement.
//! - [`schema`]: event versions, upcasters and the unknown-event policy (schema evolution).
//! - [`shape`]: how a typed command or event of any serde shape becomes a payload and back.
//! - [`codec`]: the JSONL line format with CRC-32C and the log scanner.
//! - [`depth`]: JSON nesting limits checked without recursion, so no input overflows a stack.
//! - [`aggregate_machine`], [`reader`]: the machines.
//! - [`memory`]: an in-memory driver for unit tests.
//! - [`journal`], [`replay`]: record a machine's inputs, replay them byte for byte, and replay
//!   history through a new aggregate version to report divergences.
//! - [`examples`]: reference domain models (counter, bank account, balances, transfers).

pub mod aggregate_machine;
pub mod codec;
pub mod decide_context;
pub mod depth;
pub mod domain;
pub mod examples;
pub mod io;
pub mod journal;
pub mod memory;
pub mod reader;
pub mod replay;
pub mod schema;
pub mod shape;
pub mod types;

pub use aggregate_machine::{AggregateConfig, AggregateInput, AggregateMachine};
pub use codec::{
    decode_line, encode_append, encode_line_into, encode_record, line_continues, nul_runs_are_holes, scan_log,
    LineError, LogEnd, Scan, ScanStart, HOLE_ALIGN,
};
pub use decide_context::{error_from_data, error_to_data, DecideContext};
pub use domain::{
    from_payload, into_payload, is_too_deep, to_payload, Aggregate, AggregateFactory, CommandEnvelope, Decision,
    DynAggregate, DynProcessManager, DynProjection, Fault, PayloadError, ProcessManager, Projection, Rejection,
    TypedAggregate, TypedAggregateFactory, TypedProcessManager, TypedProjection,
};
pub use io::{
    Checkpoint, CommandError, CommandId, Committed, DeadLetter, Io, IoError, IoErrorKind, IoId, IoResult, Notification,
    Output, Snapshot,
};
pub use reader::{ProcessManagerMachine, ProjectionMachine, ReaderConfig, ReaderInput};
pub use schema::{EventSchema, Schemas, UnknownEvents};
pub use types::{
    validate_name, CommandContext, EventId, EventRecord, ExpectedVersion, IdSeed, InvalidName, Metadata, NewEvent,
    Payload, Position, StoredEvent, StreamId, Timestamp, MAX_NAME_BYTES, TRACEPARENT,
};

#[cfg(test)]
mod tests;
