//! Fold and decide throughput of the JSON-level `DynAggregate` interface the machines call:
//! native typed code behind the blanket adapter, or a WASM plugin behind the same trait.

use std::time::Instant;

use anyhow::{anyhow, ensure, Result};
use evfold_core::examples::{BankCommand, BankEvent};
use evfold_core::{to_payload, AggregateFactory, DecideContext, Fault, StreamId};

use crate::util::secs;

/// (decides/s, folded events/s) of `n` deposit decisions and `n` single-event folds.
pub fn throughput(factory: &dyn AggregateFactory, n: usize) -> Result<(f64, f64)> {
    let mut aggregate = factory.instantiate().map_err(fault)?;
    aggregate.apply(&[to_payload(&BankEvent::Opened { owner: "alice".into() }).map_err(fault)?]).map_err(fault)?;
    let deposit = to_payload(&BankCommand::Deposit { amount: 1 }).map_err(fault)?;
    let context = DecideContext::new(StreamId::new(factory.aggregate_type(), "bench").map_err(|e| anyhow!("{e}"))?);
    let start = Instant::now();
    for _ in 0..n {
        let decision = aggregate.decide(&deposit, &context).map_err(fault)?;
        ensure!(matches!(&decision, Ok(events) if events.len() == 1), "unexpected decision {decision:?}");
    }
    let decide_rate = n as f64 / secs(start);
    let event = [to_payload(&BankEvent::Deposited { amount: 1 }).map_err(fault)?];
    let start = Instant::now();
    for _ in 0..n {
        aggregate.apply(&event).map_err(fault)?;
    }
    let fold_rate = n as f64 / secs(start);
    let state = aggregate.snapshot().map_err(fault)?;
    ensure!(state["balance"] == n as u64, "fold lost events: {state}");
    Ok((decide_rate, fold_rate))
}

fn fault(fault: Fault) -> anyhow::Error {
    anyhow!("{fault}")
}
