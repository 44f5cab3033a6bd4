//! The kill test's child: opens the store, opens the accounts, prints `READY`, then runs the
//! mixed workload forever, printing one `ACK` line per acknowledged command (after `execute`
//! returned) until the parent `SIGKILL`s it.
//!
//! Usage: `evfold-killee <store-dir> <seed> <round> <workers> <accounts> <counters> [<blob-kib>]`

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use evfold_reliability::workload::{builder, open_accounts, run_workers, Sink, WorkloadConfig};

fn arg(args: &[String], i: usize, name: &str) -> anyhow::Result<u64> {
    args.get(i).with_context(|| format!("missing <{name}>"))?.parse().with_context(|| format!("bad <{name}>"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        bail!("usage: evfold-killee <dir> <seed> <round> <workers> <accounts> <counters>")
    };
    let config = WorkloadConfig {
        seed: arg(&args, 1, "seed")?,
        round: arg(&args, 2, "round")?,
        workers: arg(&args, 3, "workers")? as usize,
        accounts: arg(&args, 4, "accounts")? as usize,
        counters: arg(&args, 5, "counters")? as usize,
        max_commands: None,
        deadline: None,
        blob_writer_kib: args.get(6).map_or(Ok(0), |_| arg(&args, 6, "blob-kib"))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(dir, config))
}

async fn run(dir: &str, config: WorkloadConfig) -> anyhow::Result<()> {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let sink: Sink = Arc::new(move |event| {
        let line = match event {
            Ok(ack) => format!("{ack}\n"),
            Err(e) => format!("ERR {}\n", e.replace('\n', " ")),
        };
        let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line, flushed at once: the parent sees it the moment it is written.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    });
    let store = builder(dir.as_ref()).open().await.context("open store")?;
    open_accounts(&store, &config, &sink).await.map_err(anyhow::Error::msg)?;
    sink_ready();
    run_workers(&store, &config, sink).await;
    Ok(())
}

fn sink_ready() {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"READY\n").and_then(|()| out.flush());
}
