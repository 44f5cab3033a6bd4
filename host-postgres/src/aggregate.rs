//! One actor task per live aggregate instance: it owns the core `AggregateMachine`, feeds it
//! commands, fulfils its IO with SQL and routes replies. Commands that arrive while a write is in
//! flight are queued in the machine, which group-commits them in the next append.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evfold_core::{
    AggregateConfig, AggregateFactory, AggregateInput, AggregateMachine, CommandContext, CommandError, CommandId,
    Committed, ExpectedVersion, IdSeed, Io, IoErrorKind, IoResult, Notification, Output, Payload, StreamId,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::shared::Shared;

/// A request to one aggregate actor.
// Nearly every message is a command; boxing its context to shrink the rare query would cost an
// allocation per command.
#[allow(clippy::large_enum_variant)]
pub enum AggMsg {
    /// Execute a command.
    Command {
        /// Type name + JSON data.
        command: Payload,
        /// Copied onto the events.
        context: CommandContext,
        /// Optimistic concurrency check.
        expected: ExpectedVersion,
        /// Event-id entropy chosen by the caller (stable for re-dispatched commands); `None` = fresh.
        ids: Option<IdSeed>,
        /// Where the result goes.
        reply: oneshot::Sender<Result<Committed, CommandError>>,
    },
    /// Read version and state.
    Query {
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(u64, Value), CommandError>>,
    },
}

enum Waiter {
    Command(oneshot::Sender<Result<Committed, CommandError>>),
    Query(oneshot::Sender<Result<(u64, Value), CommandError>>),
}

/// The actor's state between messages.
pub struct Actor {
    stream: StreamId,
    factory: Arc<dyn AggregateFactory>,
    config: AggregateConfig,
    shared: Arc<Shared>,
    machine: Option<AggregateMachine>,
    waiters: HashMap<CommandId, Waiter>,
    next_id: u64,
    idle: bool,
}

/// The live actors of one store, by stream.
pub type Registry = Mutex<HashMap<StreamId, mpsc::UnboundedSender<AggMsg>>>;

/// Leaves the registry if nothing is queued. Senders only send while holding the registry lock,
/// so once the entry is gone under the lock, no message can be lost.
fn evict(registry: &Registry, stream: &StreamId, rx: &mpsc::UnboundedReceiver<AggMsg>) -> bool {
    let mut actors = registry.lock().unwrap_or_else(|e| e.into_inner());
    if !rx.is_empty() {
        return false;
    }
    actors.remove(stream);
    true
}

impl Actor {
    /// An actor for `stream`; its machine is built (and loads) on the first message.
    pub fn new(
        stream: StreamId,
        factory: Arc<dyn AggregateFactory>,
        config: AggregateConfig,
        shared: Arc<Shared>,
    ) -> Self {
        Actor { stream, factory, config, shared, machine: None, waiters: HashMap::new(), next_id: 0, idle: false }
    }

    /// Serves messages until every sender is gone, or until the machine reports it idle (then
    /// it leaves the registry; the next command for the stream starts a fresh actor).
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<AggMsg>, registry: Arc<Registry>) {
        loop {
            let msg = match self.idle_wait() {
                None => rx.recv().await,
                Some(wait) => match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(msg) => msg,
                    Err(_) => {
                        self.on_timeout(&mut rx).await;
                        if self.idle && evict(&registry, &self.stream, &rx) {
                            return;
                        }
                        continue;
                    }
                },
            };
            let Some(msg) = msg else { return };
            if matches!(msg, AggMsg::Query { .. }) {
                self.refresh().await;
            }
            self.feed(msg);
            self.drive(&mut rx).await;
            if self.machine.as_ref().is_some_and(AggregateMachine::is_poisoned) {
                // Rebuilt from durable state on the next message.
                self.machine = None;
            }
        }
    }

    /// How long until the machine wants its idle check, if it does.
    fn idle_wait(&self) -> Option<Duration> {
        let (at, _) = self.machine.as_ref()?.poll_timeout()?;
        Some(Duration::from_millis(at.0.saturating_sub(self.shared.now().0)))
    }

    async fn on_timeout(&mut self, rx: &mut mpsc::UnboundedReceiver<AggMsg>) {
        let now = self.shared.now();
        if let Some(machine) = self.machine.as_mut() {
            machine.handle(now, AggregateInput::Timeout);
        }
        self.drive(rx).await;
    }

    /// Another store instance may have appended since this machine loaded: a state query must
    /// not answer from a stale fold, so a machine behind the stored version is rebuilt.
    async fn refresh(&mut self) {
        let Some(loaded) = self.machine.as_ref().map(AggregateMachine::version) else { return };
        if let Ok(stored) = self.shared.backend.stream_version(&self.stream).await {
            if stored != loaded {
                self.machine = None;
            }
        }
    }

    fn feed(&mut self, msg: AggMsg) {
        self.idle = false;
        if self.machine.is_none() {
            match self.factory.instantiate() {
                Ok(aggregate) => {
                    let m =
                        AggregateMachine::new(self.stream.clone(), aggregate, self.config.clone(), self.shared.now());
                    self.machine = Some(m);
                }
                Err(fault) => return fail(msg, CommandError::Fault(fault)),
            }
        }
        self.next_id += 1;
        let id = CommandId(self.next_id);
        let input = match msg {
            AggMsg::Command { command, context, expected, ids, reply } => {
                self.waiters.insert(id, Waiter::Command(reply));
                let ids = ids.unwrap_or_else(|| self.shared.fresh_seed());
                AggregateInput::Command { id, command, context, expected, ids }
            }
            AggMsg::Query { reply } => {
                self.waiters.insert(id, Waiter::Query(reply));
                AggregateInput::Query { id }
            }
        };
        let now = self.shared.now();
        self.machine.as_mut().expect("built above").handle(now, input);
    }

    /// Runs the machine until it has nothing more to say, fulfilling its IO one request at a time.
    async fn drive(&mut self, rx: &mut mpsc::UnboundedReceiver<AggMsg>) {
        loop {
            let Some(machine) = self.machine.as_mut() else { return };
            let Some(output) = machine.poll() else { return };
            match output {
                Output::Io { io, request } => {
                    // Queue what arrived meanwhile: the machine decides it into the next batch.
                    while !self.machine.as_ref().is_some_and(AggregateMachine::is_poisoned) {
                        let Ok(msg) = rx.try_recv() else { break };
                        self.feed(msg);
                    }
                    let result = fulfil(self.shared.clone(), request).await;
                    let now = self.shared.now();
                    if let Some(machine) = self.machine.as_mut() {
                        machine.handle(now, AggregateInput::Completed { io, result });
                    }
                }
                Output::Reply { id, result } => {
                    if let Some(Waiter::Command(tx)) = self.waiters.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Output::State { id, result } => {
                    if let Some(Waiter::Query(tx)) = self.waiters.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Output::Notify(Notification::Poisoned { what, reason }) => {
                    tracing::warn!(%what, %reason, "aggregate poisoned; it reloads on the next command")
                }
                Output::Notify(Notification::Idle { .. }) => self.idle = true,
                Output::Notify(n) => tracing::trace!(?n, "aggregate"),
            }
        }
    }
}

async fn fulfil(shared: Arc<Shared>, request: Io) -> IoResult {
    let appending = match &request {
        Io::Append { events, .. } => Some(events.len() as u64),
        _ => None,
    };
    let result = shared.backend.fulfil(request).await;
    if let Some(n) = appending {
        match &result {
            IoResult::Appended(_) => shared.committed(n),
            IoResult::Failed(e) if matches!(e.kind, IoErrorKind::Conflict { .. }) => shared.conflicted(),
            _ => {}
        }
    }
    result
}

fn fail(msg: AggMsg, error: CommandError) {
    match msg {
        AggMsg::Command { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        AggMsg::Query { reply } => {
            let _ = reply.send(Err(error));
        }
    }
}
