//! The load test: 16 writers over 64 streams for 15 s (EVFOLD_LOAD_SECS), with the projection,
//! the process manager and a subscription running. No errors, nothing lost or duplicated, RSS
//! flat after warm-up; prints throughput and p50/p99 latency.

use std::time::Duration;

use evfold_reliability::{run_load_test, LoadConfig};

#[test]
fn concurrent_writers_lose_nothing_and_memory_stays_flat() {
    let secs: u64 = std::env::var("EVFOLD_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let dir = tempfile::tempdir().unwrap();
    let config = LoadConfig {
        writers: 16,
        accounts: 32,
        counters: 32,
        duration: Duration::from_secs(secs),
        warmup: Duration::from_secs(secs / 3),
        seed: 1,
    };
    let r = run_load_test(dir.path(), &config).expect("load test invariants");
    println!(
        "load: {} writers x {} streams, {secs} s: {} commands, {} acknowledged ({:.0}/s), {} rejected, {} failed",
        config.writers,
        config.accounts + config.counters,
        r.commands,
        r.acked,
        r.throughput,
        r.rejected,
        r.failed
    );
    println!("load: latency p50 {:?} p99 {:?} max {:?}", r.p50, r.p99, r.max);
    println!("load: RSS warm {} KiB, peak {} KiB, end {} KiB", r.rss_warm_kib, r.rss_peak_kib, r.rss_end_kib);
    println!("load: subscription {} of {} events; {}", r.subscribed, r.check.events, r.check.summary());
    assert_eq!(r.failed, 0);
    assert!(r.acked > 100, "the load made progress");
    let growth_kib = r.rss_peak_kib.saturating_sub(r.rss_warm_kib);
    // The store's position index grows by design (one small entry per event); allow that, and
    // nothing like a leak per command.
    let budget_kib = 16 * 1024 + r.acked / 4;
    assert!(growth_kib <= budget_kib, "RSS grew {growth_kib} KiB after warm-up (budget {budget_kib} KiB)");
    assert_eq!(r.check.violations(), Vec::<String>::new());
}
