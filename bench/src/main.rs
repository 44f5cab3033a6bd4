//! `evfold-bench`: evfold side by side with the peer crate `eventfold-es` 0.2 and a raw
//! `fdatasync` loop, in one run, on the same disk. Prints each figure, its ratio and the target
//! as a markdown table. `BENCH_QUICK=1` shrinks every size; `BENCH_DIR` picks the disk;
//! `BENCH_ONLY=read,cold` runs only the named sections.
//! Cold loads and memory run in fresh child processes (`evfold-bench child ...`).

mod floor;
mod fold;
mod native;
mod peer;
mod read;
mod report;
mod util;

use anyhow::{bail, Context, Result};
use serde_json::json;

use report::{Report, Row, Target};
use util::{cleanup, field, fresh_dir, run_child, Sizes};

/// Median of a non-empty sample (sorts it).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.first().map(String::as_str) == Some("child") {
        let result = runtime.block_on(child(&args[1..]))?;
        println!("{result}");
        return Ok(());
    }
    let sizes = Sizes::from_env();
    let report = runtime.block_on(suite(sizes))?;
    print!("{}", report.markdown(sizes));
    Ok(())
}

/// One scenario in this (fresh) process; prints a JSON object.
async fn child(args: &[String]) -> Result<serde_json::Value> {
    let arg = |i: usize| args.get(i).with_context(|| format!("child: missing argument {i} in {args:?}"));
    let dir = std::path::PathBuf::from(arg(1)?);
    Ok(match arg(0)?.as_str() {
        "cold-peer" => json!({ "ms": peer::cold_load(&dir, arg(2)?.parse()?).await? }),
        "cold-evfold" => {
            let (ms, open_ms) = native::cold_load(&dir, arg(2)? == "1", arg(3)?.parse()?).await?;
            json!({ "ms": ms, "open_ms": open_ms })
        }
        "mem-peer" => {
            let (bytes, threads) = peer::memory(&dir, arg(2)?.parse()?).await?;
            json!({ "bytes": bytes, "threads": threads })
        }
        "mem-evfold" => {
            let (bytes, threads) = native::memory(&dir, arg(2)?.parse()?).await?;
            json!({ "bytes": bytes, "threads": threads })
        }
        other => bail!("unknown child scenario {other}"),
    })
}

async fn suite(sizes: Sizes) -> Result<Report> {
    let mut report = Report::default();
    // `BENCH_ONLY=read,cold` runs only those sections (all of them when unset).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);
    if run("throughput") {
        throughput(&mut report, sizes).await?;
    }
    if run("cold") {
        cold(&mut report, sizes).await?;
    }
    if run("projection") {
        projection(&mut report, sizes).await?;
    }
    if run("read") {
        read_only_rows(&mut report, sizes).await?;
    }
    if run("memory") {
        memory(&mut report, sizes)?;
    }
    if run("fold") {
        fold_rows(&mut report, sizes)?;
    }
    Ok(report)
}

async fn throughput(report: &mut Report, sizes: Sizes) -> Result<()> {
    eprintln!("# durable throughput");
    let dir = fresh_dir("floor")?;
    let floor = floor::fdatasync_rate(&dir, sizes.floor, 200)?;
    cleanup(&dir);
    report.floor = Some(floor);
    report.push(Row::rate("raw append + fdatasync loop (200 B lines)", floor, None, Target::None));

    let (e, p) = pair("seq", |d| native::sequential(d, sizes.seq), |d| peer::sequential(d, sizes.seq)).await?;
    report.push(Row::rate("1 aggregate, sequential (cmds/s)", e, Some(p), Target::Floor(0.8)));
    let n = sizes.conc16;
    let (e, p) = pair("c16", |d| native::concurrent_one(d, 16, n), |d| peer::concurrent_one(d, 16, n)).await?;
    report.push(Row::rate("1 aggregate, 16 concurrent callers (cmds/s)", e, Some(p), Target::Peer(4.0)));
    let (a, per) = (sizes.conc_aggs, sizes.conc_per);
    let (e, p) = pair("many", |d| native::concurrent_many(d, a, per), |d| peer::concurrent_many(d, a, per)).await?;
    let label = format!("{a} aggregates x {per} cmds, concurrent (cmds/s)");
    report.push(Row::rate(&label, e, Some(p), Target::Peer(4.0)));
    Ok(())
}

/// Runs the evfold then the peer variant of one scenario, each on a fresh directory.
async fn pair<E, P, FE, FP>(name: &str, evfold: E, peer: P) -> Result<(f64, f64)>
where
    E: FnOnce(std::path::PathBuf) -> FE,
    P: FnOnce(std::path::PathBuf) -> FP,
    FE: std::future::Future<Output = Result<f64>>,
    FP: std::future::Future<Output = Result<f64>>,
{
    eprintln!("#   {name}");
    let dir = fresh_dir(&format!("{name}-evfold"))?;
    let e = evfold(dir.clone()).await.with_context(|| format!("evfold {name}"))?;
    cleanup(&dir);
    let dir = fresh_dir(&format!("{name}-peer"))?;
    let p = peer(dir.clone()).await.with_context(|| format!("peer {name}"))?;
    cleanup(&dir);
    Ok((e, p))
}

async fn cold(report: &mut Report, sizes: Sizes) -> Result<()> {
    eprintln!("# cold load of a {}-event stream", sizes.cold);
    let n = sizes.cold;
    let balance = (n - 1).to_string();
    let edir = fresh_dir("cold-evfold")?;
    native::write_streams(&edir, 1, n).await?;
    let pdir = fresh_dir("cold-peer")?;
    peer::write_stream(&pdir, "acc-0", n)?;
    let (e, s) = (edir.to_string_lossy().into_owned(), pdir.to_string_lossy().into_owned());
    let e_full = median3(|| field(&run_child(&["cold-evfold", &e, "0", &balance])?, "ms"))?;
    let p_full = field(&run_child(&["cold-peer", &s, &balance])?, "ms")?; // writes the peer's snapshot
    let e_snap = median3(|| field(&run_child(&["cold-evfold", &e, "1", &balance])?, "ms"))?;
    let open_ms = field(&run_child(&["cold-evfold", &e, "1", &balance])?, "open_ms")?;
    report.notes.push(format!(
        "evfold cold load, profile: opening the store alone (lock + a check of each log's last line; the store-wide index is built on first need) took {open_ms:.2} ms of the with-snapshot figure"
    ));
    let p_snap = median3(|| field(&run_child(&["cold-peer", &s, &balance])?, "ms"))?;
    report.push(Row::time(&format!("cold load, {n} events, no snapshot (ms)"), e_full, p_full, Target::Peer(4.0)));
    report.push(Row::time(&format!("cold load, {n} events, with snapshot (ms)"), e_snap, p_snap, Target::Peer(4.0)));
    let e_bytes = util::dir_bytes(&edir, &|f| f.ends_with(".jsonl"))? as f64 / n as f64;
    let p_bytes = util::dir_bytes(&pdir.join("streams"), &|f| f.ends_with(".jsonl"))? as f64 / n as f64;
    report.push(Row::size("log bytes per event (bank deposit, actor + correlation id)", e_bytes, p_bytes));
    cleanup(&edir);
    cleanup(&pdir);
    Ok(())
}

fn median3(mut run: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut samples = vec![run()?, run()?, run()?];
    Ok(median(&mut samples))
}

async fn projection(report: &mut Report, sizes: Sizes) -> Result<()> {
    let (streams, per) = (sizes.proj_streams, sizes.proj_per);
    eprintln!("# projection over {streams} x {per}");
    let edir = fresh_dir("proj-evfold")?;
    native::write_streams(&edir, streams, per).await?;
    let (e_full, e_inc) = native::projection(&edir, streams, per, 20).await?;
    cleanup(&edir);
    let pdir = fresh_dir("proj-peer")?;
    for s in 0..streams {
        peer::write_stream(&pdir, &format!("acc-{s}"), per)?;
    }
    let (p_full, p_inc) = peer::projection(&pdir, streams, per, 20).await?;
    cleanup(&pdir);
    let label = format!("projection full catch-up, {streams} x {per} events (ms)");
    report.push(Row::time(&label, e_full, p_full, Target::Peer(4.0)));
    let label = "projection incremental catch-up, +1 event (ms, median of 20)";
    report.push(Row::time(label, e_inc, p_inc, Target::Peer(10.0)));
    Ok(())
}

/// Read-only reads (`evfold events`, `--follow`): the other column is the previous behaviour.
async fn read_only_rows(report: &mut Report, sizes: Sizes) -> Result<()> {
    let n = sizes.read_all;
    eprintln!("# read-only store-wide read of {n} events, and follow latency");
    let dir = fresh_dir("read-evfold")?;
    native::write_streams(&dir, 100, n / 100).await?;
    let (once, rescan) = read::page_all(&dir, n, 10).await?;
    let label = format!(
        "read-only read of all {n} events in pages of 1,000 (ms; other column: a full scan per page, as before, from 10 pages)"
    );
    report.push(Row::time(&label, once, rescan, Target::Peer(4.0)));
    let (woken, polled) = read::follow_latency(&dir, 20).await?;
    let label = "read-only follower lag behind a writer's ack (ms, median of 20; other column: the 200 ms poll before)";
    report.push(Row::time(label, woken, polled, Target::None));
    let cpu = read::idle_cpu(&dir, std::time::Duration::from_secs(5)).await?;
    report.notes.push(format!(
        "read-only follower idle for 5 s on the {n}-event store: {:.2} s of CPU ({:.1} % of a core)",
        cpu,
        cpu / 5.0 * 100.0
    ));
    cleanup(&dir);
    Ok(())
}

fn memory(report: &mut Report, sizes: Sizes) -> Result<()> {
    for n in sizes.mem {
        eprintln!("# memory with {n} live aggregates");
        let count = n.to_string();
        let dir = fresh_dir("mem-evfold")?;
        let e = run_child(&["mem-evfold", &dir.to_string_lossy(), &count])?;
        cleanup(&dir);
        let dir = fresh_dir("mem-peer")?;
        let p = run_child(&["mem-peer", &dir.to_string_lossy(), &count])?;
        cleanup(&dir);
        let label = format!(
            "RSS per live aggregate, {n} live (bytes; threads evfold {} / peer {})",
            field(&e, "threads")?,
            field(&p, "threads")?
        );
        report.push(Row::size(&label, field(&e, "bytes")?, field(&p, "bytes")?));
    }
    Ok(())
}

fn fold_rows(report: &mut Report, sizes: Sizes) -> Result<()> {
    eprintln!("# fold / decide throughput");
    let native = evfold_core::TypedAggregateFactory::<evfold_core::examples::BankAccount>::default();
    let (n_decide, n_fold) = fold::throughput(&native, sizes.fold)?;
    let plugin_dir =
        std::env::var_os("EVFOLD_PLUGIN_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| "target/plugins".into());
    let path = plugin_dir.join("bank-account.wasm");
    if !path.is_file() {
        report.push(Row::rate("native decide (calls/s)", n_decide, None, Target::None));
        report.push(Row::rate("native fold (events/s)", n_fold, None, Target::None));
        report.notes.push(format!("plugin rows skipped: {} not found (run scripts/build-plugins.sh)", path.display()));
        return Ok(());
    }
    let engine = evfold_wasi::PluginEngine::new(evfold_wasi::Limits::default())?;
    let plugin = engine.load_aggregate(&path)?;
    let (p_decide, p_fold) = fold::throughput(&plugin, sizes.fold)?;
    report.push(Row::versus("decide: WASM plugin vs native (calls/s)", p_decide, n_decide));
    report.push(Row::versus("fold: WASM plugin vs native, one event per call (events/s)", p_fold, n_fold));
    Ok(())
}
