//! Machine journals: every input a machine took (commands with context, time and id seeds, IO
//! completions, wake-ups, timeouts) as JSONL-friendly data, plus a serializable rendering of
//! every output, so a journal can be replayed into a fresh machine and compared byte for byte.
//!
//! A journal file is JSONL: the first line is a [`JournalHeader`] (which machine, its
//! configuration, its start time), each further line one [`JournalEntry`]. Outputs render as
//! JSONL of [`OutputRecord`]s (see [`outputs_jsonl`]).
//!
//! ```
//! use evfold_core::examples::Counter;
//! use evfold_core::journal::{Journaled, InputRecord};
//! use evfold_core::{AggregateConfig, AggregateFactory, StreamId, Timestamp, TypedAggregateFactory};
//!
//! let stream = StreamId::new("counter", "c1").unwrap();
//! let aggregate = TypedAggregateFactory::<Counter>::default().instantiate().unwrap();
//! let mut machine = Journaled::aggregate(stream, aggregate, AggregateConfig::default(), Timestamp(1));
//! while machine.poll().is_some() {} // the first outputs are the load reads
//! let jsonl = machine.journal().to_jsonl();
//! assert!(jsonl.starts_with("{\"format\":1,"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate_machine::{AggregateConfig, AggregateInput, AggregateMachine};
use crate::domain::{DynAggregate, DynProcessManager, DynProjection};
use crate::io::{CommandError, CommandId, Committed, Io, IoId, IoResult, Notification, Output};
use crate::reader::{ProcessManagerMachine, ProjectionMachine, ReaderConfig, ReaderInput};
use crate::types::{CommandContext, ExpectedVersion, IdSeed, Payload, StreamId, Timestamp};

/// Version of the journal line format written in every header.
pub const JOURNAL_FORMAT: u32 = 1;

/// Why a journal could not be read or replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The text is empty: no header line.
    #[error("journal is empty: no header line")]
    Empty,
    /// A line is not valid JSON of the expected shape.
    #[error("journal line {line}: {message}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// serde's message.
        message: String,
    },
    /// The header names a format this code does not read.
    #[error("journal format {found} is not supported (this build reads format {JOURNAL_FORMAT})")]
    Format {
        /// The format in the header.
        found: u32,
    },
    /// An input does not fit the machine kind (e.g. `Wake` for an aggregate).
    #[error("entry {entry}: input {input} does not apply to a {machine} machine")]
    WrongInput {
        /// 0-based entry index.
        entry: usize,
        /// The input's kind.
        input: &'static str,
        /// The machine's kind.
        machine: &'static str,
    },
}

/// The first line of a journal: which machine, configured how, started when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalHeader {
    /// Always [`JOURNAL_FORMAT`] when written by this build.
    pub format: u32,
    /// The `now` the machine was created with.
    pub start: Timestamp,
    /// The machine and its configuration.
    pub machine: MachineSpec,
}

/// Which machine a journal drives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MachineSpec {
    /// An aggregate instance.
    Aggregate {
        /// Its stream.
        stream: StreamId,
        /// Its configuration.
        config: AggregateSettings,
    },
    /// A projection.
    Projection {
        /// Its name.
        name: String,
        /// Its configuration.
        config: ReaderSettings,
    },
    /// A process manager.
    ProcessManager {
        /// Its name.
        name: String,
        /// Its configuration.
        config: ReaderSettings,
    },
}

impl MachineSpec {
    /// `aggregate`, `projection` or `process_manager`.
    pub fn kind(&self) -> &'static str {
        match self {
            MachineSpec::Aggregate { .. } => "aggregate",
            MachineSpec::Projection { .. } => "projection",
            MachineSpec::ProcessManager { .. } => "process_manager",
        }
    }
}

/// Serializable form of [`AggregateConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSettings {
    /// See [`AggregateConfig::snapshot_every`].
    pub snapshot_every: Option<u64>,
    /// See [`AggregateConfig::sync_each_batch`].
    pub sync_each_batch: bool,
    /// See [`AggregateConfig::max_batch_events`].
    pub max_batch_events: usize,
    /// See [`AggregateConfig::max_event_bytes`].
    pub max_event_bytes: usize,
    /// See [`AggregateConfig::max_command_bytes`] (written only when not the default, so
    /// journals from before it existed read back unchanged).
    #[serde(default = "default_max_command_bytes", skip_serializing_if = "is_default_max_command_bytes")]
    pub max_command_bytes: usize,
    /// See [`AggregateConfig::conflict_retries`].
    pub conflict_retries: u32,
    /// See [`AggregateConfig::idle_timeout_ms`].
    pub idle_timeout_ms: Option<u64>,
}

impl From<&AggregateConfig> for AggregateSettings {
    fn from(c: &AggregateConfig) -> Self {
        AggregateSettings {
            snapshot_every: c.snapshot_every,
            sync_each_batch: c.sync_each_batch,
            max_batch_events: c.max_batch_events,
            max_event_bytes: c.max_event_bytes,
            max_command_bytes: c.max_command_bytes,
            conflict_retries: c.conflict_retries,
            idle_timeout_ms: c.idle_timeout_ms,
        }
    }
}

impl From<AggregateSettings> for AggregateConfig {
    fn from(s: AggregateSettings) -> Self {
        AggregateConfig {
            snapshot_every: s.snapshot_every,
            sync_each_batch: s.sync_each_batch,
            max_batch_events: s.max_batch_events,
            max_event_bytes: s.max_event_bytes,
            max_command_bytes: s.max_command_bytes,
            conflict_retries: s.conflict_retries,
            idle_timeout_ms: s.idle_timeout_ms,
        }
    }
}

fn default_max_command_bytes() -> usize {
    AggregateConfig::default().max_command_bytes
}

fn is_default_max_command_bytes(bytes: &usize) -> bool {
    *bytes == default_max_command_bytes()
}

/// Serializable form of [`ReaderConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderSettings {
    /// See [`ReaderConfig::batch_size`].
    pub batch_size: usize,
    /// See [`ReaderConfig::checkpoint_every_events`].
    pub checkpoint_every_events: u64,
    /// See [`ReaderConfig::checkpoint_every_ms`] (absent in journals written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_ms: Option<u64>,
    /// See [`ReaderConfig::checkpoint_quiet_ms`] (absent in journals written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_quiet_ms: Option<u64>,
    /// See [`ReaderConfig::max_dispatch_attempts`].
    pub max_dispatch_attempts: u32,
    /// See [`ReaderConfig::retry_backoff_ms`].
    pub retry_backoff_ms: u64,
}

impl From<&ReaderConfig> for ReaderSettings {
    fn from(c: &ReaderConfig) -> Self {
        ReaderSettings {
            batch_size: c.batch_size,
            checkpoint_every_events: c.checkpoint_every_events,
            checkpoint_every_ms: c.checkpoint_every_ms,
            checkpoint_quiet_ms: c.checkpoint_quiet_ms,
            max_dispatch_attempts: c.max_dispatch_attempts,
            retry_backoff_ms: c.retry_backoff_ms,
        }
    }
}

impl From<ReaderSettings> for ReaderConfig {
    fn from(s: ReaderSettings) -> Self {
        ReaderConfig {
            batch_size: s.batch_size,
            checkpoint_every_events: s.checkpoint_every_events,
            checkpoint_every_ms: s.checkpoint_every_ms,
            checkpoint_quiet_ms: s.checkpoint_quiet_ms,
            max_dispatch_attempts: s.max_dispatch_attempts,
            retry_backoff_ms: s.retry_backoff_ms,
        }
    }
}

/// One input a machine took, at the `now` it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The `now` passed to `handle`.
    pub now: Timestamp,
    /// The input.
    pub input: InputRecord,
}

/// Serializable form of [`AggregateInput`] and [`ReaderInput`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum InputRecord {
    /// [`AggregateInput::Command`].
    Command {
        /// Caller's id.
        id: u64,
        /// The command.
        command: Payload,
        /// Its context.
        context: CommandContext,
        /// Optimistic concurrency check.
        expected: ExpectedVersion,
        /// Event-id entropy, as 32 hex digits (JSON numbers lose 128-bit precision).
        #[serde(with = "hex_u128")]
        ids: u128,
    },
    /// [`AggregateInput::Query`].
    Query {
        /// Caller's id.
        id: u64,
    },
    /// [`ReaderInput::Wake`].
    Wake,
    /// [`ReaderInput::Rebuild`].
    Rebuild,
    /// A completion (either machine kind).
    Completed {
        /// The request's id.
        io: u64,
        /// Its result.
        result: IoResult,
    },
    /// A timeout (either machine kind).
    Timeout,
    /// [`ReaderInput::Flush`].
    Flush,
}

impl InputRecord {
    /// Short name of the input kind.
    pub fn kind(&self) -> &'static str {
        match self {
            InputRecord::Command { .. } => "command",
            InputRecord::Query { .. } => "query",
            InputRecord::Wake => "wake",
            InputRecord::Rebuild => "rebuild",
            InputRecord::Completed { .. } => "completed",
            InputRecord::Timeout => "timeout",
            InputRecord::Flush => "flush",
        }
    }
}

mod hex_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        u128::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

/// A [`CommandError`] as data: its variant name and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// Variant name, e.g. `Rejected`, `Storage`.
    pub kind: String,
    /// The error's `Display`.
    pub message: String,
}

impl From<&CommandError> for ErrorRecord {
    fn from(e: &CommandError) -> Self {
        let kind = match e {
            CommandError::Rejected(_) => "Rejected",
            CommandError::WrongExpectedVersion { .. } => "WrongExpectedVersion",
            CommandError::EventTooLarge { .. } => "EventTooLarge",
            CommandError::CommandTooLarge { .. } => "CommandTooLarge",
            CommandError::Fault(_) => "Fault",
            CommandError::Conflict { .. } => "Conflict",
            CommandError::Storage(_) => "Storage",
            CommandError::Unavailable(_) => "Unavailable",
        };
        ErrorRecord { kind: kind.to_owned(), message: e.to_string() }
    }
}

/// Serializable form of [`Output`]; what [`outputs_jsonl`] writes, one per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // records are written once, not stored in bulk (like `Output`)
pub enum OutputRecord {
    /// [`Output::Io`].
    Io {
        /// Request id.
        io: u64,
        /// The request.
        request: Io,
    },
    /// [`Output::Reply`].
    Reply {
        /// Caller's id.
        id: u64,
        /// Committed, or why not.
        result: Result<Committed, ErrorRecord>,
    },
    /// [`Output::State`].
    State {
        /// Caller's id.
        id: u64,
        /// Version and state, or why not.
        result: Result<(u64, Value), ErrorRecord>,
    },
    /// [`Output::Notify`].
    Notify {
        /// The notification.
        notification: Notification,
    },
}

impl From<&Output> for OutputRecord {
    fn from(o: &Output) -> Self {
        match o {
            Output::Io { io, request } => OutputRecord::Io { io: io.0, request: request.clone() },
            Output::Reply { id, result } => {
                OutputRecord::Reply { id: id.0, result: result.clone().map_err(|e| (&e).into()) }
            }
            Output::State { id, result } => {
                OutputRecord::State { id: id.0, result: result.clone().map_err(|e| (&e).into()) }
            }
            Output::Notify(n) => OutputRecord::Notify { notification: n.clone() },
        }
    }
}

/// Renders outputs as JSONL, one [`OutputRecord`] per line (each line ends with `\n`).
pub fn outputs_jsonl(outputs: &[OutputRecord]) -> String {
    let mut text = String::new();
    for output in outputs {
        text.push_str(&serde_json::to_string(output).expect("output records always serialize"));
        text.push('\n');
    }
    text
}

/// A header plus every input, in the order the machine took them.
#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    /// Which machine.
    pub header: JournalHeader,
    /// Its inputs.
    pub entries: Vec<JournalEntry>,
}

impl Journal {
    /// An empty journal for `machine` created at `start`.
    pub fn new(machine: MachineSpec, start: Timestamp) -> Self {
        Journal { header: JournalHeader { format: JOURNAL_FORMAT, start, machine }, entries: Vec::new() }
    }

    /// JSONL: the header line, then one line per entry; every line ends with `\n`.
    pub fn to_jsonl(&self) -> String {
        let mut text = serde_json::to_string(&self.header).expect("headers always serialize");
        text.push('\n');
        for entry in &self.entries {
            text.push_str(&serde_json::to_string(entry).expect("entries always serialize"));
            text.push('\n');
        }
        text
    }

    /// Parses [`Journal::to_jsonl`] output. Blank lines are ignored.
    pub fn from_jsonl(text: &str) -> Result<Journal, JournalError> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().ok_or(JournalError::Empty)?;
        let header: JournalHeader =
            serde_json::from_str(first).map_err(|e| JournalError::BadLine { line: 1, message: e.to_string() })?;
        if header.format != JOURNAL_FORMAT {
            return Err(JournalError::Format { found: header.format });
        }
        let entries = lines
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| JournalError::BadLine { line: i + 1, message: e.to_string() })
            })
            .collect::<Result<_, _>>()?;
        Ok(Journal { header, entries })
    }
}

/// A machine whose inputs can be journaled: the common `handle` / `poll` / `poll_timeout` shape
/// of the three core machines, plus conversion of its input to and from [`InputRecord`].
pub trait Machine {
    /// The machine's input type.
    type Input;
    /// `aggregate`, `projection` or `process_manager`.
    const KIND: &'static str;
    /// Feeds one input.
    fn handle(&mut self, now: Timestamp, input: Self::Input);
    /// Next output, if any.
    fn poll(&mut self) -> Option<Output>;
    /// Next deadline.
    fn poll_timeout(&self) -> Option<(Timestamp, &'static str)>;
    /// The input as data.
    fn record(input: &Self::Input) -> InputRecord;
    /// The input back from data; `None` when it does not apply to this machine kind.
    fn unrecord(record: &InputRecord) -> Option<Self::Input>;
}

impl Machine for AggregateMachine {
    type Input = AggregateInput;
    const KIND: &'static str = "aggregate";

    fn handle(&mut self, now: Timestamp, input: AggregateInput) {
        AggregateMachine::handle(self, now, input)
    }
    fn poll(&mut self) -> Option<Output> {
        AggregateMachine::poll(self)
    }
    fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        AggregateMachine::poll_timeout(self)
    }
    fn record(input: &AggregateInput) -> InputRecord {
        match input {
            AggregateInput::Command { id, command, context, expected, ids } => InputRecord::Command {
                id: id.0,
                command: command.clone(),
                context: context.clone(),
                expected: *expected,
                ids: ids.0,
            },
            AggregateInput::Query { id } => InputRecord::Query { id: id.0 },
            AggregateInput::Completed { io, result } => InputRecord::Completed { io: io.0, result: result.clone() },
            AggregateInput::Timeout => InputRecord::Timeout,
        }
    }
    fn unrecord(record: &InputRecord) -> Option<AggregateInput> {
        Some(match record.clone() {
            InputRecord::Command { id, command, context, expected, ids } => {
                AggregateInput::Command { id: CommandId(id), command, context, expected, ids: IdSeed(ids) }
            }
            InputRecord::Query { id } => AggregateInput::Query { id: CommandId(id) },
            InputRecord::Completed { io, result } => AggregateInput::Completed { io: IoId(io), result: result.clone() },
            InputRecord::Timeout => AggregateInput::Timeout,
            InputRecord::Wake | InputRecord::Rebuild | InputRecord::Flush => return None,
        })
    }
}

fn record_reader(input: &ReaderInput) -> InputRecord {
    match input {
        ReaderInput::Wake => InputRecord::Wake,
        ReaderInput::Rebuild => InputRecord::Rebuild,
        ReaderInput::Completed { io, result } => InputRecord::Completed { io: io.0, result: result.clone() },
        ReaderInput::Timeout => InputRecord::Timeout,
        ReaderInput::Flush => InputRecord::Flush,
    }
}

fn unrecord_reader(record: &InputRecord) -> Option<ReaderInput> {
    Some(match record.clone() {
        InputRecord::Wake => ReaderInput::Wake,
        InputRecord::Rebuild => ReaderInput::Rebuild,
        InputRecord::Completed { io, result } => ReaderInput::Completed { io: IoId(io), result: result.clone() },
        InputRecord::Timeout => ReaderInput::Timeout,
        InputRecord::Flush => ReaderInput::Flush,
        InputRecord::Command { .. } | InputRecord::Query { .. } => return None,
    })
}

impl Machine for ProjectionMachine {
    type Input = ReaderInput;
    const KIND: &'static str = "projection";

    fn handle(&mut self, now: Timestamp, input: ReaderInput) {
        ProjectionMachine::handle(self, now, input)
    }
    fn poll(&mut self) -> Option<Output> {
        ProjectionMachine::poll(self)
    }
    fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        ProjectionMachine::poll_timeout(self)
    }
    fn record(input: &ReaderInput) -> InputRecord {
        record_reader(input)
    }
    fn unrecord(record: &InputRecord) -> Option<ReaderInput> {
        unrecord_reader(record)
    }
}

impl Machine for ProcessManagerMachine {
    type Input = ReaderInput;
    const KIND: &'static str = "process_manager";

    fn handle(&mut self, now: Timestamp, input: ReaderInput) {
        ProcessManagerMachine::handle(self, now, input)
    }
    fn poll(&mut self) -> Option<Output> {
        ProcessManagerMachine::poll(self)
    }
    fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        ProcessManagerMachine::poll_timeout(self)
    }
    fn record(input: &ReaderInput) -> InputRecord {
        record_reader(input)
    }
    fn unrecord(record: &InputRecord) -> Option<ReaderInput> {
        unrecord_reader(record)
    }
}

/// A machine that journals every input it takes and every output it gives. Drive it exactly
/// like the machine inside (`handle`, drain `poll`, `poll_timeout`).
pub struct Journaled<M: Machine> {
    machine: M,
    journal: Journal,
    outputs: Vec<OutputRecord>,
}

impl Journaled<AggregateMachine> {
    /// A journaled [`AggregateMachine::new`].
    pub fn aggregate(
        stream: StreamId,
        aggregate: Box<dyn DynAggregate>,
        config: AggregateConfig,
        now: Timestamp,
    ) -> Self {
        let spec = MachineSpec::Aggregate { stream: stream.clone(), config: (&config).into() };
        Journaled::wrap(AggregateMachine::new(stream, aggregate, config, now), Journal::new(spec, now))
    }
}

impl Journaled<ProjectionMachine> {
    /// A journaled [`ProjectionMachine::new`].
    pub fn projection(projection: Box<dyn DynProjection>, config: ReaderConfig, now: Timestamp) -> Self {
        let spec = MachineSpec::Projection { name: projection.name().to_owned(), config: (&config).into() };
        Journaled::wrap(ProjectionMachine::new(projection, config, now), Journal::new(spec, now))
    }
}

impl Journaled<ProcessManagerMachine> {
    /// A journaled [`ProcessManagerMachine::new`].
    pub fn process_manager(manager: Box<dyn DynProcessManager>, config: ReaderConfig, now: Timestamp) -> Self {
        let spec = MachineSpec::ProcessManager { name: manager.name().to_owned(), config: (&config).into() };
        Journaled::wrap(ProcessManagerMachine::new(manager, config, now), Journal::new(spec, now))
    }
}

impl<M: Machine> Journaled<M> {
    fn wrap(machine: M, journal: Journal) -> Self {
        Journaled { machine, journal, outputs: Vec::new() }
    }

    /// Records the input, then feeds it to the machine.
    pub fn handle(&mut self, now: Timestamp, input: M::Input) {
        self.journal.entries.push(JournalEntry { now, input: M::record(&input) });
        self.machine.handle(now, input);
    }

    /// The machine's next output, recorded.
    pub fn poll(&mut self) -> Option<Output> {
        let output = self.machine.poll()?;
        self.outputs.push((&output).into());
        Some(output)
    }

    /// The machine's next deadline.
    pub fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        self.machine.poll_timeout()
    }

    /// The machine itself (for read-only accessors such as `version` or `is_poisoned`).
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, mutably, for accessors that need it (e.g. `ProjectionMachine::state`).
    /// Inputs fed through this reference bypass the journal.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// Every input so far.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Every output so far, in order.
    pub fn outputs(&self) -> &[OutputRecord] {
        &self.outputs
    }

    /// Stops recording: the journal, the outputs, and the machine to keep driving unrecorded.
    pub fn into_parts(self) -> (Journal, Vec<OutputRecord>, M) {
        (self.journal, self.outputs, self.machine)
    }
}

/// Per-kind counts of a journal's inputs (for summaries).
pub fn input_counts(journal: &Journal) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for entry in &journal.entries {
        *counts.entry(entry.input.kind()).or_insert(0) += 1;
    }
    counts
}
