//! The SIGKILL crash test: 50 seeded rounds of a mixed workload in a real child process, killed
//! at random moments (some during open/recovery), the store reopened and checked after each.
//! Prints "N acknowledged, N found, 0 lost, 0 duplicated".

use std::path::PathBuf;

use evfold_reliability::{run_kill_test, KillConfig};

fn rounds() -> u32 {
    std::env::var("EVFOLD_KILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

#[test]
fn sigkill_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = KillConfig::ci(PathBuf::from(env!("CARGO_BIN_EXE_evfold-killee")));
    config.rounds = rounds();
    let report = run_kill_test(dir.path(), &config).expect("no hard invariant broken");
    println!(
        "kill test: {} rounds ({} killed during recovery), {} torn tails repaired, {} events in {} streams, \
         {} transfers, {:.1} s",
        report.rounds,
        report.early_kills,
        report.torn_tails,
        report.last.events,
        report.last.streams,
        report.last.transfers,
        report.elapsed.as_secs_f64()
    );
    println!("{}", report.last.summary());
    assert!(report.child_errors.is_empty(), "store errors in the child: {:?}", report.child_errors);
    let last = &report.last;
    assert_eq!((last.lost, last.duplicated), (0, 0), "acknowledged commands, after round {}", report.rounds);
    assert_eq!(last.transfers_not_deposited, 0);
    assert_eq!(last.violations(), Vec::<String>::new(), "after round {}", report.rounds);
    assert_eq!(report.rounds, config.rounds);
    assert!(report.last.acknowledged > u64::from(config.rounds), "the workload made progress");
    assert_eq!(report.last.found, report.last.acknowledged);
}
