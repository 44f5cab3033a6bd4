//! The invariants checked after every crash and after the load test, on a reopened store:
//! every acknowledged command's event is present exactly once (right stream, seq and pos), no
//! tag or event id appears twice, every stream verifies clean, every transfer was deposited
//! exactly once, and the live projection equals a rebuild equals a fresh fold of `read_all`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use evfold_core::examples::{Balances, BankAccount, Transfers};
use evfold_core::{Aggregate, ProcessManager, Projection, StoredEvent};
use evfold_native::{verify_store, AggregateStore, StreamStatus, VerifyReport};

use crate::ack::Ack;
use crate::error::ReliabilityError;
use crate::workload::{builder, TAG_KEY};

/// What one check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Acknowledged commands checked.
    pub acknowledged: u64,
    /// Of those, found exactly once at their acknowledged stream, version and position.
    pub found: u64,
    /// Acknowledged but absent.
    pub lost: u64,
    /// Tags (acknowledged or not) stored more than once.
    pub duplicated: u64,
    /// Streams in the store.
    pub streams: usize,
    /// Events in the store.
    pub events: u64,
    /// Streams whose log had a torn tail before the reopen repaired it.
    pub torn_tails: usize,
    /// `TransferredOut` events.
    pub transfers: u64,
    /// Transfers the process manager deposited more than once (at-least-once delivery without
    /// deduplication). Must be 0.
    pub transfers_deposited_twice: u64,
    /// Transfers never deposited after the process manager caught up. Must be 0.
    pub transfers_not_deposited: u64,
    /// Event ids stored more than once. Must be 0.
    pub duplicate_event_ids: u64,
}

impl CheckReport {
    /// The figure the issue asks for.
    pub fn summary(&self) -> String {
        format!(
            "{} acknowledged, {} found, {} lost, {} duplicated",
            self.acknowledged, self.found, self.lost, self.duplicated
        )
    }

    /// Every broken invariant this report counts, empty when all hold.
    pub fn violations(&self) -> Vec<String> {
        let counts = [
            (self.lost, "acknowledged commands lost"),
            (self.duplicated, "command tags stored more than once"),
            (self.duplicate_event_ids, "event ids stored more than once"),
            (self.transfers_deposited_twice, "transfers deposited more than once"),
            (self.transfers_not_deposited, "transfers never deposited"),
        ];
        counts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect()
    }
}

fn broken(message: impl Into<String>) -> ReliabilityError {
    ReliabilityError::Invariant(message.into())
}

/// Reopens the store at `dir` (running recovery), checks every invariant against `acks`, lets
/// the process manager catch up, and closes the store again.
pub async fn check_store(dir: &Path, acks: &[Ack]) -> Result<CheckReport, ReliabilityError> {
    let before = verify_store(dir)?;
    let torn_tails = count_torn(&before)?;
    let store = builder(dir).open().await?;
    let result = check_open_store(dir, &store, acks).await;
    store.close().await;
    let mut report = result?;
    report.torn_tails = torn_tails;
    Ok(report)
}

/// Torn tails are expected after a kill; anything else is not.
fn count_torn(report: &VerifyReport) -> Result<usize, ReliabilityError> {
    if let Some((pos, a, b)) = report.duplicate_positions.first() {
        return Err(broken(format!("pos {pos} is in both {a} and {b}")));
    }
    let mut torn = 0;
    for stream in &report.streams {
        match &stream.status {
            StreamStatus::Clean => {}
            StreamStatus::TornTail { .. } => torn += 1,
            StreamStatus::Corrupt { line, offset, reason } => {
                return Err(broken(format!("{} corrupt at line {line} (offset {offset}): {reason}", stream.stream)))
            }
        }
    }
    Ok(torn)
}

/// The checks on an open store (used by the kill test after reopening and by the load test).
pub async fn check_open_store(
    dir: &Path,
    store: &AggregateStore,
    acks: &[Ack],
) -> Result<CheckReport, ReliabilityError> {
    store.run_process_managers().await?;
    let after = verify_store(dir)?;
    if !after.is_clean() {
        return Err(broken(format!("store not clean after reopen: {after:?}")));
    }
    let events = store.read_all(1).await?;
    if events.len() as u64 != after.events() {
        return Err(broken(format!("read_all returned {} events, the logs hold {}", events.len(), after.events())));
    }
    let duplicate_event_ids = check_order_and_ids(&events)?;
    let mut report = check_acks(&events, acks)?;
    report.duplicate_event_ids = duplicate_event_ids;
    report.streams = after.streams.len();
    report.events = events.len() as u64;
    check_transfers(store, &events, &mut report).await?;
    check_projection(store, &events).await?;
    Ok(report)
}

/// Positions strictly increase (hard error otherwise); returns how many event ids repeat.
fn check_order_and_ids(events: &[StoredEvent]) -> Result<u64, ReliabilityError> {
    let mut ids = HashSet::new();
    let mut repeated = 0;
    let mut last_pos = 0;
    for event in events {
        if event.record.pos <= last_pos {
            return Err(broken(format!("read_all order: pos {} after {last_pos}", event.record.pos)));
        }
        last_pos = event.record.pos;
        if !ids.insert(&event.record.id) {
            repeated += 1;
        }
    }
    Ok(repeated)
}

fn tag_of(event: &StoredEvent) -> Option<&str> {
    event.record.meta.extra.get(TAG_KEY).and_then(|v| v.as_str())
}

fn check_acks(events: &[StoredEvent], acks: &[Ack]) -> Result<CheckReport, ReliabilityError> {
    let mut by_tag: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    for event in events {
        if let Some(tag) = tag_of(event) {
            by_tag.entry(tag).or_default().push(event);
        }
    }
    let mut report = CheckReport {
        acknowledged: acks.len() as u64,
        duplicated: by_tag.values().filter(|v| v.len() > 1).count() as u64,
        ..CheckReport::default()
    };
    for ack in acks {
        match by_tag.get(ack.tag.as_str()).map(Vec::as_slice) {
            None | Some([]) => report.lost += 1,
            Some([event]) => {
                check_placement(ack, event)?;
                report.found += 1;
            }
            Some(_) => {}
        }
    }
    Ok(report)
}

fn check_placement(ack: &Ack, event: &StoredEvent) -> Result<(), ReliabilityError> {
    let stream = &event.stream;
    let same = stream.aggregate_type() == ack.aggregate_type
        && stream.instance_id() == ack.instance_id
        && event.record.seq == ack.version
        && ack.positions == [event.record.pos];
    if same {
        Ok(())
    } else {
        Err(broken(format!("ack {ack} found as {stream} seq {} pos {}", event.record.seq, event.record.pos)))
    }
}

/// Every `TransferredOut` must have exactly one deposit caused by it (counted into `report`),
/// and nothing may be dead-lettered.
async fn check_transfers(
    store: &AggregateStore,
    events: &[StoredEvent],
    report: &mut CheckReport,
) -> Result<(), ReliabilityError> {
    let mut caused: HashMap<&str, u64> = HashMap::new();
    for event in events.iter().filter(|e| e.record.event_type == "Deposited") {
        if let Some(cause) = event.record.meta.causation_id.as_deref() {
            *caused.entry(cause).or_default() += 1;
        }
    }
    let transfers: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.stream.aggregate_type() == BankAccount::AGGREGATE_TYPE && e.record.event_type == "TransferredOut")
        .collect();
    for transfer in &transfers {
        match caused.get(transfer.record.id.0.as_str()).copied().unwrap_or(0) {
            0 => report.transfers_not_deposited += 1,
            1 => {}
            _ => report.transfers_deposited_twice += 1,
        }
    }
    report.transfers = transfers.len() as u64;
    let letters = store.dead_letters(Transfers::NAME).await?;
    if !letters.is_empty() {
        return Err(broken(format!("{} dead letters, first: {:?}", letters.len(), letters[0])));
    }
    Ok(())
}

/// Live projection (resumed from its checkpoint) == rebuild == fresh fold; and every account's
/// aggregate state agrees with it.
async fn check_projection(store: &AggregateStore, events: &[StoredEvent]) -> Result<(), ReliabilityError> {
    let live = store.projection::<Balances>().await?;
    let mut fresh = Balances::default();
    for event in events {
        fresh.apply(event);
    }
    if live != fresh {
        return Err(broken(format!("live projection {live:?} != fresh fold {fresh:?}")));
    }
    let rebuilt = store.rebuild_projection::<Balances>().await?;
    if rebuilt != fresh {
        return Err(broken(format!("rebuilt projection {rebuilt:?} != fresh fold {fresh:?}")));
    }
    check_account_states(store, &fresh.accounts).await
}

async fn check_account_states(
    store: &AggregateStore,
    balances: &BTreeMap<String, u64>,
) -> Result<(), ReliabilityError> {
    for (id, balance) in balances {
        let state = store.get::<BankAccount>(id).await?.state().await?;
        if state.balance != *balance {
            return Err(broken(format!("{id}: aggregate balance {} != projection {balance}", state.balance)));
        }
    }
    Ok(())
}

/// The process-manager crash window, reproduced deterministically in a new store at `dir`: a
/// transfer is deposited, the checkpoint covering it is lost (as in a crash before it was
/// saved), the store reopens and the manager re-dispatches. Returns how many deposits the one
/// transfer produced (1 is correct; 2 means re-dispatched commands are not deduplicated).
pub async fn redispatch_deposits(dir: &Path) -> Result<u64, ReliabilityError> {
    use evfold_core::examples::BankCommand;
    let store = builder(dir).open().await?;
    let ctx = evfold_core::CommandContext::default();
    for id in ["a-0", "a-1"] {
        let owner = id.to_owned();
        store.get::<BankAccount>(id).await?.execute(BankCommand::Open { owner }, ctx.clone()).await.map_err(exec)?;
    }
    let from = store.get::<BankAccount>("a-0").await?;
    from.execute(BankCommand::Deposit { amount: 100 }, ctx.clone()).await.map_err(exec)?;
    from.execute(BankCommand::TransferOut { to: "a-1".into(), amount: 40 }, ctx).await.map_err(exec)?;
    store.run_process_managers().await?;
    let checkpoint = store.layout().process_manager_dir(Transfers::NAME).join(evfold_native::CHECKPOINT_FILE);
    store.close().await;
    std::fs::remove_file(&checkpoint)?;
    let store = builder(dir).open().await?;
    store.run_process_managers().await?;
    let events = store.read_events(BankAccount::AGGREGATE_TYPE, "a-1").await;
    store.close().await;
    Ok(events?.iter().filter(|r| r.event_type == "Deposited").count() as u64)
}

fn exec<E: std::error::Error>(e: E) -> ReliabilityError {
    broken(format!("setup command failed: {e}"))
}
