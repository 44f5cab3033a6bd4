//! Runs the load test outside `cargo test`:
//! `evfold-load-test [--secs 60] [--writers 16] [--accounts 64] [--counters 64] [--dir D]`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use evfold_reliability::{run_load_test, LoadConfig};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |name: &str, default: u64| -> anyhow::Result<u64> {
        flag(&args, name).map_or(Ok(default), |v| v.parse().with_context(|| format!("bad {name}")))
    };
    let secs = num("--secs", 15)?;
    let config = LoadConfig {
        writers: num("--writers", 16)? as usize,
        accounts: num("--accounts", 32)? as usize,
        counters: num("--counters", 32)? as usize,
        duration: Duration::from_secs(secs),
        warmup: Duration::from_secs(secs / 4),
        seed: num("--seed", 1)?,
    };
    let temp = std::env::temp_dir().join(format!("evfold-load-{}", std::process::id()));
    let dir = flag(&args, "--dir").map_or(temp.clone(), PathBuf::from);
    let report = run_load_test(&dir, &config)?;
    println!("{config:?}");
    println!(
        "{} commands ({} acknowledged, {} rejected, {} failed) in {secs} s: {:.0} acknowledged/s",
        report.commands, report.acked, report.rejected, report.failed, report.throughput
    );
    println!("latency p50 {:?}, p99 {:?}, max {:?}", report.p50, report.p99, report.max);
    println!(
        "RSS after warm-up {} KiB, peak {} KiB, end {} KiB",
        report.rss_warm_kib, report.rss_peak_kib, report.rss_end_kib
    );
    println!("subscription delivered {} of {} events", report.subscribed, report.check.events);
    println!("{}", report.check.summary());
    if dir == temp {
        std::fs::remove_dir_all(&temp).ok();
    }
    anyhow::ensure!(report.failed == 0, "{} commands failed", report.failed);
    Ok(())
}
