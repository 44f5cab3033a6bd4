//! Runs the SIGKILL crash test outside `cargo test`, e.g. for a long soak:
//! `evfold-kill-test --rounds 1000 --seed 7 [--dir /tmp/store] [--max-kill-ms 500] [--keep-going]
//! [--blob-kib 512]` (`--blob-kib`: an extra writer of that-size events, to tear writes).
//! The child binary is `evfold-killee` next to this one.

use std::path::PathBuf;

use anyhow::Context;
use evfold_reliability::{run_kill_test, KillConfig};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let me = std::env::current_exe()?;
    let mut config = KillConfig::ci(me.with_file_name("evfold-killee"));
    let num = |name: &str, default: u64| -> anyhow::Result<u64> {
        flag(&args, name).map_or(Ok(default), |v| v.parse().with_context(|| format!("bad {name}")))
    };
    config.rounds = num("--rounds", u64::from(config.rounds))? as u32;
    config.seed = num("--seed", config.seed)?;
    config.min_kill_ms = num("--min-kill-ms", config.min_kill_ms)?;
    config.max_kill_ms = num("--max-kill-ms", config.max_kill_ms)?;
    config.workers = num("--workers", config.workers as u64)? as usize;
    config.blob_writer_kib = num("--blob-kib", 0)?;
    config.progress = true;
    config.stop_on_violation = !args.iter().any(|a| a == "--keep-going");
    let temp = tempfile_dir()?;
    let dir = flag(&args, "--dir").map_or(temp.clone(), PathBuf::from);
    println!("kill test: {} rounds, seed {}, store {}", config.rounds, config.seed, dir.display());
    let report = run_kill_test(&dir, &config)?;
    println!(
        "{} rounds ({} during recovery), {} torn tails repaired, {} events in {} streams, {} transfers, {:.1} s",
        report.rounds,
        report.early_kills,
        report.torn_tails,
        report.last.events,
        report.last.streams,
        report.last.transfers,
        report.elapsed.as_secs_f64()
    );
    println!("checking took {:.1} s; child store errors: {}", report.checking.as_secs_f64(), report.child_errors.len());
    println!("{}", report.last.summary());
    let violations = report.last.violations();
    println!("violations: {}", if violations.is_empty() { "none".to_owned() } else { violations.join("; ") });
    if dir == temp {
        std::fs::remove_dir_all(&temp).ok();
    }
    anyhow::ensure!(report.child_errors.is_empty(), "child errors: {:?}", report.child_errors);
    anyhow::ensure!(violations.is_empty(), "invariants broken");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("evfold-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
