//! One task per projection or process manager: it owns the core reader machine, fulfils its IO
//! (reads from the read pool, checkpoints on the primary, dispatches through the store), and
//! wakes it on local commits, NOTIFY hints, and a polling timer.

use std::sync::Weak;
use std::time::Duration;

use evfold_core::{
    is_too_deep, CommandEnvelope, CommandError, ExpectedVersion, Fault, IdSeed, Io, IoError, IoErrorKind, IoResult,
    Notification, Output, ProcessManagerMachine, ProjectionMachine, ReaderInput, Timestamp,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::shared::Shared;
use crate::store::Inner;

/// A request to a reader task.
pub enum ReaderMsg {
    /// New events may exist.
    Wake,
    /// Refold from the start (projections only).
    Rebuild,
    /// The folded state.
    State(oneshot::Sender<Result<Value, Fault>>),
    /// Answer once the reader is caught up with what was visible after this request.
    CatchUp(oneshot::Sender<Result<(), String>>),
}

/// Either reader machine of the core.
pub enum Machine {
    /// A projection.
    Projection(ProjectionMachine),
    /// A process manager.
    Manager(ProcessManagerMachine),
}

impl Machine {
    /// Reader name.
    pub fn name(&self) -> &str {
        match self {
            Machine::Projection(m) => m.name(),
            Machine::Manager(m) => m.name(),
        }
    }

    fn handle(&mut self, now: Timestamp, input: ReaderInput) {
        match self {
            Machine::Projection(m) => m.handle(now, input),
            Machine::Manager(m) => m.handle(now, input),
        }
    }

    fn poll(&mut self) -> Option<Output> {
        match self {
            Machine::Projection(m) => m.poll(),
            Machine::Manager(m) => m.poll(),
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match self {
            Machine::Projection(m) => m.poll_timeout().map(|(t, _)| t),
            Machine::Manager(m) => m.poll_timeout().map(|(t, _)| t),
        }
    }

    fn state(&mut self) -> Result<Value, Fault> {
        match self {
            Machine::Projection(m) => m.state(),
            Machine::Manager(m) => m.state(),
        }
    }

    fn is_failed(&self) -> bool {
        match self {
            Machine::Projection(m) => m.is_failed(),
            Machine::Manager(m) => m.is_failed(),
        }
    }
}

/// The reader task.
pub struct ReaderTask {
    /// The machine.
    pub machine: Machine,
    /// Backend, clock, counters.
    pub shared: std::sync::Arc<Shared>,
    /// The store, for dispatching process-manager commands (weak: the task must not keep it alive).
    pub store: Weak<Inner>,
    /// Fallback polling period.
    pub poll_interval: Duration,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    failure: Option<String>,
    leader: Option<Leader>,
}

/// A process manager runs on one store instance at a time: the one holding a session advisory
/// lock on a connection taken out of the pool (closing it, e.g. when the store is dropped or
/// the process dies, releases the lock and another instance takes over).
pub struct Leader {
    key: i64,
    held: Option<deadpool_postgres::ClientWrapper>,
}

impl Leader {
    /// A lock for the reader `name`, not yet held.
    pub fn new(name: &str) -> Self {
        // FNV-1a: stable across processes and builds (std's hashers are not).
        let key = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Leader { key: key as i64, held: None }
    }

    /// Whether this instance leads, trying to take the lock if it does not.
    async fn lead(&mut self, shared: &Shared) -> bool {
        if self.held.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        self.held = None;
        let Ok(client) = shared.backend.write.get().await else { return false };
        let client = deadpool_postgres::Object::take(client);
        match client.query_one("SELECT pg_try_advisory_lock($1)", &[&self.key]).await {
            Ok(row) if row.get::<_, bool>(0) => {
                self.held = Some(client);
                true
            }
            _ => false,
        }
    }
}

impl ReaderTask {
    /// A task around `machine`.
    pub fn new(machine: Machine, shared: std::sync::Arc<Shared>, store: Weak<Inner>, poll_interval: Duration) -> Self {
        let leader = matches!(machine, Machine::Manager(_)).then(|| Leader::new(machine.name()));
        ReaderTask { machine, shared, store, poll_interval, waiters: Vec::new(), failure: None, leader }
    }

    /// Runs until the store is dropped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ReaderMsg>) {
        loop {
            if self.store.strong_count() == 0 {
                return; // the store was dropped
            }
            if !self.leading().await {
                // Another instance runs this process manager: stay passive, answer queries.
                tokio::select! {
                    msg = rx.recv() => match msg {
                        None => return,
                        Some(ReaderMsg::CatchUp(tx)) => drop(tx.send(Ok(()))),
                        Some(ReaderMsg::State(tx)) => drop(tx.send(self.machine.state())),
                        Some(ReaderMsg::Wake | ReaderMsg::Rebuild) => {}
                    },
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
                continue;
            }
            self.drive().await;
            let sleep = self.sleep_duration();
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => return,
                    Some(msg) => self.on_message(msg),
                },
                () = tokio::time::sleep(sleep) => {
                    let now = self.shared.now();
                    let input = match self.machine.poll_timeout() {
                        Some(at) if at <= now => ReaderInput::Timeout,
                        _ => ReaderInput::Wake,
                    };
                    self.machine.handle(now, input);
                }
            }
        }
    }

    async fn leading(&mut self) -> bool {
        match &mut self.leader {
            None => true,
            Some(leader) => leader.lead(&self.shared).await,
        }
    }

    fn sleep_duration(&self) -> Duration {
        let Some(at) = self.machine.poll_timeout() else { return self.poll_interval };
        let now = self.shared.now();
        Duration::from_millis(at.0.saturating_sub(now.0)).min(self.poll_interval)
    }

    fn on_message(&mut self, msg: ReaderMsg) {
        let now = self.shared.now();
        match msg {
            ReaderMsg::Wake => self.machine.handle(now, ReaderInput::Wake),
            ReaderMsg::Rebuild => self.machine.handle(now, ReaderInput::Rebuild),
            ReaderMsg::State(tx) => {
                let _ = tx.send(self.machine.state());
            }
            ReaderMsg::CatchUp(tx) => {
                if self.machine.is_failed() {
                    let why = self.failure.clone().unwrap_or_default();
                    let _ = tx.send(Err(format!("reader {} has failed: {why}", self.machine.name())));
                } else {
                    self.waiters.push(tx);
                    self.machine.handle(now, ReaderInput::Wake);
                }
            }
        }
    }

    async fn drive(&mut self) {
        while let Some(output) = self.machine.poll() {
            match output {
                Output::Io { io, request } => {
                    let result = fulfil(self.shared.clone(), self.store.clone(), request).await;
                    let now = self.shared.now();
                    self.machine.handle(now, ReaderInput::Completed { io, result });
                }
                Output::Notify(Notification::CaughtUp { .. }) => {
                    self.waiters.drain(..).for_each(|tx| drop(tx.send(Ok(()))));
                }
                Output::Notify(Notification::Poisoned { what, reason }) => {
                    // Fatal (gap, fault) or transient (retried with backoff): either way a caller
                    // waiting for catch-up learns of it now instead of waiting out the retries.
                    tracing::warn!(%what, %reason, "reader failed");
                    if self.machine.is_failed() {
                        self.failure = Some(reason.clone());
                    }
                    self.waiters.drain(..).for_each(|tx| drop(tx.send(Err(reason.clone()))));
                }
                Output::Notify(n) => tracing::trace!(?n, "reader"),
                Output::Reply { .. } | Output::State { .. } => {}
            }
        }
    }
}

async fn fulfil(shared: std::sync::Arc<Shared>, store: Weak<Inner>, request: Io) -> IoResult {
    match request {
        Io::Dispatch { dispatch_id, command } => dispatch(&shared, store, &dispatch_id, command).await,
        other => shared.backend.fulfil(other).await,
    }
}

/// Delivers one process-manager command. Its event ids derive from the dispatch id, so a
/// re-delivery (after a crash or a leader change, before the checkpoint moved) finds its first
/// event already stored and is acknowledged without running the command again. A command (or
/// metadata) nested too deep is refused for good, as a rejection (dead-lettered, not retried),
/// as the native driver does; it is taken apart without recursion.
async fn dispatch(shared: &Shared, store: Weak<Inner>, dispatch_id: &str, command: CommandEnvelope) -> IoResult {
    let Some(store) = store.upgrade() else {
        return IoResult::Failed(IoError::new(IoErrorKind::Unavailable, "store is shut down"));
    };
    let seed = seed_for(dispatch_id);
    match shared.backend.event_exists(&seed.event_id(0)).await {
        Ok(true) => return IoResult::Done,
        Ok(false) => {}
        Err(e) => return IoResult::Failed(IoError::new(IoErrorKind::Unavailable, e.to_string())),
    }
    let CommandEnvelope { target, command, context } = command;
    match Inner::execute_command(&store, &target, command, context, ExpectedVersion::Any, Some(seed)).await {
        Ok(_) => IoResult::Done,
        Err(CommandError::Rejected(r)) => IoResult::Failed(IoError::new(IoErrorKind::Rejected, r.message)),
        Err(CommandError::Fault(f)) if is_too_deep(&f) => {
            IoResult::Failed(IoError::new(IoErrorKind::Rejected, f.to_string()))
        }
        Err(e) => IoResult::Failed(IoError::new(IoErrorKind::Unavailable, e.to_string())),
    }
}

/// Stable event-id entropy for a dispatch id (FNV-1a, the same in every process and build); the
/// low 16 bits stay free for the event index.
pub fn seed_for(dispatch_id: &str) -> IdSeed {
    let fnv = |salt: u8| {
        std::iter::once(salt)
            .chain(dispatch_id.bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
    };
    IdSeed(((u128::from(fnv(1)) << 64) | u128::from(fnv(2))) & !0xffff)
}
