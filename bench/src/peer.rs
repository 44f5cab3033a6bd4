//! The peer side: the same bank-account model on `eventfold-es` 0.2 (one OS thread per live
//! aggregate, two fdatasyncs per command), driven exactly like the evfold side.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use eventfold_es::{AggregateHandle, AggregateStore, CommandContext};
use evfold_core::examples::{BankAccount, BankCommand, BankError, BankEvent};
use serde::{Deserialize, Serialize};

use crate::util::{rss_bytes, secs};

/// The core's `BankAccount`, wrapped so it can implement the peer's `Aggregate` trait.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerBank(pub BankAccount);

impl eventfold_es::Aggregate for PeerBank {
    const AGGREGATE_TYPE: &'static str = "bank-account";
    type Command = BankCommand;
    type DomainEvent = BankEvent;
    type Error = BankError;

    fn handle(&self, command: BankCommand) -> Result<Vec<BankEvent>, BankError> {
        evfold_core::Aggregate::handle(&self.0, command)
    }

    fn apply(self, event: &BankEvent) -> Self {
        PeerBank(evfold_core::Aggregate::apply(self.0, event))
    }
}

/// The core's `Balances` read model, written against the peer's `Projection` trait.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerBalances {
    /// Balance per account id.
    pub accounts: BTreeMap<String, u64>,
    /// Sum of all balances.
    pub total: u64,
    /// Events folded.
    pub events: u64,
}

impl eventfold_es::Projection for PeerBalances {
    const NAME: &'static str = "balances";

    fn subscriptions(&self) -> &'static [&'static str] {
        &["bank-account"]
    }

    fn apply(&mut self, _aggregate_type: &str, stream_id: &str, event: &eventfold::Event) {
        let tagged = serde_json::json!({ "type": event.event_type, "data": event.data });
        let Ok(bank_event) = serde_json::from_value::<BankEvent>(tagged) else { return };
        let balance = self.accounts.entry(stream_id.to_owned()).or_default();
        match bank_event {
            BankEvent::Opened { .. } => {}
            BankEvent::Deposited { amount } => {
                *balance += amount;
                self.total += amount;
            }
            BankEvent::Withdrew { amount } | BankEvent::TransferredOut { amount, .. } => {
                *balance -= amount;
                self.total -= amount;
            }
        }
        self.events += 1;
    }
}

/// The context every benchmark command carries (same on both sides).
pub fn context() -> CommandContext {
    CommandContext::default().with_actor("teller-7").with_correlation_id("corr-00000001")
}

async fn open_account(store: &AggregateStore, id: &str) -> Result<AggregateHandle<PeerBank>> {
    let handle = store.get::<PeerBank>(id).await?;
    handle.execute(BankCommand::Open { owner: id.to_owned() }, context()).await?;
    Ok(handle)
}

async fn deposits(handle: AggregateHandle<PeerBank>, n: usize) -> Result<()> {
    for _ in 0..n {
        handle.execute(BankCommand::Deposit { amount: 1 }, context()).await?;
    }
    Ok(())
}

/// Durable commands/s: `n` deposits, one caller, one aggregate.
pub async fn sequential(dir: impl AsRef<Path>, n: usize) -> Result<f64> {
    let store = AggregateStore::open(dir.as_ref()).await?;
    let handle = open_account(&store, "acc-0").await?;
    let start = Instant::now();
    deposits(handle, n).await?;
    Ok(n as f64 / secs(start))
}

/// Durable commands/s: `callers` tasks share one aggregate, `n` deposits in total.
pub async fn concurrent_one(dir: impl AsRef<Path>, callers: usize, n: usize) -> Result<f64> {
    let store = AggregateStore::open(dir.as_ref()).await?;
    let handle = open_account(&store, "acc-0").await?;
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers).map(|_| tokio::spawn(deposits(handle.clone(), n / callers))).collect();
    for task in tasks {
        task.await??;
    }
    Ok((n / callers * callers) as f64 / secs(start))
}

/// Durable commands/s: `aggs` aggregates, one task each, `per` deposits each (opened first).
pub async fn concurrent_many(dir: impl AsRef<Path>, aggs: usize, per: usize) -> Result<f64> {
    let store = AggregateStore::open(dir.as_ref()).await?;
    let mut handles = Vec::with_capacity(aggs);
    for i in 0..aggs {
        handles.push(open_account(&store, &format!("acc-{i}")).await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = handles.into_iter().map(|h| tokio::spawn(deposits(h, per))).collect();
    for task in tasks {
        task.await??;
    }
    Ok((aggs * per) as f64 / secs(start))
}

/// Writes `events` events (one Opened, then deposits of 1) to `id` directly in the peer's exact
/// line format, as its own harness does: going through `execute` would fsync twice per event.
pub fn write_stream(dir: &Path, id: &str, events: usize) -> Result<()> {
    let layout = eventfold_es::StreamLayout::new(dir);
    let stream_dir = layout.ensure_stream(<PeerBank as eventfold_es::Aggregate>::AGGREGATE_TYPE, id)?;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(stream_dir.join("app.jsonl"))?;
    let mut out = std::io::BufWriter::new(file);
    let ctx = context();
    for i in 0..events {
        let event =
            if i == 0 { BankEvent::Opened { owner: id.to_owned() } } else { BankEvent::Deposited { amount: 1 } };
        let line = serde_json::to_string(&eventfold_es::to_eventfold_event::<PeerBank>(&event, &ctx)?)?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Child process: open the store and read the state of `acc-0`; ms from open to state.
pub async fn cold_load(dir: &Path, expected_balance: u64) -> Result<f64> {
    let start = Instant::now();
    let store = AggregateStore::open(dir).await?;
    let state = store.get::<PeerBank>("acc-0").await?.state().await?;
    let ms = secs(start) * 1e3;
    ensure!(state.0.balance == expected_balance, "peer cold load: balance {} != {expected_balance}", state.0.balance);
    Ok(ms)
}

/// Projection figures: (full catch-up ms, median incremental +1-event catch-up ms).
pub async fn projection(dir: &Path, streams: usize, per: usize, rounds: usize) -> Result<(f64, f64)> {
    let store = AggregateStore::builder(dir).projection::<PeerBalances>().open().await?;
    let start = Instant::now();
    let full: PeerBalances = store.projection()?;
    let full_ms = secs(start) * 1e3;
    ensure!(full.events == (streams * per) as u64, "peer projection saw {} events", full.events);
    let handle = store.get::<PeerBank>("acc-0").await?;
    let mut samples = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        handle.execute(BankCommand::Deposit { amount: 1 }, context()).await?;
        let start = Instant::now();
        let p: PeerBalances = store.projection()?;
        samples.push(secs(start) * 1e3);
        ensure!(p.events == (streams * per + round) as u64, "peer incremental catch-up missed the event");
    }
    Ok((full_ms, crate::median(&mut samples)))
}

/// Child process: RSS growth per live (loaded) aggregate for `n` of them (bytes, extra threads).
pub async fn memory(dir: &Path, n: usize) -> Result<(f64, u64)> {
    let before = rss_bytes()?;
    let threads_before = crate::util::thread_count()?;
    let store = AggregateStore::open(dir).await?;
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let handle = store.get::<PeerBank>(&format!("acc-{i}")).await.with_context(|| format!("account {i}"))?;
        handle.state().await?;
        handles.push(handle);
    }
    let after = rss_bytes()?;
    let threads = crate::util::thread_count()? - threads_before;
    Ok(((after.saturating_sub(before)) as f64 / n as f64, threads))
}
