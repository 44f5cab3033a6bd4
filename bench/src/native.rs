//! The evfold side: the core's bank-account model on `evfold-native` with its defaults
//! (durable: acknowledged after fdatasync, group commit), driven exactly like the peer.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use evfold_core::examples::{Balances, BankAccount, BankCommand};
use evfold_core::CommandContext;
use evfold_native::{AggregateHandle, AggregateStore, Durability};

use crate::util::{rss_bytes, secs};

/// The context every benchmark command carries (same on both sides).
pub fn context() -> CommandContext {
    CommandContext::default().with_actor("teller-7").with_correlation_id("corr-00000001")
}

/// A store with the default (durable) settings and the bank aggregate registered.
async fn open(dir: &Path) -> Result<AggregateStore> {
    Ok(AggregateStore::builder(dir).aggregate::<BankAccount>().open().await?)
}

async fn open_account(store: &AggregateStore, id: &str) -> Result<AggregateHandle<BankAccount>> {
    let handle = store.get::<BankAccount>(id).await?;
    handle.execute(BankCommand::Open { owner: id.to_owned() }, context()).await?;
    Ok(handle)
}

async fn deposits(handle: AggregateHandle<BankAccount>, n: usize) -> Result<()> {
    for _ in 0..n {
        handle.execute(BankCommand::Deposit { amount: 1 }, context()).await?;
    }
    Ok(())
}

/// Durable commands/s: `n` deposits, one caller, one aggregate.
pub async fn sequential(dir: impl AsRef<Path>, n: usize) -> Result<f64> {
    let store = open(dir.as_ref()).await?;
    let handle = open_account(&store, "acc-0").await?;
    let start = Instant::now();
    deposits(handle, n).await?;
    let rate = n as f64 / secs(start);
    store.close().await;
    Ok(rate)
}

/// Durable commands/s: `callers` tasks share one aggregate, `n` deposits in total.
pub async fn concurrent_one(dir: impl AsRef<Path>, callers: usize, n: usize) -> Result<f64> {
    let store = open(dir.as_ref()).await?;
    let handle = open_account(&store, "acc-0").await?;
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers).map(|_| tokio::spawn(deposits(handle.clone(), n / callers))).collect();
    for task in tasks {
        task.await??;
    }
    let rate = (n / callers * callers) as f64 / secs(start);
    store.close().await;
    Ok(rate)
}

/// Durable commands/s: `aggs` aggregates, one task each, `per` deposits each (opened first).
pub async fn concurrent_many(dir: impl AsRef<Path>, aggs: usize, per: usize) -> Result<f64> {
    let store = open(dir.as_ref()).await?;
    let mut handles = Vec::with_capacity(aggs);
    for i in 0..aggs {
        handles.push(open_account(&store, &format!("acc-{i}")).await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = handles.into_iter().map(|h| tokio::spawn(deposits(h, per))).collect();
    for task in tasks {
        task.await??;
    }
    let rate = (aggs * per) as f64 / secs(start);
    store.close().await;
    Ok(rate)
}

/// Writes `streams` accounts of `per` events each through the store (setup, not measured:
/// buffered durability and 16 callers per stream so group commit batches them; one fsync at close).
pub async fn write_streams(dir: &Path, streams: usize, per: usize) -> Result<()> {
    let store = AggregateStore::builder(dir).aggregate::<BankAccount>().durability(Durability::Buffered).open().await?;
    let mut tasks = Vec::new();
    for s in 0..streams {
        let handle = open_account(&store, &format!("acc-{s}")).await?;
        let callers = 16.min(per.saturating_sub(1)).max(1);
        let rest = per - 1;
        for c in 0..callers {
            let n = rest / callers + usize::from(c < rest % callers);
            tasks.push(tokio::spawn(deposits(handle.clone(), n)));
        }
    }
    for task in tasks {
        task.await??;
    }
    store.close().await;
    Ok(())
}

/// Child process: open the store and read the state of `acc-0`; (ms from open to state, ms of
/// the open alone, for the profile note).
pub async fn cold_load(dir: &Path, snapshot: bool, expected_balance: u64) -> Result<(f64, f64)> {
    let start = Instant::now();
    let every = if snapshot { Some(1000) } else { None };
    let store = AggregateStore::builder(dir).aggregate::<BankAccount>().snapshot_every(every).open().await?;
    let open_ms = secs(start) * 1e3;
    let state = store.get::<BankAccount>("acc-0").await?.state().await?;
    let ms = secs(start) * 1e3;
    ensure!(state.balance == expected_balance, "evfold cold load: balance {} != {expected_balance}", state.balance);
    Ok((ms, open_ms))
}

/// Projection figures: (full catch-up ms, median incremental +1-event catch-up ms).
pub async fn projection(dir: &Path, streams: usize, per: usize, rounds: usize) -> Result<(f64, f64)> {
    let start = Instant::now();
    let store = AggregateStore::builder(dir).aggregate::<BankAccount>().projection::<Balances>().open().await?;
    let full: Balances = store.projection().await?;
    let full_ms = secs(start) * 1e3;
    ensure!(full.events == (streams * per) as u64, "evfold projection saw {} events", full.events);
    let handle = store.get::<BankAccount>("acc-0").await?;
    let mut samples = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        handle.execute(BankCommand::Deposit { amount: 1 }, context()).await?;
        let start = Instant::now();
        let p: Balances = store.projection().await?;
        samples.push(secs(start) * 1e3);
        ensure!(p.events == (streams * per + round) as u64, "evfold incremental catch-up missed the event");
    }
    store.close().await;
    Ok((full_ms, crate::median(&mut samples)))
}

/// Child process: RSS growth per live (loaded) aggregate for `n` of them (bytes, extra threads).
pub async fn memory(dir: &Path, n: usize) -> Result<(f64, u64)> {
    let before = rss_bytes()?;
    let threads_before = crate::util::thread_count()?;
    let store = AggregateStore::builder(dir).aggregate::<BankAccount>().no_idle_timeout().open().await?;
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let handle = store.get::<BankAccount>(&format!("acc-{i}")).await.with_context(|| format!("account {i}"))?;
        handle.state().await?;
        handles.push(handle);
    }
    let after = rss_bytes()?;
    let threads = crate::util::thread_count()? - threads_before;
    Ok(((after.saturating_sub(before)) as f64 / n as f64, threads))
}
