//! Integration tests of evfold-postgres against a real PostgreSQL started by this binary.
//!
//! A custom harness (`harness = false`): it starts ONE throwaway cluster (see
//! `evfold_postgres::testing`: installs Debian's `postgresql` if missing, `initdb` as user
//! `postgres`, `postgres` on 127.0.0.1 on a free port), gives every test its own database, and
//! stops the server by pid at the end, also when a test panics. If PostgreSQL cannot be started
//! the run FAILS with the reason. Speaks enough of libtest's CLI for `cargo test` filters and
//! cargo-nextest (`--list --format terse`, `<name> --exact`).

mod scenarios;

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use evfold_postgres::testing::TempCluster;

/// One test: gets the cluster and the connection string of its own fresh database.
type TestFn = fn(&mut TempCluster, &str);

const TESTS: &[(&str, TestFn)] = &[
    ("occ_16_concurrent_appends_one_wins", scenarios::occ_16_concurrent_appends_one_wins),
    ("occ_16_concurrent_commands_one_wins", scenarios::occ_16_concurrent_commands_one_wins),
    ("two_stores_lose_no_update", scenarios::two_stores_lose_no_update),
    ("late_commit_is_never_skipped", scenarios::late_commit_is_never_skipped),
    ("second_connection_and_replica_see_same_order", scenarios::second_connection_and_replica_see_same_order),
    ("bank_scenario_matches_memory_store", scenarios::bank_scenario_matches_memory_store),
    ("restart_resumes_from_checkpoint_and_snapshot", scenarios::restart_resumes_from_checkpoint_and_snapshot),
    ("notify_wakes_a_store_that_does_not_poll", scenarios::notify_wakes_a_store_that_does_not_poll),
    ("migrations_reads_and_listing", scenarios::migrations_reads_and_listing),
    ("order_is_numeric_across_an_xid_digit_boundary", scenarios::order_is_numeric_across_an_xid_digit_boundary),
    ("process_manager_runs_on_one_instance", scenarios::process_manager_runs_on_one_instance),
    ("redelivered_commands_are_not_applied_twice", scenarios::redelivered_commands_are_not_applied_twice),
    ("idle_actors_are_evicted_without_losing_commands", scenarios::idle_actors_are_evicted_without_losing_commands),
    ("execute_json_refuses_deep_commands", scenarios::execute_json_refuses_deep_commands),
    (
        "typed_execute_refuses_deep_commands_in_tokio_spawn",
        scenarios::typed_execute_refuses_deep_commands_in_tokio_spawn,
    ),
    ("append_refuses_oversized_and_deep_events", scenarios::append_refuses_oversized_and_deep_events),
    (
        "process_manager_dead_letters_a_deep_command_at_once",
        scenarios::process_manager_dead_letters_a_deep_command_at_once,
    ),
    (
        "schema_evolution_upcasts_history_and_refolds_stale_state",
        scenarios::schema_evolution_upcasts_history_and_refolds_stale_state,
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            TESTS.iter().for_each(|(name, _)| println!("{name}: test"));
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<&(&str, TestFn)> = TESTS
        .iter()
        .filter(|(name, _)| {
            filters.is_empty() || filters.iter().any(|f| if exact { name == f } else { name.contains(f.as_str()) })
        })
        .collect();
    if selected.is_empty() {
        println!("running 0 tests");
        return;
    }
    std::process::exit(run(&selected));
}

fn run(selected: &[&(&str, TestFn)]) -> i32 {
    let started = Instant::now();
    let mut cluster = match TempCluster::start() {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("FAILED: cannot start PostgreSQL for the tests: {e}");
            return 1;
        }
    };
    println!(
        "PostgreSQL up on 127.0.0.1:{} (pid {}) in {:.1} s; running {} tests",
        cluster.port(),
        cluster.pid(),
        started.elapsed().as_secs_f64(),
        selected.len()
    );
    let mut failed = Vec::new();
    for (i, (name, test)) in selected.iter().enumerate() {
        let t = Instant::now();
        let outcome = cluster
            .create_database(&format!("t{i}_{name}"))
            .map_err(|e| e.to_string())
            .and_then(|db| std::panic::catch_unwind(AssertUnwindSafe(|| test(&mut cluster, &db))).map_err(panic_text));
        match outcome {
            Ok(()) => println!("test {name} ... ok ({:.2} s)", t.elapsed().as_secs_f64()),
            Err(why) => {
                println!("test {name} ... FAILED ({:.2} s): {why}", t.elapsed().as_secs_f64());
                failed.push(*name);
            }
        }
    }
    let log = cluster.log_path().to_owned();
    if !failed.is_empty() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        eprintln!("server log tail ({}):\n{}", log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    drop(cluster); // stops the server(s) by pid, removes the temp dir
    println!(
        "test result: {}. {} passed; {} failed; finished in {:.1} s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    i32::from(!failed.is_empty())
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}
