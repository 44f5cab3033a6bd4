//! Measurement helpers: sizes from the environment, timers, RSS from /proc, directory sizes,
//! and running one scenario in a fresh child process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Benchmark sizes; `BENCH_QUICK=1` scales everything down for a smoke run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Commands in the sequential single-aggregate run.
    pub seq: usize,
    /// Commands in total for 16 callers on one aggregate.
    pub conc16: usize,
    /// Aggregates in the many-aggregates run.
    pub conc_aggs: usize,
    /// Commands per aggregate in the many-aggregates run.
    pub conc_per: usize,
    /// Events of the cold-load stream.
    pub cold: usize,
    /// Streams of the projection run.
    pub proj_streams: usize,
    /// Events per stream of the projection run.
    pub proj_per: usize,
    /// Live-aggregate counts for the memory figure.
    pub mem: [usize; 2],
    /// Appends in the raw fdatasync loop.
    pub floor: usize,
    /// Calls in the plugin vs native fold/decide loop.
    pub fold: usize,
    /// Events the read-only store-wide read pages through.
    pub read_all: usize,
}

impl Sizes {
    /// Full sizes, or quick ones when `BENCH_QUICK` is set to anything but `0`.
    pub fn from_env() -> Sizes {
        let quick = std::env::var("BENCH_QUICK").map(|v| v != "0" && !v.is_empty()).unwrap_or(false);
        if quick {
            Sizes {
                seq: 300,
                conc16: 800,
                conc_aggs: 100,
                conc_per: 20,
                cold: 10_000,
                proj_streams: 100,
                proj_per: 100,
                mem: [200, 1_000],
                floor: 300,
                fold: 10_000,
                read_all: 20_000,
            }
        } else {
            Sizes {
                seq: 2_000,
                conc16: 4_000,
                conc_aggs: 100,
                conc_per: 200,
                cold: 100_000,
                proj_streams: 100,
                proj_per: 1_000,
                mem: [1_000, 10_000],
                floor: 2_000,
                fold: 100_000,
                read_all: 200_000,
            }
        }
    }
}

/// A fresh, empty directory for one scenario under `BENCH_DIR` (default: the system temp dir).
pub fn fresh_dir(name: &str) -> Result<PathBuf> {
    let base = std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("evfold-bench-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Removes a scenario directory unless `BENCH_KEEP` is set.
pub fn cleanup(dir: &Path) {
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Seconds elapsed since `start`.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Resident set size of this process in bytes (`VmRSS`).
pub fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    let kb: u64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kb * 1024)
}

/// Number of threads of this process.
pub fn thread_count() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("Threads:")).context("no Threads line")?;
    Ok(line.split_whitespace().nth(1).context("Threads value")?.parse()?)
}

/// Total apparent size of the files under `dir` whose name satisfies `keep`.
pub fn dir_bytes(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path(), keep)?;
        } else if keep(&entry.file_name().to_string_lossy()) {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Runs `evfold-bench child <args>` in a fresh process and parses the JSON object it prints last.
pub fn run_child(args: &[&str]) -> Result<Value> {
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    let output = Command::new(exe).arg("child").args(args).output().context("spawning a child scenario")?;
    if !output.status.success() {
        bail!("child {:?} failed: {}", args, String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().rev().find(|l| l.starts_with('{')).context("child printed no result")?;
    Ok(serde_json::from_str(last)?)
}

/// A field of a child's JSON result as `f64`.
pub fn field(value: &Value, key: &str) -> Result<f64> {
    value.get(key).and_then(Value::as_f64).with_context(|| format!("child result has no `{key}`: {value}"))
}
